//! Cache entries and the blobs they share: `cache/v2/`.
//!
//! ```text
//! cache/v2/entries/<key>/entry.json   what the step produced (files and digests, outcome, its full key)
//! cache/v2/entries/<key>/out/...      its outputs: every file a hard link to a blob
//! cache/v2/blobs/<ab>/<digest>        each distinct file once, read-only, named by its BLAKE3
//! cache/v2/tmp/                       steps being run; anything left here is from a killed build
//! ```
//!
//! Just's recipe cache is the model: a lookup is a hit or a miss; on a miss the step gets a
//! [`Pending`] entry whose `out/` it fills, and only [`Pending::commit`] — after success —
//! makes the entry exist (one rename). A pending entry dropped without commit is removed.
//!
//! **Stored once.** At commit every output file is hashed and becomes (or is replaced by) a
//! hard link to its blob, so two entries with the same file — two pieces' identical golden
//! inputs, a rebuilt step whose output did not change — cost the disk once, and `dist/` links
//! the same blobs instead of copying them. Blobs are read-only: an editor or a script cannot
//! change a cache file through one of its links without being told (root excepted, which is
//! why [`super::verify`] checks bytes before they are used).
//!
//! **Never through a link.** [`Store::open`] refuses a symbolic link (or a file) anywhere
//! from `.exportctl/` down to `entries/`, `blobs/` and `tmp/`: what exportctl deletes there
//! would otherwise be deleted wherever the link points. What it deletes is checked again right
//! before, and a link found inside those folders is removed, never followed. An `entry.json`
//! is trusted only to name files inside its entry and blobs by a digest, nothing else: a
//! crafted one cannot point a removal outside the cache.
//!
//! **Least recently used first.** A hit or a commit sets `entry.json`'s mtime to now; the
//! garbage collection ([`Store::collect_garbage`]) removes the oldest entries until the blobs
//! fit the size limit, never one the current build needs, then every blob no entry links any
//! more (a link count of one: the blob's own).

use std::collections::{BTreeMap, HashSet};
use std::io;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::verify::Verifier;
use crate::atomic::TempDir;
use crate::exec::StepOutcome;

/// The name of the cache's format folder; bump it when entries change meaning.
pub const FORMAT_DIR: &str = "v2";

/// What `entry.json` records of a finished step.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    /// The digest of the step's key.
    pub key: String,
    /// The step it was made for (`model/piece:kind`), to explain the next miss.
    #[serde(default)]
    pub step: String,
    /// The digest of the whole output: its files' relative paths and digests.
    pub digest: String,
    /// Every output file (relative to `out/`) and its digest.
    pub files: BTreeMap<String, String>,
    /// The total size of the output files.
    #[serde(default)]
    pub bytes: u64,
    pub outcome: StepOutcome,
    /// How long the step took when it ran, in seconds.
    pub seconds: f64,
    /// The key itself, not just its digest: what the step was made from (`explain.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_key: Option<serde_json::Value>,
    #[serde(skip)]
    pub dir: PathBuf,
}

impl Entry {
    /// The step's outputs.
    pub fn out(&self) -> PathBuf {
        self.dir.join("out")
    }

    /// Whether every file the entry lists is a relative path inside `out/` and every digest is
    /// one (hex): the paths and blob names made from them then stay inside the cache.
    pub fn names_only_its_own_files(&self) -> bool {
        self.files.iter().all(|(file, digest)| {
            let inside = !file.is_empty() && Path::new(file).components().all(|c| matches!(c, std::path::Component::Normal(_)));
            let a_digest = digest.len() == 64 && digest.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
            inside && a_digest
        })
    }

    /// The digest of a listing of files: the entry's digest.
    pub fn digest_of(files: &BTreeMap<String, String>) -> String {
        let listing: String = files.iter().map(|(p, d)| format!("{p}\0{d}\n")).collect();
        crate::hash::digest_str(&listing)
    }
}

#[derive(Debug, Clone)]
pub struct Store {
    entries: PathBuf,
    blobs: PathBuf,
    tmp: PathBuf,
}

/// An entry being written.
pub struct Pending {
    key: String,
    step: String,
    dir: TempDir,
    store: Store,
}

