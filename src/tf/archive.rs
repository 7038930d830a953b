//! Unpacking a packaged SavedModel (`model.tar.gz`) so it can be inspected or validated.
//!
//! The rules are TF Hub's (`tensorflow_hub`'s `file_utils.py` refuses the same members): only
//! regular files and directories; no symlinks or hard links, devices or FIFOs; no absolute
//! paths and no `..` — nothing may land outside the extraction directory. `tar`'s own
//! `unpack_in` would follow symlinks the archive itself created, so members are written here
//! one by one. File modes and mtimes are not restored: the files are only read.
//!
//! **One reading for everyone.** What is validated must be what a consumer extracts. `tar -xzf`
//! reads every gzip member and goes on after what looks like the end of a tar; a reader that
//! stopped at the first of either would validate one thing and ship another. So the archive
//! must be exactly one gzip member holding exactly one tar: anything after the gzip stream (a
//! second member), or anything but zero padding after the tar's end, is refused.
//!
//! **Bounded.** Extraction stops with an error past [`Limits`]: the total size, the number of
//! members, and the ratio of the unpacked size to the archive's (a gzip bomb unpacks 1,000
//! times its size; model weights barely compress). The defaults fit any real package.
//!
//! **Scratch space is per process** (`<scratch>/<pid>/`, held by a lock while the process
//! lives) and removed on every exit path: on drop, and — after a kill — by the next process
//! that finds the lock free (`crate::scratch`). Errors name the archive's members, never a
//! scratch path.

use std::io::{BufRead, Read};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::saved_model_pb::SAVED_MODEL_PB;
use crate::scratch::ScratchError;

/// How much an archive may unpack to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of all members together.
    pub max_bytes: u64,
    pub max_members: u64,
    /// Unpacked bytes per archive byte.
    pub max_ratio: u64,
}

impl Default for Limits {
    fn default() -> Self {
        // A BERT-large package unpacks to about 1.3 GB at a ratio near 1.1; a SavedModel has
        // a few dozen files. These leave a wide margin and still stop a bomb early.
        Limits { max_bytes: 64 << 30, max_members: 10_000, max_ratio: 200 }
    }
}

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

/// Unpacks the `.tar.gz` at `archive` into a new directory inside `scratch_dir` (under this
/// process's own folder) and checks that it holds a SavedModel at its root.
pub fn extract_archive(archive: &Path, scratch_dir: &Path) -> Result<ExtractedArchive, ArchiveError> {
    extract_archive_with(archive, scratch_dir, Limits::default())
}

/// [`extract_archive`] with other limits.
pub fn extract_archive_with(archive: &Path, scratch_dir: &Path, limits: Limits) -> Result<ExtractedArchive, ArchiveError> {
    let file = std::fs::File::open(archive).map_err(|source| ArchiveError::Open { archive: archive.to_owned(), source })?;
    let compressed = file.metadata().map(|m| m.len()).unwrap_or(0);
    crate::scratch::clean_stale(scratch_dir);
    let extracted = fresh_dir(scratch_dir)?;
    let budget = limits.max_bytes.min(compressed.max(1).saturating_mul(limits.max_ratio).max(1 << 20));
    unpack(std::io::BufReader::new(file), extracted.path(), limits, budget).map_err(|e| e.in_archive(archive))?;
    let root = extracted.path().join(SAVED_MODEL_PB);
    if root.is_dir() {
        return Err(ArchiveError::SavedModelPbIsADirectory { archive: archive.to_owned() });
    }
    if !root.is_file() {
        let mut top: Vec<String> = std::fs::read_dir(extracted.path())
            .map(|entries| entries.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        top.sort();
        return Err(ArchiveError::NoSavedModelAtRoot { archive: archive.to_owned(), top_level: top });
    }
    Ok(extracted)
}

fn fresh_dir(scratch_dir: &Path) -> Result<ExtractedArchive, ArchiveError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let parent = crate::scratch::process_dir(scratch_dir).map_err(ArchiveError::Scratch)?;
    loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = parent.join(format!("archive-{n}"));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(ExtractedArchive { dir }),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(source) => return Err(ArchiveError::Scratch(ScratchError { path: dir, source })),
        }
    }
}

