//! `Export.lock`: every step's key and output digests, next to the manifest, meant to be
//! committed. `exportctl build --locked` rebuilds and fails when an output's digest differs
//! from the lock, or a step is missing from it: the reproducible-build check for CI.
//!
//! The file is TOML in plan order, one `[[step]]` per step, with the per-file digests of
//! the outputs people ship (the trace's SavedModel and the package's files), so that a
//! difference can be named down to the file. A trace step also records the digests of its
//! `saved_model.pb`'s parts ([`SavedModelParts`]: each function, the graph, the object
//! graph, …): a CI machine rebuilding with `--locked` has the new bytes but not the old ones,
//! and these say which part changed.
//!
//! **What `--locked` compares: output digests only, never keys.** A key changes with anything
//! that *might* change an output (the exportctl version, the worker's source, the runtime's
//! fingerprint, settings); a digest changes only when an output did. So editing the worker or
//! upgrading exportctl passes `--locked` as long as the packages come out the same.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::exec::BuildSummary;
use crate::plan::StepKind;
use crate::steps::files;
use crate::tf::SavedModelParts;

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
    /// trace: the parts of `saved_model/saved_model.pb`.
    #[serde(default, rename = "saved-model", skip_serializing_if = "Option::is_none")]
    pub saved_model: Option<SavedModelParts>,
}

/// The trace's `saved_model.pb`, as the lock names it.
fn saved_model_pb() -> String {
    format!("{}/saved_model.pb", files::SAVED_MODEL)
}

/// One step whose output differs from the lock.
#[derive(Debug, Clone, PartialEq)]
pub struct Difference {
    pub step: String,
    /// `None`: the step is missing from the lock. Empty: the lock records no files for it.
    pub files: Option<Vec<FileDifference>>,
}

/// One file of a step's output that differs, and what in it differs when that is known.
#[derive(Debug, Clone, PartialEq)]
pub struct FileDifference {
    pub file: String,
    pub detail: Option<String>,
}

impl Difference {
    /// One line per file: `step: file differs (detail)`.
    pub fn lines(&self) -> Vec<String> {
        match &self.files {
            None => vec![format!("{}: not in {FILE_NAME}", self.step)],
            Some(files) if files.is_empty() => vec![format!("{}: output differs", self.step)],
            Some(files) => files
                .iter()
                .map(|f| match &f.detail {
                    Some(detail) => format!("{}: {} differs ({detail})", self.step, f.file),
                    None => format!("{}: {} differs", self.step, f.file),
                })
                .collect(),
        }
    }
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.lines().join("\n"))
    }
}

impl LockFile {
    pub fn read(path: &Path) -> Option<LockFile> {
        toml::from_str(&std::fs::read_to_string(path).ok()?).ok()
    }