/// What a garbage collection did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Collected {
    /// The blobs' size before and after.
    pub before: u64,
    pub after: u64,
    /// The entries removed, oldest first: (step, key).
    pub evicted: Vec<(String, String)>,
    pub blobs_removed: usize,
}

impl Store {
    /// Opens the store of `cache_dir` (`.exportctl/`), creating its folders. Every one of them,
    /// and `cache_dir` itself, must be a real folder: a symbolic link is refused.
    pub fn open(cache_dir: &Path) -> io::Result<Store> {
        super::refuse_link(cache_dir)?;
        fs_err::create_dir_all(cache_dir)?;
        let base = Path::new("cache").join(FORMAT_DIR);
        let store = Store {
            entries: super::real_dir(cache_dir, &base.join("entries"))?,
            blobs: super::real_dir(cache_dir, &base.join("blobs"))?,
            tmp: super::real_dir(cache_dir, &base.join("tmp"))?,
        };
        Ok(store)
    }

    /// Removes what killed builds left in `tmp/`. Call only while holding the project lock.
    pub fn clean_tmp(&self) -> io::Result<usize> {
        super::refuse_link(&self.tmp)?;
        let mut removed = 0;
        for entry in fs_err::read_dir(&self.tmp)? {
            let _ = remove_below(&self.tmp, &entry?.file_name());
            removed += 1;
        }
        Ok(removed)
    }

    /// The entry of `key`, if one was committed. A hit counts as a use (see the module docs).
    pub fn lookup(&self, key: &str) -> Option<Entry> {
        let entry = self.peek(key)?;
        let _ = filetime::set_file_mtime(entry.dir.join("entry.json"), filetime::FileTime::now());
        Some(entry)
    }

    /// The entry of `key` without counting it as a use. An entry folder that is a link, or an
    /// `entry.json` naming a file outside its entry or a blob by anything but a digest, is no
    /// entry.
    pub fn peek(&self, key: &str) -> Option<Entry> {
        let dir = self.entries.join(key);
        let json = dir.join("entry.json");
        let real = |path: &Path, folder: bool| fs_err::symlink_metadata(path).is_ok_and(|m| if folder { m.is_dir() } else { m.is_file() });
        if !real(&dir, true) || !real(&json, false) {
            return None;
        }
        let mut entry: Entry = serde_json::from_slice(&fs_err::read(json).ok()?).ok()?;
        if entry.key != key || !entry.names_only_its_own_files() {
            return None;
        }
        entry.dir = dir;
        Some(entry)
    }

    pub fn begin(&self, key: &str, step: &str) -> io::Result<Pending> {
        let dir = TempDir::new_in(&self.tmp)?;
        fs_err::create_dir(dir.path().join("out"))?;
        Ok(Pending { key: key.to_string(), step: step.to_string(), dir, store: self.clone() })
    }

    /// Where the entry of `key` is committed. Anything but a folder there (a link) is no
    /// entry: it is removed — the link itself — so that the commit puts a real folder there.
    fn entry_dir(&self, key: &str) -> io::Result<PathBuf> {
        let dir = self.entries.join(key);
        if fs_err::symlink_metadata(&dir).is_ok_and(|m| !m.is_dir()) {
            self.remove(key)?;
        }
        Ok(dir)
    }

    /// Removes one entry (its blobs stay until the next garbage collection).
    pub fn remove(&self, key: &str) -> io::Result<()> {
        remove_below(&self.entries, std::ffi::OsStr::new(key))
    }

    /// Removes an entry whose bytes are wrong, and the blob of the bad file, so that no new
    /// entry links it.
    pub fn evict_corrupt(&self, entry: &Entry, file: &str, verifier: &Verifier) -> io::Result<()> {
        if let Some(digest) = entry.files.get(file) {
            let blob = self.blob_path(digest);
            let same_file = match (fs_err::metadata(&blob), fs_err::metadata(entry.out().join(file))) {
                (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
                (Ok(_), Err(_)) => false,
                _ => false,
            };
            if same_file || verifier.check(&blob, digest).is_err() {
                verifier.forget(&blob);
                let _ = self.remove_blob(&blob);
            }
        }
        self.remove(&entry.key)
    }

    /// Where the blob of `digest` lives.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        self.blobs.join(blob_prefix(digest)).join(digest)
    }

