//! Unpacking a packaged SavedModel (`model.tar.gz`) so it can be inspected or validated.
//!
//! The rules are TF Hub's (`tensorflow_hub`'s `file_utils.py` refuses the same members): only
//! regular files and directories; no symlinks or hard links, devices or FIFOs; no absolute
//! paths and no `..` — nothing may land outside the extraction directory. `tar`'s own
//! `unpack_in` would follow symlinks the archive itself created, so members are written here
//! one by one. File modes and mtimes are not restored: the files are only read.

use std::fmt;
use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::saved_model_pb::SAVED_MODEL_PB;

/// A SavedModel unpacked into a fresh directory, removed when this is dropped.
#[derive(Debug)]
pub struct ExtractedArchive {
    dir: PathBuf,
}

impl ExtractedArchive {
    /// The directory holding the archive's contents.
    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for ExtractedArchive {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Unpacks the `.tar.gz` at `archive` into a new directory inside `scratch_dir` and checks
/// that it holds a SavedModel at its root.
pub fn extract_archive(archive: &Path, scratch_dir: &Path) -> Result<ExtractedArchive, ArchiveError> {
    let file = std::fs::File::open(archive)
        .map_err(|e| ArchiveError::Open { archive: archive.to_owned(), error: e.to_string() })?;
    let extracted = fresh_dir(scratch_dir)?;
    unpack(std::io::BufReader::new(file), extracted.path()).map_err(|e| e.in_archive(archive))?;
    if !extracted.path().join(SAVED_MODEL_PB).is_file() {
        let mut top: Vec<String> = std::fs::read_dir(extracted.path())
            .map(|entries| {
                entries.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect()
            })
            .unwrap_or_default();
        top.sort();
        return Err(ArchiveError::NoSavedModelAtRoot { archive: archive.to_owned(), top_level: top });
    }
    Ok(extracted)
}

fn fresh_dir(scratch_dir: &Path) -> Result<ExtractedArchive, ArchiveError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let write_error =
        |path: &Path, e: std::io::Error| ArchiveError::Write { path: path.to_owned(), error: e.to_string() };
    std::fs::create_dir_all(scratch_dir).map_err(|e| write_error(scratch_dir, e))?;
    loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = scratch_dir.join(format!("archive-{}-{n}", std::process::id()));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(ExtractedArchive { dir }),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(write_error(&dir, e)),
        }
    }
}

/// Writes the members of the gzipped tar `reader` under `dest`.
fn unpack(reader: impl Read, dest: &Path) -> Result<(), ArchiveError> {
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(reader));
    let read_error = |e: std::io::Error| ArchiveError::Read { archive: PathBuf::new(), error: e.to_string() };
    for entry in tar.entries().map_err(read_error)? {
        let mut entry = entry.map_err(read_error)?;
        let member = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let unsafe_member =
            |why: &'static str| ArchiveError::Unsafe { archive: PathBuf::new(), member: member.clone(), why };
        let kind = entry.header().entry_type();
        let is_dir = match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous => false,
            tar::EntryType::Directory => true,
            tar::EntryType::XGlobalHeader => continue, // metadata for the whole archive
            tar::EntryType::Symlink => return Err(unsafe_member("is a symbolic link")),
            tar::EntryType::Link => return Err(unsafe_member("is a hard link")),
            _ => return Err(unsafe_member("is not a regular file or directory")),
        };
        let relative = safe_relative_path(&entry.path().map_err(read_error)?).map_err(unsafe_member)?;
        let target = dest.join(&relative);
        let write_error = |e: std::io::Error| ArchiveError::Write { path: target.clone(), error: e.to_string() };
        if is_dir {
            std::fs::create_dir_all(&target).map_err(write_error)?;
            continue;
        }
        if relative.as_os_str().is_empty() {
            return Err(unsafe_member("has an empty file name"));
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(write_error)?;
        }
        let mut out = std::fs::File::create(&target).map_err(write_error)?;
        std::io::copy(&mut entry, &mut out).map_err(read_error)?;
    }
    Ok(())
}

/// The member's path with `.` components dropped, if it stays inside the archive root.
fn safe_relative_path(path: &Path) -> Result<PathBuf, &'static str> {
    let mut relative = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => relative.push(part),
            Component::CurDir => {}
            Component::ParentDir => return Err("leaves the archive root (`..`)"),
            Component::RootDir | Component::Prefix(_) => return Err("has an absolute path"),
        }
    }
    Ok(relative)
}

