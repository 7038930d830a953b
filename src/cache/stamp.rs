//! What a `stat` says about a file's identity and contents, without reading it.
//!
//! A [`Stamp`] is the device and inode (which file), its size, and its modification and
//! status-change times. `ctime` is the one that matters against tampering: a program can set
//! a file's mtime back after editing it (`touch -r`, `utime`), but every write, `chmod`, new
//! link or `utime` sets the ctime to *now*, and nothing but the kernel can set it. So an
//! unchanged stamp means the bytes are the ones last hashed; anything else means hash again.
//! The price: creating a hard link to a file changes its ctime, so a stamp is taken again
//! after exportctl links a file itself.

use std::io;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Stamp {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
}

impl Stamp {
    pub fn of_metadata(meta: &std::fs::Metadata) -> Stamp {
        Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.len(),
            mtime_ns: meta.mtime().saturating_mul(1_000_000_000).saturating_add(meta.mtime_nsec()),
            ctime_ns: meta.ctime().saturating_mul(1_000_000_000).saturating_add(meta.ctime_nsec()),
        }
    }

    /// The stamp of `path` itself (a symbolic link is not followed).
    pub fn of(path: &Path) -> io::Result<Stamp> {
        Ok(Stamp::of_metadata(&std::fs::symlink_metadata(path)?))
    }

    /// `dev:ino`: the file, whichever of its hard links is looked at.
    pub fn file_id(&self) -> String {
        format!("{}:{}", self.dev, self.ino)
    }
}