    /// Removes a blob, after checking that neither `blobs/` nor its prefix folder has become a
    /// link.
    fn remove_blob(&self, blob: &Path) -> io::Result<()> {
        super::refuse_link(&self.blobs)?;
        super::refuse_link(blob.parent().expect("blobs have a prefix folder"))?;
        fs_err::remove_file(blob)
    }

    /// The prefix folder of `digest`'s blob, made a real folder if needed.
    fn blob_dir(&self, digest: &str) -> io::Result<PathBuf> {
        super::real_dir(&self.blobs, Path::new(blob_prefix(digest)))
    }

    /// Every committed entry, with the time it was last used.
    pub fn entries(&self) -> io::Result<Vec<(Entry, std::time::SystemTime)>> {
        let mut out = Vec::new();
        for item in fs_err::read_dir(&self.entries)? {
            let item = item?;
            let key = item.file_name().to_string_lossy().into_owned();
            let Ok(used) = fs_err::metadata(item.path().join("entry.json")).and_then(|m| m.modified()) else { continue };
            if let Some(entry) = self.peek(&key) {
                out.push((entry, used));
            }
        }
        Ok(out)
    }

    /// The size of every blob: what the cache takes on disk (entries are links to them).
    pub fn size(&self) -> io::Result<u64> {
        Ok(self.blob_files()?.iter().map(|(_, meta)| meta.len()).sum())
    }

    fn blob_files(&self) -> io::Result<Vec<(PathBuf, std::fs::Metadata)>> {
        super::refuse_link(&self.blobs)?;
        let mut out = Vec::new();
        for prefix in fs_err::read_dir(&self.blobs)? {
            let prefix = prefix?;
            if !prefix.file_type()?.is_dir() {
                continue;
            }
            for blob in fs_err::read_dir(prefix.path())? {
                let blob = blob?;
                let meta = blob.metadata()?;
                if meta.is_file() {
                    out.push((blob.path(), meta));
                }
            }
        }
        Ok(out)
    }

    /// Removes the least recently used entries that are not in `keep` until the blobs take at
    /// most `limit` bytes, then every blob no entry (and no `dist/` file) links any more.
    pub fn collect_garbage(&self, limit: u64, keep: &HashSet<String>, verifier: &Verifier) -> io::Result<Collected> {
        let before = self.size()?;
        let mut collected = Collected { before, after: before, ..Collected::default() };
        if before > limit {
            let mut entries = self.entries()?;
            entries.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.key.cmp(&b.0.key)));
            let mut size = before;
            for (entry, _) in entries {
                if size <= limit {
                    break;
                }
                if keep.contains(&entry.key) {
                    continue;
                }
                self.remove(&entry.key)?;
                collected.evicted.push((entry.step.clone(), entry.key.clone()));
                let digests: HashSet<&String> = entry.files.values().collect();
                for digest in digests {
                    let blob = self.blob_path(digest);
                    if let Ok(meta) = fs_err::symlink_metadata(&blob) {
                        if meta.is_file() && meta.nlink() <= 1 {
                            self.remove_blob(&blob)?;
                            collected.blobs_removed += 1;
                            size = size.saturating_sub(meta.len());
                        }
                    }
                }
            }
        }
        // Blobs nothing links (an entry evicted earlier, a dist/ folder since removed).
        let mut alive = HashSet::new();
        for (path, meta) in self.blob_files()? {
            if meta.nlink() <= 1 {
                self.remove_blob(&path)?;
                collected.blobs_removed += 1;
            } else {
                alive.insert(super::Stamp::of_metadata(&meta).file_id());
            }
        }
        verifier.prune(&alive);
        collected.after = self.size()?;
        Ok(collected)
    }
}