/// Why an archive could not be unpacked.
#[derive(Debug, Clone, PartialEq)]
pub enum ArchiveError {
    Open {
        archive: PathBuf,
        error: String,
    },
    /// Not a gzipped tar, or damaged.
    Read {
        archive: PathBuf,
        error: String,
    },
    /// A member TF Hub would refuse.
    Unsafe {
        archive: PathBuf,
        member: String,
        why: &'static str,
    },
    Write {
        path: PathBuf,
        error: String,
    },
    NoSavedModelAtRoot {
        archive: PathBuf,
        top_level: Vec<String>,
    },
}

impl ArchiveError {
    fn in_archive(self, path: &Path) -> ArchiveError {
        match self {
            ArchiveError::Read { error, .. } => ArchiveError::Read { archive: path.to_owned(), error },
            ArchiveError::Unsafe { member, why, .. } => ArchiveError::Unsafe { archive: path.to_owned(), member, why },
            other => other,
        }
    }

    pub fn help(&self) -> Option<String> {
        match self {
            ArchiveError::Read { .. } => Some("the file should be a .tar.gz as `exportctl build` writes it".to_owned()),
            ArchiveError::Unsafe { .. } => Some(
                "package archives may hold only regular files and directories with relative paths \
                 (TF Hub refuses anything else); rebuild it with `exportctl build`"
                    .to_owned(),
            ),
            ArchiveError::NoSavedModelAtRoot { top_level, .. } if top_level.len() == 1 => Some(format!(
                "the SavedModel must be at the archive root, not inside `{}/`: create it with `tar -czf model.tar.gz -C {} .`",
                top_level[0], top_level[0]
            )),
            ArchiveError::NoSavedModelAtRoot { .. } => {
                Some("the SavedModel files (saved_model.pb, variables/) must be at the archive root".to_owned())
            }
            ArchiveError::Open { .. } | ArchiveError::Write { .. } => None,
        }
    }
}

impl fmt::Display for ArchiveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArchiveError::Open { archive, error } => write!(f, "cannot open {}: {error}", archive.display()),
            ArchiveError::Read { archive, error } => {
                write!(f, "{} is not a readable .tar.gz: {error}", archive.display())
            }
            ArchiveError::Unsafe { archive, member, why } => {
                write!(f, "{} is refused: its member `{member}` {why}", archive.display())
            }
            ArchiveError::Write { path, error } => write!(f, "cannot write {}: {error}", path.display()),
            ArchiveError::NoSavedModelAtRoot { archive, top_level } => write!(
                f,
                "{} holds no {SAVED_MODEL_PB} at its root (it holds: {})",
                archive.display(),
                if top_level.is_empty() { "nothing".to_owned() } else { top_level.join(", ") }
            ),
        }
    }
}

impl std::error::Error for ArchiveError {}

#[cfg(test)]
mod tests {
    use super::*;

    /// A gzipped tar built member by member, including members `tar::Builder` would refuse.
    struct TarGz(tar::Builder<Vec<u8>>);

    impl TarGz {
        fn new() -> TarGz {
            TarGz(tar::Builder::new(Vec::new()))
        }

        fn header(path: &str, kind: tar::EntryType, size: u64) -> tar::Header {
            let mut header = tar::Header::new_gnu();
            // Written raw: `set_path` refuses `..` and absolute paths, which is what we test.
            let name = &mut header.as_old_mut().name;
            name[..path.len()].copy_from_slice(path.as_bytes());
            header.set_entry_type(kind);
            header.set_size(size);
            header.set_mode(0o644);
            header.set_cksum();
            header
        }

        fn file(mut self, path: &str, contents: &[u8]) -> TarGz {
            let header = Self::header(path, tar::EntryType::Regular, contents.len() as u64);
            self.0.append(&header, contents).unwrap();
            self
        }

        fn dir(mut self, path: &str) -> TarGz {
            let header = Self::header(path, tar::EntryType::Directory, 0);
            self.0.append(&header, &[][..]).unwrap();
            self
        }

        fn symlink(mut self, path: &str, target: &str) -> TarGz {
            let mut header = Self::header(path, tar::EntryType::Symlink, 0);
            header.set_link_name(target).unwrap();
            header.set_cksum();
            self.0.append(&header, &[][..]).unwrap();
            self
        }

