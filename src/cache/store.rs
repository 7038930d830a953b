//! Cache entries: `cache/v1/entries/<key>/{out/, entry.json}`.
//!
//! Just's recipe cache is the model: a lookup is a hit or a miss; on a miss the step gets a
//! [`Pending`] entry whose `out/` it fills, and only [`Pending::commit`] — after success —
//! makes the entry exist (one rename). A pending entry dropped without commit is removed.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::atomic::TempDir;
use crate::exec::StepOutcome;

/// What `entry.json` records of a finished step.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub key: String,
    /// The digest of the whole output: its files' relative paths and digests.
    pub digest: String,
    /// Every output file (relative to `out/`) and its digest.
    pub files: BTreeMap<String, String>,
    pub outcome: StepOutcome,
    /// How long the step took when it ran, in seconds.
    pub seconds: f64,
    #[serde(skip)]
    pub dir: PathBuf,
}

impl Entry {
    /// The step's outputs.
    pub fn out(&self) -> PathBuf {
        self.dir.join("out")
    }
}

#[derive(Debug, Clone)]
pub struct Store {
    entries: PathBuf,
    tmp: PathBuf,
}

/// An entry being written.
pub struct Pending {
    key: String,
    dir: TempDir,
    entries: PathBuf,
}

impl Store {
    pub fn open(cache_dir: &Path) -> io::Result<Store> {
        let base = cache_dir.join("cache").join("v1");
        let store = Store { entries: base.join("entries"), tmp: base.join("tmp") };
        std::fs::create_dir_all(&store.entries)?;
        std::fs::create_dir_all(&store.tmp)?;
        Ok(store)
    }

    /// Removes what killed builds left in `tmp/`. Call only while holding the project lock.
    pub fn clean_tmp(&self) -> io::Result<usize> {
        let mut removed = 0;
        for entry in std::fs::read_dir(&self.tmp)? {
            let _ = std::fs::remove_dir_all(entry?.path());
            removed += 1;
        }
        Ok(removed)
    }

    pub fn lookup(&self, key: &str) -> Option<Entry> {
        let dir = self.entries.join(key);
        let mut entry: Entry = serde_json::from_slice(&std::fs::read(dir.join("entry.json")).ok()?).ok()?;
        if entry.key != key {
            return None;
        }
        entry.dir = dir;
        Some(entry)
    }

    pub fn begin(&self, key: &str) -> io::Result<Pending> {
        let dir = TempDir::new_in(&self.tmp)?;
        std::fs::create_dir(dir.path().join("out"))?;
        Ok(Pending { key: key.to_string(), dir, entries: self.entries.clone() })
    }

    /// Removes one entry (`exportctl clean --cache` removes them all).
    pub fn remove(&self, key: &str) -> io::Result<()> {
        std::fs::remove_dir_all(self.entries.join(key))
    }
}

impl Pending {
    /// Where the step writes its outputs.
    pub fn out(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    /// Records the outputs' digests and makes the entry exist.
    pub fn commit(self, outcome: StepOutcome, seconds: f64) -> io::Result<Entry> {
        let out = self.out();
        let files = digest_tree(&out)?;
        let listing: String = files.iter().map(|(p, d)| format!("{p}\0{d}\n")).collect();
        let mut entry = Entry { key: self.key.clone(), digest: crate::hash::digest_str(&listing), files, outcome, seconds, dir: PathBuf::new() };
        std::fs::write(self.dir.path().join("entry.json"), serde_json::to_vec_pretty(&entry).expect("entries serialise"))?;
        let dest = self.entries.join(&self.key);
        entry.dir = self.dir.commit(&dest)?;
        Ok(entry)
    }
}

/// Every file under `dir` (relative path with `/`) and its digest.
pub fn digest_tree(dir: &Path) -> io::Result<BTreeMap<String, String>> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, String>) -> io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let path = entry.path();
            let kind = entry.file_type()?;
            if kind.is_dir() {
                walk(base, &path, out)?;
            } else {
                let rel = path.strip_prefix(base).expect("inside base").to_string_lossy().replace('\\', "/");
                out.insert(rel, crate::hash::digest_file(&path)?);
            }
        }
        Ok(())
    }
    let mut files = BTreeMap::new();
    walk(dir, dir, &mut files)?;
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_committed_entry_is_a_hit() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert!(store.lookup("k1").is_none());

        let pending = store.begin("k1").unwrap();
        std::fs::write(pending.out().join("model.md"), "# Module").unwrap();
        drop(pending); // the step failed
        assert!(store.lookup("k1").is_none());
        assert_eq!(std::fs::read_dir(dir.path().join("cache/v1/tmp")).unwrap().count(), 0);

        let pending = store.begin("k1").unwrap();
        std::fs::create_dir(pending.out().join("saved_model")).unwrap();
        std::fs::write(pending.out().join("saved_model/saved_model.pb"), "pb").unwrap();
        let entry = pending.commit(StepOutcome::default(), 0.5).unwrap();
        let hit = store.lookup("k1").unwrap();
        assert_eq!(hit.digest, entry.digest);
        assert_eq!(hit.files.keys().collect::<Vec<_>>(), ["saved_model/saved_model.pb"]);
        assert_eq!(std::fs::read_to_string(hit.out().join("saved_model/saved_model.pb")).unwrap(), "pb");
    }
}
