//! package (per piece): the files consumers get, and what publishing them needs.
//!
//! * `model.tar.gz` — the SavedModel's files at the archive root, the way TF Hub's tooling
//!   wants them and so that the same SavedModel always gives the same bytes: entries sorted
//!   by path, directories before their contents; regular files and the directories that hold
//!   them only (an empty directory such as TensorFlow's `assets/` is left out: a cache entry,
//!   local or downloaded, holds files, and the archive must not depend on where the SavedModel
//!   came from; a symlink or a name starting with a dot is an error, never silently dropped); mtime 0,
//!   uid/gid 0, no user or group names, modes 0644/0755; gzip with mtime 0, no file name and
//!   the "unknown" OS byte, at a fixed compression level ([`ARCHIVE_LEVEL`]).
//! * `model.md` — documentation in TF Hub's markdown format (`docs.rs`): the `# Module`
//!   handle line, the description, `<!-- key: value -->` metadata with TF Hub tag ids, then
//!   generated sections (inputs and outputs, usage for Keras 3, tf_keras and TensorFlow,
//!   fine-tuning, size), the model card fields and the user's body.
//! * `kaggle/model-instance-metadata.json` and `kaggle-model/model-metadata.json` — what the
//!   `kaggle` tool reads to publish the piece as a variation of the model on Kaggle Models
//!   (`kaggle_card.rs`); `dist/` puts the first beside the SavedModel's files in the piece's
//!   `kaggle/` folder, the second in the model's (`exec::dist`).
//! * `build.json` — provenance: every project file the piece was built from with its digest,
//!   every step's settings, tool and runtime versions, the validation's numbers and the
//!   digests of the outputs. Nothing in it depends on when, where or on which host it was
//!   built (no timestamps, absolute paths or host names): two builds of the same inputs
//!   with the same runtime write the same bytes.

use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use super::docs::{asset_path, Docs, Handle};
use super::export;
use super::kaggle_card::ModelCard;
use super::slice;
use super::trace;
use super::validate;
use super::{dep_dir, files, settings, write_json, Clock, Dirs, FileDigest, Target, TfSteps};
use crate::exec::{StepContext, StepError, StepInputs, StepOutcome};
use crate::manifest::{BatchNorm, DocsSettings, KaggleSettings, Manifest, Model};
use crate::plan::StepKind;
use crate::tf::inspect::human_bytes;

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct Settings<'a> {
    publisher: &'a str,
    model: &'a str,
    piece: &'a str,
    version: u32,
    asset_base_url: Option<&'a str>,
    docs: &'a DocsSettings,
    trainable: bool,
    dropout: Option<f64>,
    batch_norm: &'a BatchNorm,
    /// The model card on Kaggle: the model's title and documentation, its pieces.
    kaggle: &'a KaggleSettings,
    title: &'a str,
    model_docs: &'a DocsSettings,
    variations: Vec<(&'a str, Option<&'a str>)>,
}

pub(super) fn inputs(manifest: &Manifest, target: &Target<'_>) -> StepInputs {
    let piece = target.piece();
    let settings = settings(&Settings {
        publisher: &manifest.project.publisher,
        model: &target.model.name,
        piece: &piece.name,
        version: manifest.project.version,
        asset_base_url: manifest.project.asset_base_url.as_deref(),
        docs: &piece.docs,
        trainable: piece.trainable,
        dropout: piece.dropout,
        batch_norm: &piece.batch_norm,
        kaggle: &manifest.kaggle,
        title: &model_title(target.model),
        model_docs: &target.model.docs,
        variations: variations(target.model),
    });
    StepInputs { settings, files: piece.docs.body.iter().cloned().collect() }
}

fn model_title(model: &Model) -> String {
    model.title.clone().unwrap_or_else(|| crate::kaggle::default_title(&model.name))
}

/// Every piece of `model`, with its description.
fn variations(model: &Model) -> Vec<(&str, Option<&str>)> {
    model.pieces.iter().map(|p| (p.name.as_str(), p.docs.description.as_deref())).collect()
}