        fn write(self, path: &Path) {
            let tar = self.0.into_inner().unwrap();
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            std::io::Write::write_all(&mut gz, &tar).unwrap();
            std::fs::write(path, gz.finish().unwrap()).unwrap();
        }
    }

    fn scratch() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    #[test]
    fn unpacks_a_saved_model_and_cleans_up() {
        let dir = scratch();
        let archive = dir.path().join("model.tar.gz");
        TarGz::new()
            .file("./saved_model.pb", b"pb")
            .dir("./variables/")
            .file("./variables/variables.index", b"index")
            .file("assets/vocab.txt", b"a\nb\n")
            .write(&archive);
        let extracted = extract_archive(&archive, &dir.path().join("scratch")).unwrap();
        let root = extracted.path().to_owned();
        assert_eq!(std::fs::read(root.join("saved_model.pb")).unwrap(), b"pb");
        assert_eq!(std::fs::read(root.join("variables/variables.index")).unwrap(), b"index");
        assert_eq!(std::fs::read(root.join("assets/vocab.txt")).unwrap(), b"a\nb\n");
        drop(extracted);
        assert!(!root.exists(), "removed on drop");
    }

    fn refused(archive: TarGz) -> ArchiveError {
        let dir = scratch();
        let path = dir.path().join("bad.tar.gz");
        archive.write(&path);
        let err = extract_archive(&path, &dir.path().join("scratch")).unwrap_err();
        assert!(!dir.path().join("escaped").exists(), "nothing written outside");
        err
    }

    #[test]
    fn refuses_symlinks() {
        let err = refused(TarGz::new().symlink("variables", "/etc").file("saved_model.pb", b""));
        assert!(matches!(err, ArchiveError::Unsafe { why: "is a symbolic link", .. }), "{err}");
        assert!(err.to_string().ends_with("its member `variables` is a symbolic link"), "{err}");
    }

    #[test]
    fn refuses_parent_directory_members() {
        let err = refused(TarGz::new().file("../escaped", b"x"));
        assert!(matches!(err, ArchiveError::Unsafe { why: "leaves the archive root (`..`)", .. }), "{err}");
        let err = refused(TarGz::new().file("variables/../../escaped", b"x"));
        assert!(matches!(err, ArchiveError::Unsafe { .. }), "{err}");
    }

    #[test]
    fn refuses_absolute_members() {
        let err = refused(TarGz::new().file("/tmp/escaped", b"x"));
        assert!(matches!(err, ArchiveError::Unsafe { why: "has an absolute path", .. }), "{err}");
    }

    #[test]
    fn refuses_hard_links_and_devices() {
        let mut tar = TarGz::new();
        let header = TarGz::header("fifo", tar::EntryType::Fifo, 0);
        tar.0.append(&header, &[][..]).unwrap();
        assert!(matches!(refused(tar), ArchiveError::Unsafe { why: "is not a regular file or directory", .. }));
        let mut tar = TarGz::new();
        let mut header = TarGz::header("hard", tar::EntryType::Link, 0);
        header.set_link_name("saved_model.pb").unwrap();
        header.set_cksum();
        tar.0.append(&header, &[][..]).unwrap();
        assert!(matches!(refused(tar), ArchiveError::Unsafe { why: "is a hard link", .. }));
    }

    #[test]
    fn a_nested_saved_model_is_explained() {
        let err = refused(TarGz::new().file("my_model/saved_model.pb", b""));
        assert_eq!(
            err,
            ArchiveError::NoSavedModelAtRoot { archive: err_archive(&err), top_level: vec!["my_model".into()] }
        );
        assert!(err.help().unwrap().contains("tar -czf model.tar.gz -C my_model ."));
    }

    fn err_archive(err: &ArchiveError) -> PathBuf {
        match err {
            ArchiveError::NoSavedModelAtRoot { archive, .. } => archive.clone(),
            _ => unreachable!(),
        }
    }

    #[test]
    fn not_a_gzip_is_a_read_error() {
        let dir = scratch();
        let path = dir.path().join("model.tar.gz");
        std::fs::write(&path, b"plain text").unwrap();
        let err = extract_archive(&path, dir.path()).unwrap_err();
        assert!(matches!(err, ArchiveError::Read { .. }), "{err}");
        assert!(err.to_string().starts_with(&format!("{} is not a readable .tar.gz", path.display())));
    }
}
