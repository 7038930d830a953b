//! One build per project at a time: an exclusive lock on `.exportctl/build.lock`, which
//! holds the pid of its holder so that a waiting build can say who it waits for. The lock is
//! the kernel's (flock): it is released when the holder exits, even by kill -9.

use std::fs::File;
use std::io::{self, Read as _, Seek as _, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

pub struct ProjectLock {
    _file: File,
}

/// Why the lock was not taken.
///
/// No help here: what to do depends on the command that wanted the lock (it says so).
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum LockError {
    #[error("another exportctl build is running in this project{}", .holder.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    Busy { holder: Option<u32> },
    #[error("cannot lock {}: {source}", .path.display())]
    Io { path: PathBuf, source: io::Error },
    /// The lock file is a symbolic link: writing the holder's pid into it would overwrite
    /// whatever it points to.
    #[error("{} is a symbolic link; exportctl never writes through a link: remove the link", .path.display())]
    Link { path: PathBuf },
}

impl ProjectLock {
    /// Takes the lock; when it is held, `wait` decides between waiting (after calling
    /// `on_wait` with the holder's pid) and failing with [`LockError::Busy`].
    pub fn acquire(cache_dir: &Path, wait: bool, on_wait: impl FnOnce(Option<u32>)) -> Result<ProjectLock, LockError> {
        let path = cache_dir.join("build.lock");
        let io_err = |source| LockError::Io { path: path.clone(), source };
        let mut file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|e| if e.raw_os_error() == Some(libc::ELOOP) { LockError::Link { path: path.clone() } } else { io_err(e) })?;
        if file.try_lock().is_err() {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            let holder = text.trim().parse().ok();
            if !wait {
                return Err(LockError::Busy { holder });
            }
            on_wait(holder);
            file.lock().map_err(io_err)?;
        }
        let _ = file.set_len(0);
        let _ = file.rewind();
        let _ = write!(file, "{}", std::process::id());
        let _ = file.flush();
        Ok(ProjectLock { _file: file })
    }
}
