//! Scratch space that never outlives its process: `<scratch>/<pid>/`.
//!
//! Archives are unpacked here and the Python worker's `TMPDIR` (where TensorFlow's autograph
//! writes its generated files) is here. The folder holds a lock file that the process keeps
//! locked while it lives; the kernel releases it when the process ends, even by `kill -9`.
//! Every process first removes the folders whose lock it can take ([`clean_stale`]): the
//! leftovers of processes that were killed before they could clean up. A process that ends
//! normally removes its own folders on the way out ([`remove_own`]), so nothing is left for
//! the next one to find.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The folders this process made and locked, with their lock files.
static HELD: Mutex<Vec<(PathBuf, std::fs::File)>> = Mutex::new(Vec::new());

/// A scratch folder that could not be made (or locked).
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("cannot create {}: {source}", .path.display())]
pub struct ScratchError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// This process's folder inside `scratch_dir` (created and locked on first use).
pub fn process_dir(scratch_dir: &Path) -> Result<PathBuf, ScratchError> {
    let dir = scratch_dir.join(format!("{}", std::process::id()));
    let mut held = HELD.lock().unwrap_or_else(|p| p.into_inner());
    if held.iter().any(|(d, _)| d == &dir) && dir.join(".lock").is_file() {
        return Ok(dir);
    }
    let error = |source| ScratchError { path: dir.clone(), source };
    std::fs::create_dir_all(&dir).map_err(error)?;
    let lock = std::fs::File::create(dir.join(".lock")).map_err(error)?;
    lock.lock().map_err(error)?;
    held.retain(|(d, _)| d != &dir);
    held.push((dir.clone(), lock));
    Ok(dir)
}

/// Removes this process's folders: called on the way out, once nothing (no worker, no
/// unpacked archive) uses them any more. The lock goes last, so no other process judges a
/// half-removed folder.
pub fn remove_own() {
    let mut held = HELD.lock().unwrap_or_else(|p| p.into_inner());
    for (dir, lock) in held.drain(..) {
        let _ = std::fs::remove_dir_all(&dir);
        drop(lock);
    }
}

/// Removes the folders of processes that are gone: a folder whose lock can be taken has no
/// owner.
pub fn clean_stale(scratch_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(scratch_dir) else { return };
    let mine = std::process::id().to_string();
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        // Only a process's folder (named by its pid) is ours to judge.
        if name == mine || name.parse::<u32>().is_err() || !entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            continue;
        }
        let owned = std::fs::File::open(path.join(".lock")).map(|f| f.try_lock().is_err()).unwrap_or(false);
        if !owned {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scratch_of_a_killed_process_is_removed_by_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let stale = dir.path().join("999999999");
        std::fs::create_dir_all(stale.join("archive-0")).unwrap();
        std::fs::write(stale.join(".lock"), b"").unwrap();
        std::fs::write(stale.join("archive-0/variables.data"), vec![0u8; 1000]).unwrap();
        let mine = process_dir(dir.path()).unwrap();
        clean_stale(dir.path());
        assert!(!stale.exists());
        assert!(mine.is_dir(), "a living process's folder stays");
        std::fs::write(mine.join("left-by-a-worker"), b"x").unwrap();
        remove_own();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "a process leaves no scratch behind");
    }
}
