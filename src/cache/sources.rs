//! Digests of source files without rehashing them: the freshness check of a no-op build.
//!
//! Like cargo's and ninja's fingerprints: `(size, mtime, inode)` of each file is remembered
//! with its digest in `.exportctl/sources.json`; when all three are unchanged the remembered
//! digest is used and the file is not read. Anything different (a touched file, a replaced
//! file with a new inode) falls back to hashing. A directory (a SavedModel source) is the
//! digest of its files' relative paths and digests.

use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Stamp {
    size: u64,
    mtime_ns: i128,
    inode: u64,
    digest: String,
}

/// The remembered digests of one project's source files.
#[derive(Debug, Default)]
pub struct SourceDigests {
    file: PathBuf,
    stamps: BTreeMap<PathBuf, Stamp>,
    changed: bool,
    /// How many files had to be read (for tests and `-v`).
    pub hashed: usize,
}

impl SourceDigests {
    /// Loads the remembered digests of the project whose cache folder is `cache_dir`.
    pub fn load(cache_dir: &Path) -> SourceDigests {
        let file = cache_dir.join("sources.json");
        let stamps = std::fs::read(&file).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
        SourceDigests { file, stamps, changed: false, hashed: 0 }
    }

    /// The digest of the file or directory `path` (absolute).
    pub fn digest(&mut self, path: &Path) -> io::Result<String> {
        let meta = std::fs::metadata(path)?;
        if meta.is_dir() {
            let mut files = Vec::new();
            collect_files(path, path, &mut files)?;
            files.sort();
            let mut listing = String::new();
            for rel in files {
                let digest = self.digest(&path.join(&rel))?;
                listing.push_str(&format!("{}\0{digest}\n", rel.display()));
            }
            return Ok(crate::hash::digest_str(&listing));
        }
        let mtime_ns = meta.modified()?.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i128);
        if let Some(stamp) = self.stamps.get(path) {
            if stamp.size == meta.len() && stamp.mtime_ns == mtime_ns && stamp.inode == meta.ino() {
                return Ok(stamp.digest.clone());
            }
        }
        let digest = crate::hash::digest_file(path)?;
        self.hashed += 1;
        self.stamps.insert(path.to_path_buf(), Stamp { size: meta.len(), mtime_ns, inode: meta.ino(), digest: digest.clone() });
        self.changed = true;
        Ok(digest)
    }

    /// Writes the remembered digests back if anything changed.
    pub fn save(&mut self) -> io::Result<()> {
        if !self.changed {
            return Ok(());
        }
        crate::atomic::write_file(&self.file, &serde_json::to_vec(&self.stamps).expect("stamps serialise"))?;
        self.changed = false;
        Ok(())
    }
}

fn collect_files(base: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            collect_files(base, &path, out)?;
        } else {
            out.push(path.strip_prefix(base).expect("inside base").to_path_buf());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unchanged_files_are_not_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join(".exportctl");
        std::fs::create_dir_all(&cache).unwrap();
        let model = dir.path().join("model.keras");
        std::fs::write(&model, b"weights v1").unwrap();

        let mut sources = SourceDigests::load(&cache);
        let first = sources.digest(&model).unwrap();
        assert_eq!(sources.hashed, 1);
        sources.save().unwrap();

        let mut sources = SourceDigests::load(&cache);
        assert_eq!(sources.digest(&model).unwrap(), first);
        assert_eq!(sources.hashed, 0, "a stat was enough");

        // Replaced (new inode, other size): hashed again.
        std::fs::remove_file(&model).unwrap();
        std::fs::write(&model, b"weights version 2").unwrap();
        let second = sources.digest(&model).unwrap();
        assert_ne!(second, first);
        assert_eq!(sources.hashed, 1);
    }

    #[test]
    fn a_directory_digest_covers_names_and_contents() {
        let dir = tempfile::tempdir().unwrap();
        let sm = dir.path().join("saved_model");
        std::fs::create_dir_all(sm.join("variables")).unwrap();
        std::fs::write(sm.join("saved_model.pb"), b"graph").unwrap();
        std::fs::write(sm.join("variables/variables.index"), b"index").unwrap();
        let mut sources = SourceDigests::load(dir.path());
        let a = sources.digest(&sm).unwrap();
        std::fs::rename(sm.join("variables/variables.index"), sm.join("variables/other.index")).unwrap();
        let b = sources.digest(&sm).unwrap();
        assert_ne!(a, b);
    }
}