impl Pending {
    /// Where the step writes its outputs.
    pub fn out(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    /// Stores every output file as a blob (see the module docs), records the outputs'
    /// digests and makes the entry exist.
    pub fn commit(self, outcome: StepOutcome, seconds: f64, full_key: Option<serde_json::Value>, verifier: &Verifier) -> io::Result<Entry> {
        let out = self.out();
        let mut files = BTreeMap::new();
        let mut bytes = 0;
        for relative in list_files(&out)? {
            let path = out.join(&relative);
            let digest = crate::hash::digest_file(&path)?;
            bytes += fs_err::metadata(&path)?.len();
            self.store.share(&path, &digest, verifier)?;
            files.insert(relative, digest);
        }
        let mut entry = Entry {
            key: self.key.clone(),
            step: self.step.clone(),
            digest: Entry::digest_of(&files),
            files,
            bytes,
            outcome,
            seconds,
            full_key,
            dir: PathBuf::new(),
        };
        fs_err::write(self.dir.path().join("entry.json"), serde_json::to_vec_pretty(&entry).expect("entries serialise"))?;
        let dest = self.store.entry_dir(&self.key)?;
        entry.dir = self.dir.commit(&dest)?;
        Ok(entry)
    }
}

impl Store {
    /// Makes `path` (a file holding `digest`) a link to the blob of `digest`: the blob if it
    /// exists and is intact, else `path`'s own file becomes the blob.
    fn share(&self, path: &Path, digest: &str, verifier: &Verifier) -> io::Result<()> {
        let blob = self.blob_path(digest);
        if blob.exists() {
            if verifier.check(&blob, digest).is_ok() {
                fs_err::remove_file(path)?;
                fs_err::hard_link(&blob, path)?;
                verifier.record(&blob, digest)?;
                return Ok(());
            }
            verifier.forget(&blob);
            self.remove_blob(&blob)?;
        }
        fs_err::set_permissions(path, std::fs::Permissions::from_mode(0o444))?;
        self.blob_dir(digest)?;
        match fs_err::hard_link(path, &blob) {
            // Another build of the same project cannot run, but a concurrent commit of the
            // same content in this build can: the blob is the same bytes either way.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            other => other?,
        }
        verifier.record(&blob, digest)
    }

    /// Adds the file at `source` as the blob of `digest` (already verified by the caller),
    /// by moving it. Used by the remote cache for downloads.
    pub fn adopt_blob(&self, source: &Path, digest: &str, verifier: &Verifier) -> io::Result<PathBuf> {
        let blob = self.blob_path(digest);
        fs_err::set_permissions(source, std::fs::Permissions::from_mode(0o444))?;
        self.blob_dir(digest)?;
        fs_err::rename(source, &blob)?;
        verifier.record(&blob, digest)?;
        Ok(blob)
    }

    /// A folder in `tmp/` for the caller to fill (a download), removed when dropped.
    pub fn scratch(&self) -> io::Result<TempDir> {
        TempDir::new_in(&self.tmp)
    }