pub(super) fn run(steps: &TfSteps, target: &Target<'_>, dirs: &Dirs, cx: &StepContext<'_>) -> Result<StepOutcome, StepError> {
    let manifest = steps.manifest();
    let piece = target.piece();
    let export_dir = dep_dir(target, cx, StepKind::Export)?;
    let trace_dir = dep_dir(target, cx, StepKind::Trace)?;
    let inventory = export::load(&export_dir)?;
    let facts = slice::load(&dep_dir(target, cx, StepKind::Slice)?)?;
    let traced = trace::load(&trace_dir)?;
    let report = validate::load(&dep_dir(target, cx, StepKind::Validate)?)?;
    let golden: validate::Golden = super::read_json(&trace_dir.join(files::GOLDEN).join("golden.json"))?;

    let mut clock = Clock::start();
    let saved_model = trace_dir.join(files::SAVED_MODEL);
    let archive_path = dirs.out.join(files::ARCHIVE);
    let archive = archive_saved_model(&saved_model, &archive_path)
        .map_err(|e| StepError::new(format!("cannot package {}: {e}", saved_model.display())))?;
    clock.lap("archive");

    let body = match &piece.docs.body {
        Some(path) => Some(std::fs::read_to_string(dirs.project(path)).map_err(|e| {
            StepError::new(format!("cannot read the docs body {}: {e}", path.display()))
                .with_help("`docs.body` names a markdown file relative to the manifest")
        })?),
        None => None,
    };
    let handle =
        Handle { publisher: &manifest.project.publisher, model: &target.model.name, piece: &piece.name, version: manifest.project.version };
    let litert = super::litert::package(target, cx, &dirs.out)?;
    let docs = Docs {
        handle: &handle,
        asset_path: asset_path(manifest.project.asset_base_url.as_deref(), &handle),
        settings: &piece.docs,
        trainable: piece.trainable,
        dropout: piece.dropout,
        batch_norm: &piece.batch_norm,
        single_input: golden.input_structure == "single",
        output_structure: &golden.output_structure,
        inventory: &inventory,
        facts: &facts,
        traced: &traced,
        report: &report,
        archive_bytes: archive.bytes,
        formats: litert.as_ref().map(|(_, _, section)| section.clone()),
        body: body.as_deref(),
    };
    let (markdown, mut warnings) = docs.render();
    let litert = litert.map(|(bytes, digest, _)| (bytes, digest));
    let docs_path = dirs.out.join(files::DOCS);
    std::fs::write(&docs_path, &markdown).map_err(|e| StepError::new(format!("cannot write {}: {e}", docs_path.display())))?;

    // Kaggle Models: the variation's metadata, and the model's (the same for every piece).
    let card = ModelCard {
        owner: &manifest.kaggle.owner,
        slug: &target.model.name,
        title: model_title(target.model),
        private: manifest.kaggle.private,
        docs: &target.model.docs,
        variations: variations(target.model),
    };
    warnings.extend(card.lints(&docs));
    for (name, value) in [
        (files::KAGGLE_VARIATION, serde_json::to_value(card.variation(&docs))),
        (files::KAGGLE_MODEL, serde_json::to_value(card.metadata())),
    ] {
        let path = dirs.out.join(name);
        std::fs::create_dir_all(path.parent().expect("in a folder"))
            .map_err(|e| StepError::new(format!("cannot create {}: {e}", path.display())))?;
        write_json(&path, &value.expect("metadata serialises"))?;
    }

    // Provenance.
    let mut inputs: Vec<Provenanced> = Vec::new();
    for (step, dir) in [("export", &export_dir), ("trace", &trace_dir)] {
        let read: Vec<FileDigest> = super::read_json(&dir.join(files::SOURCES))?;
        inputs.extend(read.into_iter().map(|file| Provenanced { step, file }));
    }
    let body_paths: Vec<PathBuf> = piece.docs.body.iter().cloned().collect();
    inputs.extend(super::digest_files(&dirs.root, &body_paths)?.into_iter().map(|file| Provenanced { step: "package", file }));
    let step_settings = StepSettings {
        export: export::inputs(target, &dirs.root).settings,
        slice: slice::inputs(target).settings,
        trace: trace::inputs(target).settings,
        validate: validate::inputs(target).settings,
        package: self::inputs(manifest, target).settings,
    };
    // The trace's entry knows its files' digests: the SavedModel is not hashed again.
    let recorded = &cx.deps.get(&target.sibling(StepKind::Trace)).map(|d| d.files.clone()).unwrap_or_default();
    let saved_model_files: Vec<FileDigest> = if recorded.keys().any(|k| k.starts_with("saved_model/")) {
        recorded
            .iter()
            .filter_map(|(path, digest)| {
                let inside = path.strip_prefix("saved_model/")?;
                let bytes = std::fs::metadata(trace_dir.join(path)).map(|m| m.len()).unwrap_or(0);
                Some(FileDigest { path: inside.to_string(), bytes, digest: digest.clone() })
            })
            .collect()
    } else {
        super::digest_files(&trace_dir, &[PathBuf::from(files::SAVED_MODEL)])?
            .into_iter()
            .map(|mut f| {
                f.path = f.path.trim_start_matches("saved_model/").to_string();
                f
            })
            .collect()
    };
    let output = |name: &str| -> Result<Output, StepError> {
        let path = dirs.out.join(name);
        let digest = crate::hash::digest_file(&path).map_err(|e| StepError::new(format!("cannot read {}: {e}", path.display())))?;
        let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        Ok(Output { bytes, digest })
    };
    let provenance = Provenance {
        format: 1,
        handle: handle.to_string(),
        model: &target.model.name,
        piece: &piece.name,
        version: manifest.project.version,
        tool: Tool { name: "exportctl", version: env!("CARGO_PKG_VERSION") },
        runtime: steps.runtime().identity(),
        inputs,
        settings: step_settings,
        validation: Validation {
            ok: report.ok,
            checks: report.native.checks.len() + report.reusable.checks.len(),
            max_abs_diff: validate::max_differences(&report),
            regularization_loss_values: report.reusable.regularization_loss_values.clone(),
            hub: report.reusable.hub.clone(),
            keras3: report.reusable.keras3.clone(),
            warnings: report.lints.iter().map(|w| w.code.code().to_string()).collect(),
        },
        outputs: Outputs {
            archive: Output { bytes: archive.bytes, digest: archive.digest.clone() },
            docs: output(files::DOCS)?,
            kaggle_variation: output(files::KAGGLE_VARIATION)?,
            kaggle_model: output(files::KAGGLE_MODEL)?,
            saved_model: saved_model_files,
            tflite: litert.as_ref().map(|(bytes, digest)| Output { bytes: *bytes, digest: digest.clone() }),
        },
    };
    write_json(&dirs.out.join(files::BUILD), &provenance)?;

    let summary =
        format!("{} ({}, {} entries), {}, Kaggle metadata", files::ARCHIVE, human_bytes(archive.bytes), archive.entries, files::DOCS);
    clock.lap("docs");
    Ok(clock.outcome(warnings, summary))
}

