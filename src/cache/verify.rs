//! Checking that cached bytes are still the bytes a step wrote, without hashing them on every
//! build.
//!
//! Every file of every entry is a hard link to a blob named by its digest (`store.rs`), so a
//! check is per blob: the first time, the file is hashed and its [`Stamp`] remembered with
//! the digest in `.exportctl/verified.json`; later checks of an unchanged stamp cost one
//! `stat`. Any write through any of the blob's links (the cache, `dist/`) changes the ctime,
//! so it is hashed again and a difference is found. Entries are checked when their bytes are
//! about to be used: before a step reads its dependencies, before a file is linked into
//! `dist/` or uploaded — never on a no-op build, which uses nothing.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::stamp::Stamp;
use super::store::Entry;

/// What is wrong with one file of an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corruption {
    /// The entry's key.
    pub key: String,
    /// The file, relative to the entry's outputs.
    pub file: String,
    pub problem: String,
}

impl std::fmt::Display for Corruption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.file, self.problem)
    }
}

#[derive(Default)]
struct Memo {
    /// file id (`dev:ino`) -> the stamp it had when it was hashed, and the digest.
    files: HashMap<String, (Stamp, String)>,
    changed: bool,
}

/// The remembered verifications of one project's cache.
pub struct Verifier {
    path: PathBuf,
    memo: Mutex<Option<Memo>>,
}

impl Verifier {
    /// The verifier of the cache folder `cache_dir`; its memo is read on first use.
    pub fn new(cache_dir: &Path) -> Verifier {
        Verifier { path: cache_dir.join("verified.json"), memo: Mutex::new(None) }
    }

    fn with_memo<T>(&self, f: impl FnOnce(&mut Memo) -> T) -> T {
        let mut guard = self.memo.lock().unwrap_or_else(|p| p.into_inner());
        let memo = guard.get_or_insert_with(|| {
            let files = std::fs::read(&self.path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
            Memo { files, changed: false }
        });
        f(memo)
    }

    /// Remembers that `path` holds `digest` (the caller just hashed it).
    pub fn record(&self, path: &Path, digest: &str) -> io::Result<()> {
        let stamp = Stamp::of(path)?;
        self.with_memo(|m| {
            m.files.insert(stamp.file_id(), (stamp, digest.to_string()));
            m.changed = true;
        });
        Ok(())
    }

    /// Whether `path` is a regular file holding the bytes of `digest`: a `stat` when it was
    /// verified before and has not changed since, else it is hashed.
    pub fn check(&self, path: &Path, digest: &str) -> Result<(), String> {
        let meta = match std::fs::symlink_metadata(path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err("missing".into()),
            Err(e) => return Err(format!("cannot be read: {e}")),
        };
        if !meta.is_file() {
            return Err("is not a regular file".into());
        }
        let stamp = Stamp::of_metadata(&meta);
        let known = self.with_memo(|m| m.files.get(&stamp.file_id()).filter(|(s, d)| *s == stamp && d == digest).is_some());
        if known {
            return Ok(());
        }
        let actual = crate::hash::digest_file(path).map_err(|e| format!("cannot be read: {e}"))?;
        if actual != digest {
            return Err(format!(
                "its bytes changed (digest {} where the entry records {})",
                &actual[..12],
                &digest[..12.min(digest.len())]
            ));
        }
        // Hashing took a while: remember the stamp only if the file did not change meanwhile.
        if Stamp::of(path).ok() == Some(stamp) {
            self.with_memo(|m| {
                m.files.insert(stamp.file_id(), (stamp, actual));
                m.changed = true;
            });
        }
        Ok(())
    }

    /// Every file of `entry`, checked; the first problem found.
    pub fn check_entry(&self, entry: &Entry) -> Result<(), Corruption> {
        let out = entry.out();
        for (file, digest) in &entry.files {
            if let Err(problem) = self.check(&out.join(file), digest) {
                return Err(Corruption { key: entry.key.clone(), file: file.clone(), problem });
            }
        }
        Ok(())
    }

    /// Forgets what was remembered about the file at `path` (it is being removed).
    pub fn forget(&self, path: &Path) {
        if let Ok(stamp) = Stamp::of(path) {
            self.with_memo(|m| {
                if m.files.remove(&stamp.file_id()).is_some() {
                    m.changed = true;
                }
            });
        }
    }

    /// Writes the memo back if it changed, dropping files that no longer exist is left to
    /// [`Verifier::prune`].
    pub fn save(&self) -> io::Result<()> {
        let mut guard = self.memo.lock().unwrap_or_else(|p| p.into_inner());
        let Some(memo) = guard.as_mut() else { return Ok(()) };
        if !memo.changed {
            return Ok(());
        }
        crate::atomic::write_file(&self.path, &serde_json::to_vec(&memo.files).expect("stamps serialise"))?;
        memo.changed = false;
        Ok(())
    }

    /// Keeps only the files whose ids are in `alive` (after a garbage collection).
    pub fn prune(&self, alive: &std::collections::HashSet<String>) {
        self.with_memo(|m| {
            let before = m.files.len();
            m.files.retain(|id, _| alive.contains(id));
            m.changed |= m.files.len() != before;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unchanged_file_is_trusted_a_changed_one_is_hashed_again() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("variables.data");
        std::fs::write(&file, b"weights").unwrap();
        let digest = crate::hash::digest_file(&file).unwrap();
        let verifier = Verifier::new(dir.path());
        verifier.record(&file, &digest).unwrap();
        assert_eq!(verifier.check(&file, &digest), Ok(()));

        // Same size, mtime restored: the ctime still tells.
        let mtime = std::fs::metadata(&file).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(10));
        std::fs::write(&file, b"weightz").unwrap();
        std::fs::File::options().write(true).open(&file).unwrap().set_modified(mtime).unwrap();
        let problem = verifier.check(&file, &digest).unwrap_err();
        assert!(problem.contains("bytes changed"), "{problem}");

        std::fs::remove_file(&file).unwrap();
        assert_eq!(verifier.check(&file, &digest), Err("missing".to_string()));
    }

    #[test]
    fn the_memo_survives_a_new_verifier() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("saved_model.pb");
        std::fs::write(&file, b"graph").unwrap();
        let digest = crate::hash::digest_file(&file).unwrap();
        let verifier = Verifier::new(dir.path());
        verifier.check(&file, &digest).unwrap();
        verifier.save().unwrap();
        let again = Verifier::new(dir.path());
        assert!(again.with_memo(|m| m.files.len()) == 1);
    }
}
