//! The one way exportctl writes anything another process may read: into a temporary file or
//! directory beside the destination, then `rename` — so a reader (or a later build after a
//! crash, Ctrl-C or kill -9) sees the old state or the new one, never half of one.

use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` atomically, creating its parent directory.
pub fn write_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let parent = parent_of(path);
    std::fs::create_dir_all(&parent)?;
    let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(&parent)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_data()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// A directory being filled in; it appears at its destination only through [`TempDir::commit`].
/// Dropped without a commit, it is removed.
pub struct TempDir {
    dir: Option<tempfile::TempDir>,
}

impl TempDir {
    /// A fresh temporary directory in `parent` (the destination's parent: same filesystem).
    pub fn new_in(parent: &Path) -> io::Result<TempDir> {
        std::fs::create_dir_all(parent)?;
        let dir = tempfile::Builder::new().prefix(".tmp-").tempdir_in(parent)?;
        Ok(TempDir { dir: Some(dir) })
    }

    pub fn path(&self) -> &Path {
        self.dir.as_ref().expect("not committed yet").path()
    }

    /// Renames the directory to `dest`. If `dest` exists already (another process committed
    /// the same content first), this one is discarded and `dest` kept.
    pub fn commit(mut self, dest: &Path) -> io::Result<PathBuf> {
        let dir = self.dir.take().expect("committed once");
        let path = dir.keep();
        match std::fs::rename(&path, dest) {
            Ok(()) => Ok(dest.to_path_buf()),
            Err(_) if dest.is_dir() => {
                let _ = std::fs::remove_dir_all(&path);
                Ok(dest.to_path_buf())
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&path);
                Err(e)
            }
        }
    }
}

fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}