    /// Commits an entry whose blobs are all present (a download from the remote cache):
    /// its `out/` is made of links to them.
    pub fn insert(&self, mut entry: Entry) -> io::Result<Entry> {
        let dir = TempDir::new_in(&self.tmp)?;
        let out = dir.path().join("out");
        fs_err::create_dir(&out)?;
        for (file, digest) in &entry.files {
            let target = out.join(file);
            if let Some(parent) = target.parent() {
                fs_err::create_dir_all(parent)?;
            }
            fs_err::hard_link(self.blob_path(digest), &target)?;
        }
        fs_err::write(dir.path().join("entry.json"), serde_json::to_vec_pretty(&entry).expect("entries serialise"))?;
        entry.dir = dir.commit(&self.entry_dir(&entry.key)?)?;
        Ok(entry)
    }
}

/// The folder in `blobs/` of `digest`'s blob: its first two characters.
fn blob_prefix(digest: &str) -> &str {
    digest.get(..2).unwrap_or("00")
}

/// Removes `parent/name` — a folder, or a link (the link itself) — after checking that
/// `parent` has not become a link since the store was opened: a recursive delete is where
/// following one would do harm.
fn remove_below(parent: &Path, name: &std::ffi::OsStr) -> io::Result<()> {
    super::refuse_link(parent)?;
    let path = parent.join(name);
    let removed = match fs_err::symlink_metadata(&path) {
        Ok(meta) if meta.is_dir() => fs_err::remove_dir_all(&path),
        Ok(_) => fs_err::remove_file(&path),
        Err(e) => Err(e),
    };
    match removed {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Every file under `dir`, as relative paths with `/`, sorted.
pub fn list_files(dir: &Path) -> io::Result<Vec<String>> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) -> io::Result<()> {
        for entry in fs_err::read_dir(dir)? {
            let entry = entry?;
            let path = entry.path();
            let kind = entry.file_type()?;
            if kind.is_dir() {
                walk(base, &path, out)?;
            } else if kind.is_file() {
                out.push(path.strip_prefix(base).expect("inside base").to_string_lossy().replace('\\', "/"));
            } else {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{} is not a regular file or folder: a step's output holds no links or devices", path.display()),
                ));
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    walk(dir, dir, &mut files)?;
    files.sort();
    Ok(files)
}

/// Every file under `dir` (relative path with `/`) and its digest.
pub fn digest_tree(dir: &Path) -> io::Result<BTreeMap<String, String>> {
    list_files(dir)?.into_iter().map(|rel| Ok((rel.clone(), crate::hash::digest_file(&dir.join(&rel))?))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit(store: &Store, verifier: &Verifier, key: &str, files: &[(&str, &str)]) -> Entry {
        let pending = store.begin(key, &format!("net/{key}:trace")).unwrap();
        for (name, text) in files {
            let path = pending.out().join(name);
            fs_err::create_dir_all(path.parent().unwrap()).unwrap();
            fs_err::write(path, text).unwrap();
        }
        pending.commit(StepOutcome::default(), 0.5, None, verifier).unwrap()
    }

    #[test]
    fn only_a_committed_entry_is_a_hit() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let verifier = Verifier::new(dir.path());
        assert!(store.lookup("k1").is_none());

        let pending = store.begin("k1", "net/p:package").unwrap();
        fs_err::write(pending.out().join("model.md"), "# Module").unwrap();
        drop(pending); // the step failed
        assert!(store.lookup("k1").is_none());
        assert_eq!(fs_err::read_dir(dir.path().join("cache/v2/tmp")).unwrap().count(), 0);

        let entry = commit(&store, &verifier, "k1", &[("saved_model/saved_model.pb", "pb")]);
        let hit = store.lookup("k1").unwrap();
        assert_eq!(hit.digest, entry.digest);
        assert_eq!(hit.files.keys().collect::<Vec<_>>(), ["saved_model/saved_model.pb"]);
        assert_eq!(fs_err::read_to_string(hit.out().join("saved_model/saved_model.pb")).unwrap(), "pb");
    }

    #[test]
    fn identical_files_are_stored_once_and_read_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let verifier = Verifier::new(dir.path());
        let a = commit(&store, &verifier, "a", &[("golden/x.npy", "same bytes"), ("a.json", "a")]);
        let b = commit(&store, &verifier, "b", &[("golden/x.npy", "same bytes"), ("b.json", "b")]);
        let meta_a = fs_err::metadata(a.out().join("golden/x.npy")).unwrap();
        let meta_b = fs_err::metadata(b.out().join("golden/x.npy")).unwrap();
        assert_eq!(meta_a.ino(), meta_b.ino(), "one blob");
        assert_eq!(meta_a.nlink(), 3, "two entries and the blob itself");
        assert!(meta_a.permissions().readonly());
        assert_eq!(store.size().unwrap(), ("same bytes".len() + 2) as u64);
    }

    #[test]
    fn garbage_collection_removes_the_oldest_entries_first_and_keeps_what_is_needed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let verifier = Verifier::new(dir.path());
        let old = commit(&store, &verifier, "old", &[("f", &"o".repeat(100))]);
        let kept = commit(&store, &verifier, "kept", &[("f", &"k".repeat(100))]);
        let new = commit(&store, &verifier, "new", &[("f", &"n".repeat(100))]);
        let t = |s| filetime::FileTime::from_unix_time(s, 0);
        filetime::set_file_mtime(old.dir.join("entry.json"), t(1_000)).unwrap();
        filetime::set_file_mtime(kept.dir.join("entry.json"), t(500)).unwrap();
        filetime::set_file_mtime(new.dir.join("entry.json"), t(2_000)).unwrap();

        let keep: HashSet<String> = ["kept".to_string()].into();
        let collected = store.collect_garbage(250, &keep, &verifier).unwrap();
        assert_eq!(collected.evicted, vec![("net/old:trace".to_string(), "old".to_string())]);
        assert_eq!((collected.before, collected.after), (300, 200));
        assert!(store.peek("old").is_none());
        assert!(store.peek("kept").is_some(), "needed by this build, though the oldest");
        assert!(store.peek("new").is_some(), "the cache fits again after the oldest went");
        let collected = store.collect_garbage(150, &keep, &verifier).unwrap();
        assert_eq!(collected.evicted, vec![("net/new:trace".to_string(), "new".to_string())]);
        assert_eq!(collected.after, 100, "over the limit still: what is needed stays");
    }

