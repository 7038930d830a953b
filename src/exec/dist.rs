//! `dist/` materialised from the cache.
//!
//! For every piece whose `package` step succeeded, `dist/<model>/<piece>/<version>/` gets the
//! package step's outputs (`model.tar.gz`, `model.md`, `build.json`) and the trace step's
//! `saved_model/`. Files are copied, not linked: a user editing a file in `dist/` must not be
//! able to change a cache entry. A piece folder is assembled beside its destination and
//! renamed into place, so it is never seen half-written; a piece whose package did not build
//! keeps what it had. `.exportctl/dist.json` remembers what each folder was made from and the
//! size and mtime of its files, so a no-op build only stats them.

use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::scheduler::BuildSummary;
use crate::plan::{StepId, StepKind};

#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
struct Made {
    package: String,
    trace: String,
    /// Relative path → (size, mtime in ns).
    files: BTreeMap<String, (u64, i64)>,
}

/// Copies the built packages of `summary` into `out_dir`. Returns the folders written.
pub fn materialize(cache_dir: &Path, out_dir: &Path, version: u32, summary: &BuildSummary) -> io::Result<Vec<PathBuf>> {
    let state_file = cache_dir.join("dist.json");
    let mut state: BTreeMap<String, Made> = std::fs::read(&state_file).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
    let by_id: std::collections::HashMap<&StepId, &super::StepResult> = summary.results.iter().map(|r| (&r.id, r)).collect();
    let mut written = Vec::new();
    let mut changed = false;
    for result in summary.results.iter().filter(|r| r.id.kind == StepKind::Package && r.succeeded()) {
        let (Some(package), Some(piece)) = (&result.entry, &result.id.piece) else { continue };
        let trace_id = StepId { kind: StepKind::Trace, ..result.id.clone() };
        let Some(trace) = by_id.get(&trace_id).and_then(|r| r.entry.as_ref()) else { continue };
        let rel = format!("{}/{piece}/{version}", result.id.model);
        let dest = out_dir.join(&rel);
        if let Some(made) = state.get(&rel) {
            if made.package == package.digest && made.trace == trace.digest && stamps(&dest).ok().as_ref() == Some(&made.files) {
                continue;
            }
        }
        let parent = dest.parent().expect("dist paths have parents");
        let tmp = crate::atomic::TempDir::new_in(parent)?;
        copy_tree(&package.out(), tmp.path())?;
        copy_tree(&trace.out().join("saved_model"), &tmp.path().join("saved_model"))?;
        if dest.exists() {
            std::fs::remove_dir_all(&dest)?;
        }
        tmp.commit(&dest)?;
        state.insert(rel, Made { package: package.digest.clone(), trace: trace.digest.clone(), files: stamps(&dest)? });
        changed = true;
        written.push(dest);
    }
    if changed {
        crate::atomic::write_file(&state_file, &serde_json::to_vec_pretty(&state).expect("state serialises"))?;
    }
    Ok(written)
}

fn stamps(dir: &Path) -> io::Result<BTreeMap<String, (u64, i64)>> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, (u64, i64)>) -> io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.is_dir() {
                walk(base, &entry.path(), out)?;
            } else {
                let rel = entry.path().strip_prefix(base).expect("inside").to_string_lossy().into_owned();
                out.insert(rel, (meta.len(), meta.mtime() * 1_000_000_000 + meta.mtime_nsec()));
            }
        }
        Ok(())
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out)?;
    Ok(out)
}

fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}