// ---------------------------------------------------------------------------------------------
// The archive.
// ---------------------------------------------------------------------------------------------

/// What [`archive_saved_model`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveSummary {
    /// The archive's size.
    pub bytes: u64,
    /// Files and directories in it.
    pub entries: usize,
    /// Its digest, taken as it was written.
    pub digest: String,
}

/// Hashes what passes through it.
struct Hashing<W> {
    inner: W,
    hasher: blake3::Hasher,
    bytes: u64,
}

impl<W: std::io::Write> std::io::Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The gzip level of `model.tar.gz`. Measured on model weights (`cargo bench --bench
/// archive`): level 1 of the deflate backend (miniz_oxide) compresses float32 weights as
/// well as level 6 does (both about 0.90: only the exponent bytes compress) at about seven
/// times the speed, over 200 MB/s on one core; only the small graph file comes out bigger.
pub const ARCHIVE_LEVEL: u32 = 1;

/// Packs the SavedModel directory `dir` into the gzipped tar `dest`, deterministically (see
/// the module docs for the rules), streaming: one buffer, never the whole archive in memory.
pub fn archive_saved_model(dir: &Path, dest: &Path) -> std::io::Result<ArchiveSummary> {
    archive_saved_model_at(dir, dest, ARCHIVE_LEVEL)
}