    #[test]
    fn a_link_in_place_of_a_store_folder_is_refused_and_never_followed() {
        for place in ["cache", "cache/v2", "cache/v2/entries", "cache/v2/blobs", "cache/v2/tmp"] {
            let dir = tempfile::tempdir().unwrap();
            let outside = tempfile::tempdir().unwrap();
            fs_err::create_dir(outside.path().join("sub")).unwrap();
            let link = dir.path().join(place);
            fs_err::create_dir_all(link.parent().unwrap()).unwrap();
            std::os::unix::fs::symlink(outside.path(), &link).unwrap();
            let error = Store::open(dir.path()).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{place}");
            assert!(error.to_string().starts_with(&format!("{} is a symbolic link;", link.display())), "{place}: {error}");
            assert!(outside.path().join("sub").is_dir(), "{place}");
        }
    }

    #[test]
    fn a_store_folder_replaced_by_a_link_after_opening_is_not_deleted_through() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let verifier = Verifier::new(dir.path());
        commit(&store, &verifier, "a", &[("f", "bytes")]);
        let outside = tempfile::tempdir().unwrap();
        fs_err::create_dir(outside.path().join("sub")).unwrap();
        fs_err::write(outside.path().join("orphan"), "no link to me").unwrap();
        for place in ["tmp", "blobs"] {
            let path = dir.path().join("cache/v2").join(place);
            fs_err::rename(&path, dir.path().join(format!("{place}-aside"))).unwrap();
            std::os::unix::fs::symlink(outside.path(), &path).unwrap();
        }
        assert!(store.clean_tmp().is_err());
        assert!(store.collect_garbage(0, &HashSet::new(), &verifier).is_err());
        assert!(outside.path().join("sub").is_dir());
        assert!(outside.path().join("orphan").is_file());
    }

    #[test]
    fn an_entry_json_naming_files_outside_the_cache_is_no_entry() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let verifier = Verifier::new(dir.path());
        let good = commit(&store, &verifier, "k", &[("f", "bytes")]);
        let digest = good.files["f"].clone();
        for files in [
            BTreeMap::from([("f".to_string(), format!("../../../{digest}"))]),
            BTreeMap::from([("f".to_string(), "/etc/hostname".to_string())]),
            BTreeMap::from([("../f".to_string(), digest.clone())]),
            BTreeMap::from([("/etc/hostname".to_string(), digest.clone())]),
            BTreeMap::from([(String::new(), digest.clone())]),
        ] {
            let entry = Entry { files: files.clone(), dir: PathBuf::new(), ..good.clone() };
            fs_err::write(good.dir.join("entry.json"), serde_json::to_vec(&entry).unwrap()).unwrap();
            assert!(store.peek("k").is_none(), "{files:?}");
        }
    }

    #[test]
    fn a_blob_still_linked_elsewhere_survives_its_entry() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let verifier = Verifier::new(dir.path());
        let entry = commit(&store, &verifier, "a", &[("model.tar.gz", "archive")]);
        let shipped = dir.path().join("dist-model.tar.gz");
        fs_err::hard_link(entry.out().join("model.tar.gz"), &shipped).unwrap();
        store.collect_garbage(0, &HashSet::new(), &verifier).unwrap();
        assert!(store.peek("a").is_none());
        assert_eq!(fs_err::read_to_string(&shipped).unwrap(), "archive");
        fs_err::remove_file(&shipped).unwrap();
        let collected = store.collect_garbage(0, &HashSet::new(), &verifier).unwrap();
        assert_eq!(collected.blobs_removed, 1);
        assert_eq!(store.size().unwrap(), 0);
    }

    #[test]
    fn a_missing_cache_folder_is_created_with_its_own() {
        let dir = tempfile::tempdir().unwrap();
        Store::open(&dir.path().join("new/.exportctl")).unwrap();
        assert!(dir.path().join("new/.exportctl/cache").join(FORMAT_DIR).join("entries").is_dir());
    }
}
