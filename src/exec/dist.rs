//! `dist/` materialised from the cache.
//!
//! For every piece whose `package` step succeeded, `dist/<model>/<piece>/<version>/` gets the
//! package step's outputs (`model.tar.gz`, `model.md`, `build.json`) and the trace step's
//! `saved_model/`; its `kaggle/` folder is what `kaggle models instances create -p` uploads: the
//! SavedModel's files again beside `model-instance-metadata.json`. The model's
//! `model-metadata.json` (the same in every package of the model) goes to
//! `dist/<model>/model-metadata.json`, where `kaggle models create -p dist/<model>` reads it: a
//! file, so that no piece name can clash with it. Files are **hard links** to the cache's
//! read-only blobs, not copies: a BERT-sized package costs its bytes once on disk, however
//! many times it is linked, and linking takes no time. (A `dist/` on another filesystem than
//! `.exportctl/` gets copies, checked while copying.)
//!
//! **Checked before shipping.** Each file's bytes are checked against the digest its cache
//! entry records before it is linked (`cache::verify`: a `stat` when nothing changed); an
//! entry whose bytes changed is evicted and reported, and the build runs its step again.
//!
//! **Never through a link.** The output directory and every folder on the way to it must be
//! real folders (the manifest check refuses a symlinked `out-dir`; here it is checked again at
//! write time). Below it, exportctl owns the tree: a symbolic link where a model or piece
//! folder belongs is removed — the link itself, never what it points to — and replaced.
//!
//! A piece folder is assembled beside its destination and renamed into place, so it is never
//! seen half-written; a piece whose package did not build keeps what it had.
//! `.exportctl/dist.json` remembers what each folder was made from and the [`Stamp`] of each
//! of its files (inode, size, mtime, ctime), so a no-op build only stats them, and an edit —
//! even one that keeps the size and restores the mtime — is repaired.

use std::collections::BTreeMap;
use std::io;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::scheduler::BuildSummary;
use crate::cache::{Corruption, Entry, Stamp, Store, Verifier};
use crate::plan::{StepId, StepKind};

#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
struct Made {
    package: String,
    trace: String,
    /// Relative path → stamp.
    files: BTreeMap<String, Stamp>,
}

/// What [`materialize`] did.
#[derive(Debug, Default)]
pub struct Materialized {
    /// The piece folders written.
    pub written: Vec<PathBuf>,
    /// Cache entries whose bytes changed on disk: evicted, their pieces not written.
    pub corrupted: Vec<(StepId, Corruption)>,
}