/// Counts what passes through, for the limits.
struct Counted<R> {
    inner: R,
    read: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        Ok(n)
    }
}

/// Writes the members of the gzipped tar `reader` under `dest`.
fn unpack<R: BufRead>(reader: R, dest: &Path, limits: Limits, budget: u64) -> Result<(), ArchiveError> {
    let read_error = |source: std::io::Error| ArchiveError::Read { archive: PathBuf::new(), member: None, source };
    let gzip = flate2::bufread::GzDecoder::new(reader);
    let mut tar = tar::Archive::new(Counted { inner: gzip, read: 0 });
    let mut members = 0u64;
    let mut unpacked = 0u64;
    for entry in tar.entries().map_err(read_error)? {
        let mut entry = entry.map_err(read_error)?;
        let member = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let unsafe_member = |why: &'static str| ArchiveError::Unsafe { archive: PathBuf::new(), member: member.clone(), why };
        members += 1;
        if members > limits.max_members {
            return Err(ArchiveError::TooLarge { archive: PathBuf::new(), what: format!("more than {} members", limits.max_members) });
        }
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
        let write_error = |source: std::io::Error| ArchiveError::Write { member: member.clone(), source };
        if is_dir {
            std::fs::create_dir_all(&target).map_err(write_error)?;
            continue;
        }
        if relative.as_os_str().is_empty() {
            return Err(unsafe_member("has an empty file name"));
        }
        let size = entry.header().size().map_err(read_error)?;
        if unpacked.saturating_add(size) > budget {
            return Err(ArchiveError::TooLarge {
                archive: PathBuf::new(),
                what: format!(
                    "more than {} unpacked (member `{member}` alone declares {}), over {} times the archive's size or {} in all",
                    super::inspect::human_bytes(budget),
                    super::inspect::human_bytes(size),
                    limits.max_ratio,
                    super::inspect::human_bytes(limits.max_bytes)
                ),
            });
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(write_error)?;
        }
        let mut out = std::fs::File::create(&target).map_err(write_error)?;
        let copied = std::io::copy(&mut (&mut entry).take(size), &mut out).map_err(|source| ArchiveError::Read {
            archive: PathBuf::new(),
            member: Some(member.clone()),
            source,
        })?;
        unpacked += copied;
    }
    // After the tar's end-of-archive blocks, only zero padding may follow...
    let mut rest = tar.into_inner();
    let mut buffer = [0u8; 64 * 1024];
    loop {
        let n = rest.read(&mut buffer).map_err(read_error)?;
        if n == 0 {
            break;
        }
        if buffer[..n].iter().any(|&b| b != 0) {
            return Err(ArchiveError::Trailing { archive: PathBuf::new(), what: "data after the end of the tar archive" });
        }
        if rest.read > budget.saturating_add(1 << 20) {
            return Err(ArchiveError::TooLarge { archive: PathBuf::new(), what: "padding past the size limit".into() });
        }
    }
    // ...and nothing after the gzip stream: a second member would be read by `tar -xzf`.
    let mut underlying = rest.inner.into_inner();
    let left = underlying.fill_buf().map_err(read_error)?;
    if !left.is_empty() {
        return Err(ArchiveError::Trailing {
            archive: PathBuf::new(),
            what: "data after the end of the gzip stream (a second gzip member?)",
        });
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
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("cannot open {}: {source}", .archive.display())]
    Open { archive: PathBuf, source: std::io::Error },
    /// Not a gzipped tar, or damaged (while reading `member`, if known).
    #[error("{} is not a readable .tar.gz: {}{source}", .archive.display(), in_member(.member))]
    Read { archive: PathBuf, member: Option<String>, source: std::io::Error },
    /// A member TF Hub would refuse.
    #[error("{} is refused: its member `{member}` {why}", .archive.display())]
    Unsafe { archive: PathBuf, member: String, why: &'static str },
    /// A member could not be written out (disk full, permissions).
    #[error("cannot unpack member `{member}`: {source}")]
    Write { member: String, source: std::io::Error },
    /// The scratch folder could not be made.
    #[error("no scratch space to unpack into: {0}")]
    Scratch(#[source] ScratchError),
    /// Over one of the [`Limits`].
    #[error("{} is refused: it unpacks to {what}", .archive.display())]
    TooLarge { archive: PathBuf, what: String },
    /// Something after the end of the gzip stream or of the tar.
    #[error("{} is refused: {what}", .archive.display())]
    Trailing { archive: PathBuf, what: &'static str },
    #[error(
        "{} holds no {SAVED_MODEL_PB} at its root (it holds: {})",
        .archive.display(),
        if .top_level.is_empty() { "nothing".to_owned() } else { .top_level.join(", ") }
    )]
    NoSavedModelAtRoot { archive: PathBuf, top_level: Vec<String> },
    #[error("{} is refused: its member `{SAVED_MODEL_PB}` is a directory, not the SavedModel's graph file", .archive.display())]
    SavedModelPbIsADirectory { archive: PathBuf },
}

/// `member `name`: `, before the cause of a read error in a known member.
fn in_member(member: &Option<String>) -> String {
    member.as_ref().map(|m| format!("member `{m}`: ")).unwrap_or_default()
}

impl ArchiveError {
    fn in_archive(self, path: &Path) -> ArchiveError {
        match self {
            ArchiveError::Read { member, source, .. } => ArchiveError::Read { archive: path.to_owned(), member, source },
            ArchiveError::Unsafe { member, why, .. } => ArchiveError::Unsafe { archive: path.to_owned(), member, why },
            ArchiveError::TooLarge { what, .. } => ArchiveError::TooLarge { archive: path.to_owned(), what },
            ArchiveError::Trailing { what, .. } => ArchiveError::Trailing { archive: path.to_owned(), what },
            other => other,
        }
    }

    fn advice(&self) -> Option<String> {
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
            ArchiveError::SavedModelPbIsADirectory { .. } => Some(
                "saved_model.pb must be the SavedModel's graph file; re-create the archive from a SavedModel directory: \
                 `tar -czf model.tar.gz -C saved_model .`"
                    .to_owned(),
            ),
            ArchiveError::TooLarge { .. } => Some(
                "a package unpacks to about its own size (weights barely compress): this looks like a decompression bomb. \
                 If it is a real model, raise the limits (--max-unpacked-size, --max-members, --max-ratio)"
                    .to_owned(),
            ),
            ArchiveError::Trailing { .. } => Some(
                "an archive must be one gzip stream holding one tar: what follows would be extracted by `tar -xzf` \
                 without being checked here; rebuild it with `exportctl build`"
                    .to_owned(),
            ),
            ArchiveError::Write { .. } => Some("check the free space of exportctl's scratch folder ($EXPORTCTL_HOME/scratch)".to_owned()),
            ArchiveError::Open { .. } | ArchiveError::Scratch(_) => None,
        }
    }
}

