//! `Export.lock`: every step's key and output digests, next to the manifest, meant to be
//! committed. `exportctl build --locked` rebuilds and fails when an output's digest differs
//! from the lock, or a step is missing from it: the reproducible-build check for CI.
//!
//! The file is TOML in plan order, one `[[step]]` per step, with the per-file digests of
//! the outputs people ship (the trace's SavedModel and the package's files), so that a
//! difference can be named down to the file.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::exec::BuildSummary;
use crate::plan::StepKind;

pub const FILE_NAME: &str = "Export.lock";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LockFile {
    pub version: u32,
    #[serde(default, rename = "step")]
    pub steps: Vec<LockedStep>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockedStep {
    pub id: String,
    pub key: String,
    pub digest: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<String, String>,
}

/// One way the build differs from the lock.
#[derive(Debug, Clone, PartialEq)]
pub struct Difference {
    pub step: String,
    /// `None`: the step is missing from the lock.
    pub files: Option<Vec<String>>,
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.files {
            None => write!(f, "{}: not in {FILE_NAME}", self.step),
            Some(files) if files.is_empty() => write!(f, "{}: output differs", self.step),
            Some(files) => write!(f, "{}: {} differ{}", self.step, files.join(", "), if files.len() == 1 { "s" } else { "" }),
        }
    }
}

impl LockFile {
    pub fn read(path: &Path) -> Option<LockFile> {
        toml::from_str(&std::fs::read_to_string(path).ok()?).ok()
    }

    /// The lock of a build: the steps that have an output, in plan order. Steps of the
    /// previous lock that were not part of this build (other targets) are kept.
    pub fn from_build(summary: &BuildSummary, previous: Option<&LockFile>) -> LockFile {
        let mut steps: Vec<LockedStep> = summary
            .results
            .iter()
            .filter_map(|r| {
                let entry = r.entry.as_ref()?;
                let shipped = matches!(r.id.kind, StepKind::Trace | StepKind::Package);
                let files = if shipped { entry.files.clone() } else { BTreeMap::new() };
                Some(LockedStep { id: r.id.to_string(), key: entry.key.clone(), digest: entry.digest.clone(), files })
            })
            .collect();
        if let Some(previous) = previous {
            let built: std::collections::HashSet<String> = summary.results.iter().map(|r| r.id.to_string()).collect();
            steps.extend(previous.steps.iter().filter(|old| !built.contains(&old.id)).cloned());
        }
        LockFile { version: 1, steps }
    }

    pub fn to_toml(&self) -> String {
        let body = toml::to_string(self).expect("the lock serialises");
        format!("# Export.lock: written by `exportctl build`; commit it.\n# `exportctl build --locked` fails when a rebuilt output differs from it.\n\n{body}")
    }

    /// Writes the lock if its content changed.
    pub fn write(&self, path: &Path) -> std::io::Result<bool> {
        let text = self.to_toml();
        if std::fs::read_to_string(path).ok().as_deref() == Some(text.as_str()) {
            return Ok(false);
        }
        crate::atomic::write_file(path, text.as_bytes())?;
        Ok(true)
    }

    /// How `built` (the lock of this build) differs from `self` (the committed lock), for
    /// the steps of this build.
    pub fn differences(&self, built: &LockFile) -> Vec<Difference> {
        let locked: std::collections::HashMap<&str, &LockedStep> = self.steps.iter().map(|s| (s.id.as_str(), s)).collect();
        let mut out = Vec::new();
        for step in &built.steps {
            match locked.get(step.id.as_str()).copied() {
                None => out.push(Difference { step: step.id.clone(), files: None }),
                Some(locked) if locked.digest != step.digest => {
                    let mut files: Vec<String> = step
                        .files
                        .iter()
                        .filter(|(f, d)| locked.files.get(*f) != Some(d))
                        .map(|(f, _)| f.clone())
                        .chain(locked.files.keys().filter(|f| !step.files.contains_key(*f)).cloned())
                        .collect();
                    files.sort();
                    files.dedup();
                    out.push(Difference { step: step.id.clone(), files: Some(files) });
                }
                Some(_) => {}
            }
        }
        out
    }
}