/// Links the built packages of `summary` into `out_dir` (relative to `root`).
pub fn materialize(
    cache_dir: &Path,
    root: &Path,
    out_dir: &Path,
    version: u32,
    summary: &BuildSummary,
    store: &Store,
    verifier: &Verifier,
) -> io::Result<Materialized> {
    let state_file = cache_dir.join("dist.json");
    let mut state: BTreeMap<String, Made> =
        fs_err::read(&state_file).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
    let by_id: std::collections::HashMap<&StepId, &super::StepResult> = summary.results.iter().map(|r| (&r.id, r)).collect();
    let mut done = Materialized::default();
    let mut changed = false;
    let mut out_ready = false;
    for result in summary.results.iter().filter(|r| r.id.kind == StepKind::Package && r.succeeded()) {
        let (Some(package), Some(piece)) = (&result.entry, &result.id.piece) else { continue };
        let trace_id = StepId { kind: StepKind::Trace, ..result.id.clone() };
        let Some(trace) = by_id.get(&trace_id).and_then(|r| r.entry.as_ref()) else { continue };
        let rel = format!("{}/{piece}/{version}", result.id.model);
        if !out_ready {
            real_dirs(root, out_dir, None)?;
            out_ready = true;
        }
        let dest = real_dirs(root, &out_dir.join(&rel), Some(out_dir))?;
        remove_leftovers(dest.parent().expect("dist paths have parents"))?;
        if let Some(made) = state.get(&rel) {
            if made.package == package.digest && made.trace == trace.digest && stamps(&dest).ok().as_ref() == Some(&made.files) {
                continue;
            }
        }
        let files = shipped_files(package, trace);
        if let Some((entry, id, corruption)) = files.iter().find_map(|(_, source, digest, entry)| {
            let id = if entry.key == package.key { &result.id } else { &trace_id };
            verifier.check(source, digest).err().map(|problem| {
                let file = source.strip_prefix(entry.out()).map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
                (*entry, id, Corruption { key: entry.key.clone(), file, problem })
            })
        }) {
            store.evict_corrupt(entry, &corruption.file, verifier)?;
            state.remove(&rel);
            changed = true;
            done.corrupted.push((id.clone(), corruption));
            continue;
        }
        let parent = dest.parent().expect("dist paths have parents");
        let tmp = crate::atomic::TempDir::new_in(parent)?;
        for (relative, source, digest, _) in &files {
            let target = tmp.path().join(relative);
            if let Some(dir) = target.parent() {
                fs_err::create_dir_all(dir)?;
            }
            link_or_copy(source, &target, digest)?;
            // The new link changed the blob's ctime; it was checked just now.
            verifier.record(source, digest)?;
        }
        remove_any(&dest)?;
        tmp.commit(&dest)?;
        state.insert(rel, Made { package: package.digest.clone(), trace: trace.digest.clone(), files: stamps(&dest)? });
        changed = true;
        done.written.push(dest);
    }
    // The models' metadata: from the first package of each model that has it.
    let mut models = std::collections::BTreeSet::new();
    for result in summary.results.iter().filter(|r| r.id.kind == StepKind::Package && r.succeeded()) {
        let Some(package) = &result.entry else { continue };
        let Some(digest) = package.files.get(crate::steps::files::KAGGLE_MODEL) else { continue };
        if !models.insert(result.id.model.clone()) {
            continue;
        }
        let rel = model_metadata_path(&result.id.model);
        let dest = root.join(out_dir).join(&rel);
        if let Some(made) = state.get(&rel) {
            let stamp = fs_err::symlink_metadata(&dest).ok().map(|m| Stamp::of_metadata(&m));
            if made.package == *digest && stamp.as_ref() == made.files.get("") {
                continue;
            }
        }
        let source = package.out().join(crate::steps::files::KAGGLE_MODEL);
        if let Err(problem) = verifier.check(&source, digest) {
            let corruption = Corruption { key: package.key.clone(), file: crate::steps::files::KAGGLE_MODEL.to_string(), problem };
            store.evict_corrupt(package, &corruption.file, verifier)?;
            state.remove(&rel);
            changed = true;
            done.corrupted.push((result.id.clone(), corruption));
            continue;
        }
        if !out_ready {
            real_dirs(root, out_dir, None)?;
            out_ready = true;
        }
        let folder = real_dirs(root, &out_dir.join(&result.id.model), Some(out_dir))?;
        // Linked beside its destination, then renamed over it: never seen half-written.
        remove_leftovers(&folder)?;
        let tmp = crate::atomic::TempDir::new_in(&folder)?;
        let staged = tmp.path().join(crate::kaggle::MODEL_METADATA);
        link_or_copy(&source, &staged, digest)?;
        verifier.record(&source, digest)?;
        remove_any(&dest)?;
        fs_err::rename(&staged, &dest)?;
        let stamp = Stamp::of_metadata(&fs_err::symlink_metadata(&dest)?);
        state.insert(rel, Made { package: digest.clone(), trace: String::new(), files: BTreeMap::from([(String::new(), stamp)]) });
        changed = true;
        done.written.push(dest);
    }
    if changed {
        crate::atomic::write_file(&state_file, &serde_json::to_vec_pretty(&state).expect("state serialises"))?;
    }
    Ok(done)
}

/// `<model>/model-metadata.json`, relative to the output directory.
fn model_metadata_path(model: &str) -> String {
    format!("{model}/{}", crate::kaggle::MODEL_METADATA)
}

/// Removes the piece folders exportctl wrote into `out_dir` (those `dist.json` records, with
/// the models' `model-metadata.json`), then the folders left empty up to and including
/// `out_dir`. Anything else in `out_dir` stays. Returns the piece folders removed.
pub fn clean(cache_dir: &Path, root: &Path, out_dir: &Path) -> io::Result<Vec<PathBuf>> {
    let state_file = cache_dir.join("dist.json");
    let state: BTreeMap<String, Made> = fs_err::read(&state_file).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
    let full = root.join(out_dir);
    let mut removed = Vec::new();
    if fs_err::symlink_metadata(&full).is_ok() {
        real_dirs_exist(root, out_dir)?;
        for rel in state.keys() {
            let folder = full.join(rel);
            // Folders on the way may have been replaced by links since: never follow them.
            if has_link_between(&full, &folder) || fs_err::symlink_metadata(&folder).is_err() {
                continue;
            }
            // The models' `model-metadata.json` files go too, but are not package folders.
            let is_folder = fs_err::symlink_metadata(&folder).is_ok_and(|m| m.is_dir());
            remove_any(&folder)?;
            if is_folder {
                removed.push(folder.clone());
            }
            let mut parent = folder.parent().map(Path::to_path_buf);
            while let Some(dir) = parent {
                if !dir.starts_with(&full) || fs_err::remove_dir(&dir).is_err() {
                    break;
                }
                parent = dir.parent().map(Path::to_path_buf);
            }
        }
    }
    match fs_err::remove_file(&state_file) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    Ok(removed)
}