/// [`archive_saved_model`] at another gzip level (benchmarks compare them).
pub fn archive_saved_model_at(dir: &Path, dest: &Path, level: u32) -> std::io::Result<ArchiveSummary> {
    let mut entries = Vec::new();
    collect_entries(dir, Path::new(""), &mut entries)?;
    // Component-wise order: a directory comes right before its contents.
    entries.sort_by(|a, b| a.0.components().cmp(b.0.components()));
    // Only directories that hold a file (at any depth).
    let files: Vec<PathBuf> = entries.iter().filter(|(_, is_dir)| !is_dir).map(|(p, _)| p.clone()).collect();
    entries.retain(|(path, is_dir)| !is_dir || files.iter().any(|f| f.starts_with(path)));

    let file = std::fs::File::create(dest)?;
    let hashing = Hashing { inner: file, hasher: blake3::Hasher::new(), bytes: 0 };
    let gzip = crate::gzip::ParallelGzEncoder::new(BufWriter::with_capacity(1 << 20, hashing), level)?;
    let mut tar = tar::Builder::new(gzip);
    for (relative, is_dir) in &entries {
        let name = super::slash_path(relative);
        let mut header = tar::Header::new_ustar();
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        header.set_username("")?;
        header.set_groupname("")?;
        if *is_dir {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_mode(0o755);
            header.set_size(0);
            tar.append_data(&mut header, format!("{name}/"), std::io::empty())?;
        } else {
            let path = dir.join(relative);
            let size = std::fs::metadata(&path)?.len();
            header.set_entry_type(tar::EntryType::Regular);
            header.set_mode(0o644);
            header.set_size(size);
            tar.append_data(&mut header, &name, std::fs::File::open(&path)?)?;
        }
    }
    let gzip = tar.into_inner()?;
    let mut writer = gzip.finish()?;
    writer.flush()?;
    // Not fsynced, like every other output of a step: a file the system lost in a crash no
    // longer has the digest its entry records, and is rebuilt (cache/verify.rs).
    let hashing = writer.into_inner().map_err(|e| e.into_error())?;
    Ok(ArchiveSummary { bytes: hashing.bytes, entries: entries.len(), digest: hashing.hasher.finalize().to_hex().to_string() })
}