/// The help depends on what the archive holds (a single top folder is named in the fix).
impl miette::Diagnostic for ArchiveError {
    fn help(&self) -> Option<Box<dyn std::fmt::Display + '_>> {
        self.advice().map(|help| Box::new(help) as Box<dyn std::fmt::Display>)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::help_text;

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
        assert!(matches!(&err, ArchiveError::NoSavedModelAtRoot { top_level, .. } if top_level == &["my_model"]), "{err}");
        assert!(help_text(&err).unwrap().contains("tar -czf model.tar.gz -C my_model ."));
    }

    fn tar_bytes(archive: TarGz) -> Vec<u8> {
        archive.0.into_inner().unwrap()
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, bytes).unwrap();
        gz.finish().unwrap()
    }

    fn extract_bytes(bytes: &[u8]) -> Result<ExtractedArchive, ArchiveError> {
        let dir = scratch();
        let path = dir.path().join("model.tar.gz");
        std::fs::write(&path, bytes).unwrap();
        let result = extract_archive(&path, &dir.path().join("scratch"));
        std::mem::forget(dir); // the extraction (if any) lives in it
        result
    }

    fn saved_model() -> TarGz {
        TarGz::new().file("saved_model.pb", b"pb").file("variables/variables.index", b"index")
    }

    #[test]
    fn a_second_gzip_member_is_refused() {
        let mut bytes = gzip(&tar_bytes(saved_model()));
        bytes.extend(gzip(&tar_bytes(TarGz::new().symlink("evil-link", "/etc/passwd"))));
        let err = extract_bytes(&bytes).unwrap_err();
        assert!(err.to_string().contains("data after the end of the gzip stream"), "{err}");
        // Garbage after the stream too.
        let mut bytes = gzip(&tar_bytes(saved_model()));
        bytes.extend(b"trailing");
        assert!(matches!(extract_bytes(&bytes).unwrap_err(), ArchiveError::Trailing { .. }));
    }

    #[test]
    fn data_after_the_end_of_the_tar_is_refused() {
        let mut tar = tar_bytes(saved_model());
        tar.extend(tar_bytes(TarGz::new().file("hidden.txt", b"not checked")));
        let err = extract_bytes(&gzip(&tar)).unwrap_err();
        assert!(err.to_string().contains("data after the end of the tar archive"), "{err}");
        // Zero padding (GNU tar's records) is fine.
        let mut tar = tar_bytes(saved_model());
        tar.extend(vec![0u8; 10240]);
        assert!(extract_bytes(&gzip(&tar)).is_ok());
    }

    #[test]
    fn a_gzip_bomb_is_stopped_early() {
        let zeros = vec![0u8; 300 << 20];
        let tar = tar_bytes(TarGz::new().file("saved_model.pb", b"pb").file("variables/variables.data-00000-of-00001", &zeros));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        std::io::Write::write_all(&mut gz, &tar).unwrap();
        let bomb = gz.finish().unwrap();
        assert!(bomb.len() < 1 << 20, "{}", bomb.len());
        let err = extract_bytes(&bomb).unwrap_err();
        assert!(matches!(err, ArchiveError::TooLarge { .. }), "{err}");
        assert!(err.to_string().contains("member `variables/variables.data-00000-of-00001`"), "{err}");
        assert!(help_text(&err).unwrap().contains("decompression bomb"));
    }

    #[test]
    fn too_many_members_are_refused() {
        let dir = scratch();
        let path = dir.path().join("many.tar.gz");
        let mut tar = saved_model();
        for i in 0..20 {
            tar = tar.file(&format!("assets/{i}.txt"), b"x");
        }
        tar.write(&path);
        let limits = Limits { max_members: 10, ..Limits::default() };
        let err = extract_archive_with(&path, &dir.path().join("scratch"), limits).unwrap_err();
        assert!(err.to_string().contains("more than 10 members"), "{err}");
    }

    #[test]
    fn a_saved_model_pb_directory_is_explained() {
        let err = extract_bytes(&gzip(&tar_bytes(TarGz::new().dir("saved_model.pb/").file("saved_model.pb/x", b"")))).unwrap_err();
        assert!(matches!(err, ArchiveError::SavedModelPbIsADirectory { .. }), "{err}");
        assert!(err.to_string().contains("is a directory"), "{err}");
    }

    #[test]
    fn a_missing_archive_names_its_path_and_keeps_its_io_error() {
        let dir = scratch();
        let path = dir.path().join("missing.tar.gz");
        let err = extract_archive(&path, dir.path()).unwrap_err();
        assert!(err.to_string().starts_with(&format!("cannot open {}: ", path.display())), "{err}");
        let cause = std::error::Error::source(&err).and_then(|s| s.downcast_ref::<std::io::Error>()).map(std::io::Error::kind);
        assert_eq!(cause, Some(std::io::ErrorKind::NotFound));
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