/// Whether a folder between `base` (excluded) and `path` is a symbolic link.
fn has_link_between(base: &Path, path: &Path) -> bool {
    let Ok(rest) = path.strip_prefix(base) else { return true };
    let mut current = base.to_path_buf();
    for component in rest.components() {
        current.push(component);
        if fs_err::symlink_metadata(&current).map(|m| m.file_type().is_symlink()).unwrap_or(false) {
            return true;
        }
    }
    false
}

/// An error unless every folder from `root` to `root/relative` is a real folder.
fn real_dirs_exist(root: &Path, relative: &Path) -> io::Result<()> {
    let mut path = root.to_path_buf();
    for component in relative.components().filter(|c| matches!(c, Component::Normal(_))) {
        path.push(component);
        let meta = fs_err::symlink_metadata(&path)?;
        if meta.file_type().is_symlink() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is a symbolic link; exportctl never deletes through a link: remove the link yourself", path.display()),
            ));
        }
    }
    Ok(())
}

/// (path inside the piece folder, source file in the cache, digest, entry) of what ships.
/// The model's metadata is not in the piece's folder (see [`materialize`]); the SavedModel is
/// in it twice, as `saved_model/` and in `kaggle/`, the folder the `kaggle` tool uploads.
fn shipped_files<'e>(package: &'e Entry, trace: &'e Entry) -> Vec<(String, PathBuf, &'e String, &'e Entry)> {
    let saved_model = format!("{}/", crate::steps::files::SAVED_MODEL);
    let mut files: Vec<_> = package
        .files
        .iter()
        .filter(|(rel, _)| rel.as_str() != crate::steps::files::KAGGLE_MODEL)
        .map(|(rel, digest)| (rel.clone(), package.out().join(rel), digest, package))
        .collect();
    let has_kaggle = package.files.contains_key(crate::steps::files::KAGGLE_VARIATION);
    for (rel, digest) in trace.files.iter().filter(|(rel, _)| rel.starts_with(&saved_model)) {
        files.push((rel.clone(), trace.out().join(rel), digest, trace));
        if has_kaggle {
            let inside = &rel[saved_model.len()..];
            files.push((format!("{}/{inside}", crate::kaggle::FOLDER), trace.out().join(rel), digest, trace));
        }
    }
    files
}

/// `--locked`: hashes every file that ships for the pieces of `summary` and names those
/// whose bytes are not the ones their cache entry records.
pub fn check_shipped(root: &Path, out_dir: &Path, version: u32, summary: &BuildSummary) -> Vec<String> {
    let by_id: std::collections::HashMap<&StepId, &super::StepResult> = summary.results.iter().map(|r| (&r.id, r)).collect();
    let mut problems = Vec::new();
    for result in summary.results.iter().filter(|r| r.id.kind == StepKind::Package && r.succeeded()) {
        let (Some(package), Some(piece)) = (&result.entry, &result.id.piece) else { continue };
        let trace_id = StepId { kind: StepKind::Trace, ..result.id.clone() };
        let Some(trace) = by_id.get(&trace_id).and_then(|r| r.entry.as_ref()) else { continue };
        let dest = root.join(out_dir).join(format!("{}/{piece}/{version}", result.id.model));
        let mut shipped: Vec<(PathBuf, &String)> =
            shipped_files(package, trace).into_iter().map(|(relative, _, digest, _)| (dest.join(relative), digest)).collect();
        if let Some(digest) = package.files.get(crate::steps::files::KAGGLE_MODEL) {
            shipped.push((root.join(out_dir).join(model_metadata_path(&result.id.model)), digest));
        }
        for (path, digest) in shipped {
            match crate::hash::digest_file(&path) {
                Ok(actual) if &actual == digest => {}
                Ok(_) => problems.push(format!("{}: its bytes are not the ones built", path.display())),
                Err(e) => problems.push(format!("{}: {e}", path.display())),
            }
        }
    }
    problems
}

