//! The content-addressed cache under `.exportctl/` (git-ignored).
//!
//! ```text
//! .exportctl/
//!     CACHEDIR.TAG             marks the folder as a cache for backup tools
//!     build.lock               one build per project at a time (lock.rs)
//!     sources.json             (path, size, mtime, inode) -> digest of source files (sources.rs)
//!     dist.json                what dist/ was last materialised from (exec/dist.rs)
//!     cache/v1/entries/<key>/  one finished step: out/ (its outputs) and entry.json (store.rs)
//!     cache/v1/tmp/            steps being run; anything left here is from a killed build
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

pub mod key;
pub mod lock;
pub mod sources;
pub mod store;

pub use key::StepKey;
pub use lock::ProjectLock;
pub use sources::SourceDigests;
pub use store::{Entry, Pending, Store};

use std::path::{Path, PathBuf};

/// The `.exportctl` folder of a project.
pub fn dir(root: &Path) -> PathBuf {
    root.join(".exportctl")
}

/// Creates `.exportctl/` with its `CACHEDIR.TAG` if needed.
pub fn ensure(root: &Path) -> std::io::Result<PathBuf> {
    let dir = dir(root);
    std::fs::create_dir_all(&dir)?;
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
    Ok(dir)
}