    /// The lock of a build: the steps that have an output, in plan order. Steps of the
    /// previous lock that were not part of this build (other targets) are kept.
    ///
    /// A trace's [`SavedModelParts`] are taken from the previous lock when its digest is the
    /// same (a no-op build reads no SavedModel), else read from the cache entry.
    pub fn from_build(summary: &BuildSummary, previous: Option<&LockFile>) -> LockFile {
        let before: std::collections::HashMap<&str, &LockedStep> =
            previous.map(|p| p.steps.iter().map(|s| (s.id.as_str(), s)).collect()).unwrap_or_default();
        let mut steps: Vec<LockedStep> = summary
            .results
            .iter()
            .filter_map(|r| {
                let entry = r.entry.as_ref()?;
                let id = r.id.to_string();
                let shipped = matches!(r.id.kind, StepKind::Trace | StepKind::ConvertLitert | StepKind::Package);
                let files = if shipped { entry.files.clone() } else { BTreeMap::new() };
                let saved_model = if r.id.kind != StepKind::Trace {
                    None
                } else {
                    match before.get(id.as_str()) {
                        Some(old) if old.digest == entry.digest && old.saved_model.is_some() => old.saved_model.clone(),
                        _ => std::fs::read(entry.out().join(saved_model_pb())).ok().and_then(|bytes| SavedModelParts::of(&bytes).ok()),
                    }
                };
                Some(LockedStep { id, key: entry.key.clone(), digest: entry.digest.clone(), files, saved_model })
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
    /// the steps of this build. Only output digests are compared (see the module docs).
    pub fn differences(&self, built: &LockFile) -> Vec<Difference> {
        let locked = self.by_id();
        let mut out = Vec::new();
        for step in &built.steps {
            match locked.get(step.id.as_str()).copied() {
                None => out.push(Difference { step: step.id.clone(), files: None }),
                Some(old) if old.digest != step.digest => {
                    let files = differing_files(old, step)
                        .into_iter()
                        .map(|file| {
                            let detail = self.detail(built, old, step, &file);
                            FileDifference { file, detail }
                        })
                        .collect();
                    out.push(Difference { step: step.id.clone(), files: Some(files) });
                }
                Some(_) => {}
            }
        }
        out
    }

    fn by_id(&self) -> std::collections::HashMap<&str, &LockedStep> {
        self.steps.iter().map(|s| (s.id.as_str(), s)).collect()
    }

    /// What differs inside `file` of `step` (whose lock entry is `old`), when that can be told:
    /// the parts of a trace's `saved_model.pb`; the SavedModel files inside a package's archive
    /// (its trace step holds their digests).
    fn detail(&self, built: &LockFile, old: &LockedStep, step: &LockedStep, file: &str) -> Option<String> {
        if file == saved_model_pb() {
            let parts = step.saved_model.as_ref()?.differences(old.saved_model.as_ref()?);
            return (!parts.is_empty()).then(|| parts.join("; "));
        }
        if file != files::ARCHIVE {
            return None;
        }
        let trace_id = step.id.strip_suffix(":package")?.to_string() + ":trace";
        let (old_trace, new_trace) = (self.by_id().get(trace_id.as_str()).copied()?, built.by_id().get(trace_id.as_str()).copied()?);
        let prefix = format!("{}/", files::SAVED_MODEL);
        let inside: Vec<String> = differing_files(old_trace, new_trace)
            .into_iter()
            .filter(|f| f.starts_with(&prefix))
            .map(|f| match self.detail(built, old_trace, new_trace, &f) {
                Some(detail) => format!("{}: {detail}", &f[prefix.len()..]),
                None => f[prefix.len()..].to_string(),
            })
            .collect();
        if inside.is_empty() {
            Some("the SavedModel files inside it are as locked: the archive's packing differs".into())
        } else {
            Some(format!("inside it: {}", inside.join(", ")))
        }
    }
}

/// The files of `new` whose digest is not the one `old` records, and those `old` has and `new`
/// lacks, sorted.
fn differing_files(old: &LockedStep, new: &LockedStep) -> Vec<String> {
    let mut files: Vec<String> = new
        .files
        .iter()
        .filter(|(f, d)| old.files.get(*f) != Some(d))
        .map(|(f, _)| f.clone())
        .chain(old.files.keys().filter(|f| !new.files.contains_key(*f)).cloned())
        .collect();
    files.sort();
    files.dedup();
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(functions: &[(&str, &str)], object_graph: &str) -> SavedModelParts {
        SavedModelParts {
            graph: "g".into(),
            object_graph: object_graph.into(),
            signatures: "s".into(),
            meta_info: "m".into(),
            other: "o".into(),
            functions: functions.iter().map(|(n, d)| (n.to_string(), d.to_string())).collect(),
        }
    }

    fn step(id: &str, digest: &str, files: &[(&str, &str)], saved_model: Option<SavedModelParts>) -> LockedStep {
        LockedStep {
            id: id.into(),
            key: format!("key of {id} {digest}"),
            digest: digest.into(),
            files: files.iter().map(|(f, d)| (f.to_string(), d.to_string())).collect(),
            saved_model,
        }
    }

    fn lock(trace_pb: &str, fingerprint: &str, functions: &[(&str, &str)], archive: &str) -> LockFile {
        LockFile {
            version: 1,
            steps: vec![
                step("m:export", "e", &[], None),
                step(
                    "m/p:trace",
                    &format!("t-{trace_pb}-{fingerprint}"),
                    &[("saved_model/saved_model.pb", trace_pb), ("saved_model/fingerprint.pb", fingerprint), ("trace.json", "j")],
                    Some(parts(functions, "objects")),
                ),
                step(
                    "m/p:package",
                    &format!("p-{archive}"),
                    &[("model.tar.gz", archive), ("model.md", "md"), ("build.json", archive)],
                    None,
                ),
            ],
        }
    }

    #[test]
    fn a_renamed_function_is_named_in_the_trace_and_inside_the_archive() {
        let locked = lock("pb1", "fp1", &[("f_0", "a"), ("g_1", "b")], "tgz1");
        let built = lock("pb2", "fp2", &[("f_0", "a"), ("g_7", "b")], "tgz2");
        let lines: Vec<String> = locked.differences(&built).iter().flat_map(|d| d.lines()).collect();
        assert_eq!(
            lines,
            [
                "m/p:trace: saved_model/fingerprint.pb differs",
                "m/p:trace: saved_model/saved_model.pb differs (function library: 1 function renamed/changed (g_7))",
                "m/p:package: build.json differs",
                "m/p:package: model.tar.gz differs (inside it: fingerprint.pb, saved_model.pb: function library: 1 function renamed/changed (g_7))",
            ]
        );
    }

    #[test]
    fn keys_are_not_compared_and_a_repacked_archive_says_so() {
        let locked = lock("pb", "fp", &[("f_0", "a")], "tgz1");
        let mut built = lock("pb", "fp", &[("f_0", "a")], "tgz1");
        for step in &mut built.steps {
            step.key = "another exportctl version".into();
        }
        assert!(locked.differences(&built).is_empty(), "same outputs, other keys: --locked passes");

        let built = lock("pb", "fp", &[("f_0", "a")], "tgz2");
        let lines: Vec<String> = locked.differences(&built).iter().flat_map(|d| d.lines()).collect();
        assert_eq!(
            lines,
            [
                "m/p:package: build.json differs",
                "m/p:package: model.tar.gz differs (the SavedModel files inside it are as locked: the archive's packing differs)",
            ]
        );
    }

    #[test]
    fn the_lock_round_trips_with_its_saved_model_parts() {
        let lock = lock("pb", "fp", &[("__inference_call_0", "a")], "tgz");
        let text = lock.to_toml();
        assert!(text.contains("[step.saved-model]\n"), "{text}");
        assert!(text.contains("[step.saved-model.functions]\n__inference_call_0 = \"a\""), "{text}");
        assert_eq!(toml::from_str::<LockFile>(&text).unwrap(), lock);
        // A lock written before saved-model parts existed still reads.
        let old = text.split("[step.saved-model]").next().unwrap().to_string()
            + &text.split_once("[[step]]\nid = \"m/p:package\"").map(|(_, rest)| format!("[[step]]\nid = \"m/p:package\"{rest}")).unwrap();
        assert!(toml::from_str::<LockFile>(&old).unwrap().steps[1].saved_model.is_none());
    }
}