/// A hard link to `source` at `target`, or a copy (checked against `digest` as it is made)
/// when the two are on different filesystems.
fn link_or_copy(source: &Path, target: &Path, digest: &str) -> io::Result<()> {
    match fs_err::hard_link(source, target) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) || e.kind() == io::ErrorKind::PermissionDenied => {
            let mut reader = std::fs::File::open(source)?;
            let mut writer = std::fs::File::create(target)?;
            let mut hasher = blake3::Hasher::new();
            let mut buffer = vec![0u8; 1 << 20];
            loop {
                let n = io::Read::read(&mut reader, &mut buffer)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buffer[..n]);
                io::Write::write_all(&mut writer, &buffer[..n])?;
            }
            if hasher.finalize().to_hex().as_str() != digest {
                return Err(io::Error::new(io::ErrorKind::InvalidData, format!("{} changed while it was copied", source.display())));
            }
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Makes `root/relative` and every folder on the way a real folder, creating what is missing.
/// A symbolic link on the way is an error, except below `owned` (the output directory),
/// where exportctl owns the tree: there the link itself is removed and a folder made instead.
/// Returns the full path.
pub fn real_dirs(root: &Path, relative: &Path, owned: Option<&Path>) -> io::Result<PathBuf> {
    let mut path = root.to_path_buf();
    let normal = |p: &Path| p.components().filter(|c| matches!(c, Component::Normal(_))).count();
    let components: Vec<_> = relative.components().filter(|c| matches!(c, Component::Normal(_))).collect();
    let owned_from = owned.map_or(usize::MAX, normal);
    for (i, component) in components.iter().enumerate() {
        path.push(component);
        match fs_err::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_symlink() => {
                if i < owned_from {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!(
                            "{} is a symbolic link; exportctl never writes or deletes through a link: make it a real folder",
                            path.display()
                        ),
                    ));
                }
                fs_err::remove_file(&path)?;
                fs_err::create_dir(&path)?;
            }
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                if i < owned_from {
                    return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{} is a file, not a folder", path.display())));
                }
                fs_err::remove_file(&path)?;
                fs_err::create_dir(&path)?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => fs_err::create_dir(&path)?,
            Err(e) => return Err(e),
        }
    }
    Ok(path)
}

/// Removes whatever is at `path` — a folder (never following links inside it), a file, or a
/// link (the link, not its target).
pub fn remove_any(path: &Path) -> io::Result<()> {
    match fs_err::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs_err::remove_dir_all(path),
        Ok(_) => fs_err::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn stamps(dir: &Path) -> io::Result<BTreeMap<String, Stamp>> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, Stamp>) -> io::Result<()> {
        for entry in fs_err::read_dir(dir)? {
            let entry = entry?;
            let meta = fs_err::symlink_metadata(entry.path())?;
            if meta.is_dir() {
                walk(base, &entry.path(), out)?;
            } else {
                let rel = entry.path().strip_prefix(base).expect("inside").to_string_lossy().into_owned();
                out.insert(rel, Stamp::of_metadata(&meta));
            }
        }
        Ok(())
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out)?;
    Ok(out)
}

/// Removes the `.tmp-*` folders a killed build left in `dir` (dist/ is written under the
/// project lock: no other build can be writing one now).
fn remove_leftovers(dir: &Path) -> io::Result<()> {
    let Ok(entries) = fs_err::read_dir(dir) else { return Ok(()) };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(".tmp-") {
            remove_any(&entry.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_below_the_output_directory_is_replaced_never_followed() {
        let project = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        fs_err::create_dir_all(outside.path().join("classifier/1")).unwrap();
        fs_err::write(outside.path().join("classifier/1/precious.txt"), "keep me").unwrap();
        fs_err::create_dir(project.path().join("dist")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("classifier"), project.path().join("dist/classifier")).unwrap();

        let dest = real_dirs(project.path(), Path::new("dist/classifier/encoder/1"), Some(Path::new("dist"))).unwrap();
        remove_any(&dest).unwrap();
        assert!(!project.path().join("dist/classifier").is_symlink());
        assert_eq!(fs_err::read_to_string(outside.path().join("classifier/1/precious.txt")).unwrap(), "keep me");
    }

    #[test]
    fn a_linked_output_directory_is_refused() {
        let project = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), project.path().join("dist")).unwrap();
        let error = real_dirs(project.path(), Path::new("dist"), None).unwrap_err();
        assert!(error.to_string().contains("is a symbolic link"), "{error}");
    }
}