/// Every file and directory under `dir`, relative; refuses what TF Hub's loader refuses.
fn collect_entries(root: &Path, relative: &Path, out: &mut Vec<(PathBuf, bool)>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(root.join(relative))? {
        let entry = entry?;
        let name = entry.file_name();
        let path = relative.join(&name);
        let refuse = |why: &str| Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{} {why}", path.display())));
        if name.to_string_lossy().starts_with('.') {
            return refuse("starts with a dot: packages hold no hidden files");
        }
        let kind = std::fs::symlink_metadata(entry.path())?.file_type();
        if kind.is_symlink() {
            return refuse("is a symbolic link: TF Hub refuses archives with links");
        } else if kind.is_dir() {
            out.push((path.clone(), true));
            collect_entries(root, &path, out)?;
        } else if kind.is_file() {
            out.push((path, false));
        } else {
            return refuse("is not a regular file or directory");
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Provenance.
// ---------------------------------------------------------------------------------------------

#[derive(Serialize)]
struct Provenance<'a> {
    format: u32,
    handle: String,
    model: &'a str,
    piece: &'a str,
    version: u32,
    tool: Tool,
    runtime: &'a crate::runtime::Versions,
    inputs: Vec<Provenanced>,
    settings: StepSettings,
    validation: Validation,
    outputs: Outputs,
}

#[derive(Serialize)]
struct Tool {
    name: &'static str,
    version: &'static str,
}

/// A project file, and the step that read it.
#[derive(Serialize)]
struct Provenanced {
    step: &'static str,
    #[serde(flatten)]
    file: FileDigest,
}

#[derive(Serialize)]
struct StepSettings {
    export: Value,
    slice: Value,
    trace: Value,
    validate: Value,
    package: Value,
}

#[derive(Serialize)]
struct Validation {
    ok: bool,
    checks: usize,
    /// Native `serving_default` vs the Keras model's outputs, per output.
    max_abs_diff: std::collections::BTreeMap<String, f64>,
    regularization_loss_values: Vec<Option<f64>>,
    hub: Option<validate::HubSummary>,
    keras3: Option<validate::Keras3Summary>,
    warnings: Vec<String>,
}

#[derive(Serialize)]
struct Outputs {
    #[serde(rename = "model.tar.gz")]
    archive: Output,
    #[serde(rename = "model.md")]
    docs: Output,
    #[serde(rename = "kaggle/model-instance-metadata.json")]
    kaggle_variation: Output,
    #[serde(rename = "kaggle-model/model-metadata.json")]
    kaggle_model: Output,
    /// Every file of the SavedModel (`saved_model/` in `dist/`), relative to it.
    saved_model: Vec<FileDigest>,
    #[serde(rename = "model.tflite", skip_serializing_if = "Option::is_none")]
    tflite: Option<Output>,
}

#[derive(Serialize)]
struct Output {
    bytes: u64,
    digest: String,
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;

    fn saved_model_dir(dir: &Path) {
        std::fs::create_dir_all(dir.join("variables")).unwrap();
        std::fs::create_dir_all(dir.join("assets")).unwrap();
        std::fs::write(dir.join("saved_model.pb"), vec![7u8; 5000]).unwrap();
        std::fs::write(dir.join("fingerprint.pb"), b"fp").unwrap();
        std::fs::write(dir.join("variables/variables.index"), b"index").unwrap();
        std::fs::write(dir.join("variables/variables.data-00000-of-00001"), vec![1u8; 100_000]).unwrap();
    }

    #[test]
    fn two_packagings_of_the_same_saved_model_are_byte_identical() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        saved_model_dir(&a);
        // The same content, created in another order and at another time, with other modes.
        std::fs::create_dir_all(b.join("variables")).unwrap();
        std::fs::write(b.join("variables/variables.data-00000-of-00001"), vec![1u8; 100_000]).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(b.join("variables/variables.index"), b"index").unwrap();
        // An empty directory (TensorFlow's `assets/`) is not part of it: a SavedModel
        // downloaded from a cache has files only.
        std::fs::create_dir_all(b.join("assets/extra")).unwrap();
        std::fs::write(b.join("fingerprint.pb"), b"fp").unwrap();
        std::fs::write(b.join("saved_model.pb"), vec![7u8; 5000]).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(b.join("saved_model.pb"), std::fs::Permissions::from_mode(0o600)).unwrap();

        let (out_a, out_b) = (tmp.path().join("a.tar.gz"), tmp.path().join("b.tar.gz"));
        let summary = archive_saved_model(&a, &out_a).unwrap();
        archive_saved_model(&b, &out_b).unwrap();
        assert_eq!(std::fs::read(&out_a).unwrap(), std::fs::read(&out_b).unwrap());
        assert_eq!(summary.entries, 5);
        assert_eq!(summary.bytes, std::fs::metadata(&out_a).unwrap().len());
    }

    #[test]
    fn the_archive_holds_the_saved_model_at_its_root_sorted_with_fixed_metadata() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("sm");
        saved_model_dir(&dir);
        let out = tmp.path().join("model.tar.gz");
        archive_saved_model(&dir, &out).unwrap();

        let bytes = std::fs::read(&out).unwrap();
        // gzip header: magic, deflate, no flags, mtime 0, OS "unknown".
        assert_eq!(&bytes[..4], &[0x1f, 0x8b, 8, 0]);
        assert_eq!(&bytes[4..8], &[0, 0, 0, 0]);
        assert_eq!(bytes[9], 255);

        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..]));
        let mut seen = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let header = entry.header().clone();
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            assert_eq!(header.mtime().unwrap(), 0, "{path}");
            assert_eq!((header.uid().unwrap(), header.gid().unwrap()), (0, 0), "{path}");
            assert_eq!(header.username().unwrap(), Some(""), "{path}");
            let mode = header.mode().unwrap();
            if header.entry_type().is_dir() {
                assert_eq!(mode, 0o755);
            } else {
                assert!(header.entry_type().is_file());
                assert_eq!(mode, 0o644);
                let mut content = Vec::new();
                entry.read_to_end(&mut content).unwrap();
                assert_eq!(content, std::fs::read(dir.join(&path)).unwrap());
            }
            seen.push(path);
        }
        assert_eq!(
            seen,
            vec!["fingerprint.pb", "saved_model.pb", "variables/", "variables/variables.data-00000-of-00001", "variables/variables.index"]
        );
        // What exportctl's own reader (TF Hub's rules) accepts.
        let extracted = crate::tf::extract_archive(&out, tmp.path()).unwrap();
        assert!(extracted.path().join("variables/variables.index").is_file());
    }

    #[test]
    fn symlinks_and_dot_files_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("sm");
        saved_model_dir(&dir);
        std::os::unix::fs::symlink(dir.join("saved_model.pb"), dir.join("variables/link")).unwrap();
        let err = archive_saved_model(&dir, &tmp.path().join("x.tar.gz")).unwrap_err();
        assert!(err.to_string().contains("variables/link is a symbolic link"), "{err}");
        std::fs::remove_file(dir.join("variables/link")).unwrap();
        std::fs::write(dir.join(".DS_Store"), b"").unwrap();
        let err = archive_saved_model(&dir, &tmp.path().join("x.tar.gz")).unwrap_err();
        assert!(err.to_string().contains(".DS_Store starts with a dot"), "{err}");
    }
}
