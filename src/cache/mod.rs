//! The content-addressed cache under `.exportctl/` (git-ignored).
//!
//! ```text
//! .exportctl/
//!     CACHEDIR.TAG             marks the folder as a cache for backup tools
//!     build.lock               one build per project at a time (lock.rs)
//!     sources.json             (path, size, mtime, inode) -> digest of source files (sources.rs)
//!     dist.json                what dist/ was last materialised from (exec/dist.rs)
//!     verified.json            (file, stamp) -> digest of blobs already checked (verify.rs)
//!     last-keys.json           each step's last key, to say why it runs again (explain.rs)
//!     cache/v2/entries/<key>/  one finished step: out/ (its outputs) and entry.json (store.rs)
//!     cache/v2/blobs/          every distinct output file once, read-only (store.rs)
//!     cache/v2/tmp/            steps being run; anything left here is from a killed build
//! ```
//!
//! **What a key covers** (key.rs): the step's kind, the canonical form of the manifest
//! settings it reads (only those), the digests of the source files it reads, the output
//! digests of every step it depends on, exportctl's version and the worker's source, and the
//! runtime's fingerprint (Python, TensorFlow, Keras… versions). **What it leaves out**:
//! absolute paths, mtimes, the step's name (two identical pieces could share an entry, but
//! names reach the outputs through the package settings anyway), anything of the machine.
//!
//! **Why nothing half-written is ever trusted**: a step writes into `tmp/`; only when it
//! succeeded is `entry.json` written and the folder renamed to `entries/<key>` — one atomic
//! rename. A killed build leaves at most a folder in `tmp/`, removed by the next build.
//!
//! **Why nothing changed afterwards is trusted either**: an entry's files are hard links to
//! read-only blobs, and before a cached file is read by a step, linked into `dist/` or
//! uploaded, its bytes are checked against the digest the entry records (`verify.rs`: a
//! `stat` when nothing changed). A mismatch evicts the entry and the step runs again.
//!
//! **Bounded**: after a build that added entries, the least recently used ones are removed
//! until the cache fits its size limit (`[cache] max-size`, `EXPORTCTL_CACHE_MAX_SIZE`),
//! never one the current build uses (`store.rs`, `limit.rs`).

pub mod explain;
pub mod key;
pub mod limit;
pub mod lock;
pub mod remote;
pub mod sources;
pub mod stamp;
pub mod store;
pub mod verify;

pub use explain::{LastKeys, Reason};
pub use key::StepKey;
pub use lock::ProjectLock;
pub use remote::{Remote, RemoteConfig};
pub use sources::SourceDigests;
pub use stamp::Stamp;
pub use store::{Collected, Entry, Pending, Store};
pub use verify::{Corruption, Verifier};

use std::path::{Path, PathBuf};

/// The `.exportctl` folder of a project.
pub fn dir(root: &Path) -> PathBuf {
    root.join(".exportctl")
}

/// Creates `.exportctl/` if needed. A `.exportctl` that is a symbolic link (or not a folder)
/// is refused: everything exportctl deletes in it would be deleted wherever the link points.
pub fn ensure(root: &Path) -> std::io::Result<PathBuf> {
    real_dir(root, Path::new(".exportctl"))
}

/// Makes `base/relative` and every folder on the way below `base` a real folder, creating
/// what is missing. A symbolic link (or a file) on the way is refused, never followed: what
/// exportctl writes or deletes in `.exportctl/` would otherwise land wherever it points.
/// `base` itself is not looked at: a project may well live behind a link.
pub fn real_dir(base: &Path, relative: &Path) -> std::io::Result<PathBuf> {
    let mut path = base.to_path_buf();
    for component in relative.components() {
        path.push(component);
        match std::fs::create_dir(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => refuse_link(&path)?,
            other => other?,
        }
    }
    Ok(path)
}

/// Writes `.exportctl/`'s `CACHEDIR.TAG` and `.gitignore` if they are missing. Call it while
/// holding the project lock: `clean --cache` removes them under the same lock.
pub fn mark(dir: &Path) -> std::io::Result<()> {
    let tag = dir.join("CACHEDIR.TAG");
    if !tag.exists() {
        crate::atomic::write_file(
            &tag,
            b"Signature: 8a477f597d28d172789f06886806bc55\n# This folder is exportctl's build cache (https://bford.info/cachedir/).\n",
        )?;
    }
    let ignore = dir.join(".gitignore");
    if !ignore.exists() {
        crate::atomic::write_file(&ignore, b"*\n")?;
    }
    Ok(())
}

/// What `exportctl clean --cache` removes from `.exportctl/`: everything exportctl writes
/// there except the lock file, which the cleaner holds.
pub const CREATED: &[&str] =
    &["cache", "sources.json", "dist.json", "verified.json", "last-keys.json", "reports", "CACHEDIR.TAG", ".gitignore"];

/// An error if `path` exists and is a symbolic link or not a directory.
pub fn refuse_link(path: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "{} is a symbolic link; exportctl keeps its cache in real folders of the project and never writes or deletes through a link: remove the link",
                path.display()
            ),
        )),
        Ok(meta) if !meta.is_dir() => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{} is not a folder: remove it, exportctl keeps its cache there", path.display()),
        )),
        _ => Ok(()),
    }
}
