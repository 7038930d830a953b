//! package (per piece): the three files a published model version is made of.
//!
//! * `model.tar.gz` — the SavedModel's files at the archive root, the way TF Hub's tooling
//!   wants them and so that the same SavedModel always gives the same bytes: entries sorted
//!   by path, directories before their contents; regular files and the directories that hold
//!   them only (an empty directory such as TensorFlow's `assets/` is left out: a cache entry,
//!   local or downloaded, holds files, and the archive must not depend on where the SavedModel
//!   came from; a symlink or a name starting with a dot is an error, never silently dropped); mtime 0,
//!   uid/gid 0, no user or group names, modes 0644/0755; gzip with mtime 0, no file name and
//!   the "unknown" OS byte, at a fixed compression level ([`ARCHIVE_LEVEL`]).
//! * `model.md` — documentation in TF Hub's markdown format: the `# Module` handle line, the
//!   description, `<!-- key: value -->` metadata with TF Hub tag ids, then generated sections
//!   (inputs and outputs, usage, fine-tuning, size) and the user's body.
//! * `build.json` — provenance: every project file the piece was built from with its digest,
//!   every step's settings, tool and runtime versions, the validation's numbers and the
//!   digests of the outputs. Nothing in it depends on when, where or on which host it was
//!   built (no timestamps, absolute paths or host names): two builds of the same inputs
//!   with the same runtime write the same bytes.

use std::fmt::Write as _;
use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use super::export::{self, Inventory, Spec};
use super::slice::{self, SliceFacts};
use super::trace::{self, TraceFacts};
use super::validate::{self, Report};
use super::{dep_dir, files, Clock, settings, short_float, write_json, Dirs, FileDigest, Target, TfSteps};
use crate::exec::{StepContext, StepError, StepInputs, StepOutcome, Warning};
use crate::manifest::{BatchNorm, DocsSettings, Manifest};
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
    });
    StepInputs { settings, files: piece.docs.body.iter().cloned().collect() }
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
    let handle = Handle {
        publisher: &manifest.project.publisher,
        model: &target.model.name,
        piece: &piece.name,
        version: manifest.project.version,
    };
    let docs = Docs {
        handle: &handle,
        asset_path: asset_path(manifest.project.asset_base_url.as_deref(), &handle),
        settings: &piece.docs,
        trainable: piece.trainable,
        dropout: piece.dropout,
        batch_norm: &piece.batch_norm,
        single_input: golden.input_structure == "single",
        inventory: &inventory,
        facts: &facts,
        traced: &traced,
        report: &report,
        archive_bytes: archive.bytes,
        body: body.as_deref(),
    };
    let (mut markdown, warnings) = docs.render();
    let litert = super::litert::package(target, cx, &dirs.out, &mut markdown)?;
    let docs_path = dirs.out.join(files::DOCS);
    std::fs::write(&docs_path, &markdown).map_err(|e| StepError::new(format!("cannot write {}: {e}", docs_path.display())))?;

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
            warnings: report.lints.iter().map(|w| w.code.clone()).collect(),
        },
        outputs: Outputs {
            archive: Output { bytes: archive.bytes, digest: archive.digest.clone() },
            docs: output(files::DOCS)?,
            saved_model: saved_model_files,
            tflite: litert.as_ref().map(|(bytes, digest)| Output { bytes: *bytes, digest: digest.clone() }),
        },
    };
    write_json(&dirs.out.join(files::BUILD), &provenance)?;

    let summary = format!("{} ({}, {} entries), {}", files::ARCHIVE, human_bytes(archive.bytes), archive.entries, files::DOCS);
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
        let refuse = |why: &str| {
            Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{} {why}", path.display())))
        };
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
// The documentation.
// ---------------------------------------------------------------------------------------------

/// `publisher/model-piece/version`.
struct Handle<'a> {
    publisher: &'a str,
    model: &'a str,
    piece: &'a str,
    version: u32,
}

impl std::fmt::Display for Handle<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}-{}/{}", self.publisher, self.model, self.piece, self.version)
    }
}

/// `asset-path`: the base URL joined with the archive's path inside `dist/`, or just the
/// archive's file name.
fn asset_path(base: Option<&str>, handle: &Handle<'_>) -> String {
    match base {
        Some(base) => format!(
            "{}/{}/{}/{}/{}",
            base.trim_end_matches('/'),
            handle.model,
            handle.piece,
            handle.version,
            files::ARCHIVE
        ),
        None => files::ARCHIVE.to_string(),
    }
}

/// SPDX license ids (and TF Hub's own ids) → TF Hub's license tag ids.
const LICENSES: &[(&str, &str)] = &[
    ("apache-2.0", "apache-2.0"),
    ("mit", "mit"),
    ("bsd-2-clause", "bsd-2-clause"),
    ("bsd-3-clause", "bsd-3-clause"),
    ("cc0-1.0", "cc0-1.0"),
    ("cc-by-3.0", "cc-by-3.0"),
    ("cc-by-4.0", "cc-by-4.0"),
    ("cc-by-sa-4.0", "cc-by-sa-4.0"),
    ("cc-by-nc-4.0", "cc-by-nc-4.0"),
    ("cc-by-nc-sa-4.0", "cc-by-nc-sa-4.0"),
    ("gpl-2.0", "gpl-2.0"),
    ("gpl-3.0", "gpl-3.0"),
    ("lgpl-2.1", "lgpl-2.1"),
    ("lgpl-3.0", "lgpl-3.0"),
    ("agpl-3.0", "agpl-3.0"),
    ("mpl-2.0", "mpl-2.0"),
    ("unlicense", "unlicense"),
    ("custom", "custom"),
];

/// The TF Hub tag id of a license given as an SPDX id (`Apache-2.0` → `apache-2.0`;
/// `GPL-3.0-only` → `gpl-3.0`), or `None` when exportctl does not know it.
pub fn license_tag(license: &str) -> Option<&'static str> {
    let lower = license.trim().to_ascii_lowercase();
    let lower = lower.strip_suffix("-only").unwrap_or(&lower);
    LICENSES.iter().find(|(spdx, _)| *spdx == lower).map(|(_, tag)| *tag)
}

/// TF Hub's task tag ids exportctl knows (its `tags/task.yaml`).
const TASKS: &[&str] = &[
    "audio-command-detection",
    "audio-embedding",
    "audio-event-classification",
    "audio-pitch-extraction",
    "audio-speech-synthesis",
    "audio-speech-to-text",
    "image-augmentation",
    "image-classification",
    "image-depth-estimation",
    "image-extrapolation",
    "image-feature-vector",
    "image-frame-interpolation",
    "image-generator",
    "image-object-detection",
    "image-others",
    "image-pose-detection",
    "image-segmentation",
    "image-style-transfer",
    "image-super-resolution",
    "image-text-recognition",
    "text-classification",
    "text-embedding",
    "text-generation",
    "text-language-model",
    "text-question-answering",
    "text-retrieval-question-answering",
    "text-segmentation",
    "text-to-mel",
    "video-audio-text",
    "video-classification",
    "video-generation",
    "video-text",
];

/// Everything the documentation is written from.
struct Docs<'a> {
    handle: &'a Handle<'a>,
    asset_path: String,
    settings: &'a DocsSettings,
    trainable: bool,
    dropout: Option<f64>,
    batch_norm: &'a BatchNorm,
    single_input: bool,
    inventory: &'a Inventory,
    facts: &'a SliceFacts,
    traced: &'a TraceFacts,
    report: &'a Report,
    archive_bytes: u64,
    body: Option<&'a str>,
}

impl Docs<'_> {
    /// The markdown, and the lints about the documentation's fields.
    fn render(&self) -> (String, Vec<Warning>) {
        let mut warnings = Vec::new();
        let mut out = String::new();
        let _ = writeln!(out, "# Module {}", self.handle);
        match self.settings.description.as_deref() {
            Some(description) => {
                let _ = writeln!(out, "{}", description.trim());
            }
            None => {
                let _ = writeln!(out, "A reusable SavedModel: the `{}` piece of model `{}`.", self.handle.piece, self.handle.model);
                warnings.push(missing("description", "description = \"One line on what the model does.\"", ""));
            }
        }
        out.push('\n');
        let meta = |out: &mut String, key: &str, value: &str| {
            let _ = writeln!(out, "<!-- {key}: {value} -->");
        };
        meta(&mut out, "format", "saved_model_2");
        meta(&mut out, "asset-path", &self.asset_path);
        match self.settings.task.as_deref() {
            Some(task) => {
                if !TASKS.contains(&task) {
                    warnings.push(unknown_tag("task", task, TASKS.iter().copied()));
                }
                meta(&mut out, "task", task);
            }
            None => warnings.push(missing("task", "task = \"image-classification\"", " (a TF Hub task id)")),
        }
        let fine_tunable = self.settings.fine_tunable.unwrap_or(self.trainable);
        meta(&mut out, "fine-tunable", if fine_tunable { "true" } else { "false" });
        match self.settings.license.as_deref() {
            Some(license) => match license_tag(license) {
                Some(tag) => meta(&mut out, "license", tag),
                None => {
                    warnings.push(unknown_tag("license", license, LICENSES.iter().map(|(_, tag)| *tag)));
                    meta(&mut out, "license", license);
                }
            },
            None => warnings.push(missing("license", "license = \"Apache-2.0\"", " (an SPDX id)")),
        }
        for (key, value) in [
            ("dataset", &self.settings.dataset),
            ("network-architecture", &self.settings.network_architecture),
            ("language", &self.settings.language),
        ] {
            if let Some(value) = value {
                if !is_tag_id(value) {
                    warnings.push(Warning {
                        code: "unknown-tag".into(),
                        message: format!("docs.{key} = `{value}` is not a TF Hub tag id (lowercase letters, digits and dashes)"),
                        help: Some(format!("write it as `{}`", to_tag_id(value))),
                    });
                }
                meta(&mut out, key, value);
            }
        }
        out.push('\n');
        self.inputs_and_outputs(&mut out);
        self.usage(&mut out);
        self.fine_tuning(&mut out);
        self.size(&mut out);
        if let Some(body) = self.body {
            out.push_str(body.trim_end());
            out.push('\n');
        }
        (out, warnings)
    }

    fn inputs_and_outputs(&self, out: &mut String) {
        let signature = &self.traced.signature;
        let _ = writeln!(out, "## Inputs and outputs\n");
        let _ = writeln!(out, "| | name | dtype | shape |");
        let _ = writeln!(out, "|---|---|---|---|");
        for (role, specs) in [("input", &signature.inputs), ("output", &signature.outputs)] {
            for spec in specs.iter() {
                let _ = writeln!(out, "| {role} | `{}` | {} | `{}` |", spec.name, spec.dtype, shape(spec));
            }
        }
        out.push('\n');
        let names: Vec<String> = signature.inputs.iter().map(|s| format!("`{}`", s.name)).collect();
        let call_input = if self.single_input {
            format!("the {} tensor itself", names.join(""))
        } else {
            format!("a dict of tensors keyed by {}", names.join(", "))
        };
        let _ = writeln!(
            out,
            "`__call__(inputs, training=False)` takes {call_input}; the first dimension is the batch (any size). \
             TF Serving calls the `serving_default` signature, whose inputs and outputs have the names above.\n"
        );
    }

    fn usage(&self, out: &mut String) {
        let handle = if self.asset_path.contains("://") { self.asset_path.clone() } else { "path/to/saved_model".to_string() };
        let example_input = if self.single_input {
            "inputs".to_string()
        } else {
            let keys: Vec<String> = self.traced.signature.inputs.iter().map(|s| format!("\"{}\": ...", s.name)).collect();
            format!("{{{}}}", keys.join(", "))
        };
        let _ = writeln!(out, "## Usage\n");
        let _ = writeln!(out, "```python");
        let _ = writeln!(out, "import tensorflow as tf");
        let _ = writeln!(out, "import tensorflow_hub as hub\n");
        let _ = writeln!(out, "# In a (tf_keras) model, fine-tunable:");
        let _ = writeln!(out, "layer = hub.KerasLayer(\"{handle}\", trainable={})", if self.trainable { "True" } else { "False" });
        let _ = writeln!(out, "outputs = layer({example_input})\n");
        let _ = writeln!(out, "# As a plain TensorFlow object:");
        let _ = writeln!(out, "obj = tf.saved_model.load(\"{handle}\")");
        let _ = writeln!(out, "outputs = obj({example_input}, training=False)");
        let _ = writeln!(out, "```\n");
        if !self.asset_path.contains("://") {
            let _ = writeln!(
                out,
                "`path/to/saved_model` is the unpacked `{}` (exportctl also writes it unpacked as `saved_model/` next to this file).\n",
                files::ARCHIVE
            );
        }
    }

    fn fine_tuning(&self, out: &mut String) {
        let traced = self.traced;
        let _ = writeln!(out, "## Fine-tuning\n");
        let _ = writeln!(
            out,
            "This SavedModel implements the Reusable SavedModel API (`__call__`, `variables`, `trainable_variables`, `regularization_losses`).\n"
        );
        let changes: Vec<&str> = [
            (traced.has_dropout == Some(true), "dropout is active"),
            (traced.has_batch_norm == Some(true), "batch normalization uses and updates batch statistics"),
        ]
        .into_iter()
        .filter_map(|(present, what)| present.then_some(what))
        .collect();
        let effect = match (traced.has_dropout, changes.is_empty()) {
            (None, _) => "what it changes is up to the source SavedModel's own `__call__`".to_string(),
            (Some(_), true) => "this model has no dropout or batch normalization, so both compute the same".to_string(),
            (Some(_), false) => format!("with `training=True`, {}", changes.join(" and ")),
        };
        let _ = writeln!(
            out,
            "- **Training flag**: `__call__` was traced with `training=True` and `training=False`; pass `training=True` \
             only while fine-tuning (`hub.KerasLayer` does so inside `fit`): {effect}."
        );
        if self.trainable {
            let params = self.facts.params;
            let counted = if params.total > 0 {
                format!(" ({} of {} parameters)", crate::tf::inspect::group_digits(params.trainable), crate::tf::inspect::group_digits(params.total))
            } else {
                String::new()
            };
            let _ = writeln!(out, "- **Trainable variables**: {} of {} variables{counted}.", traced.trainable_variables, traced.variables);
        } else {
            let _ = writeln!(
                out,
                "- **Trainable variables**: none: this piece is exported frozen (`trainable = false`); its {} variables are constants for consumers.",
                traced.variables
            );
        }
        let values = &self.report.reusable.regularization_loss_values;
        match traced.regularization_losses {
            0 => {
                let _ = writeln!(out, "- **Regularization losses**: none.");
            }
            n => {
                let shown: Vec<String> = values.iter().map(|v| v.map_or("?".to_string(), short_float)).collect();
                let _ = writeln!(
                    out,
                    "- **Regularization losses**: {n} (`regularization_losses`, one per weight regularizer; value{} at export: {}). \
                     `hub.KerasLayer` adds them to the model's losses; when calling the object directly, add them to your loss.",
                    if n == 1 { "" } else { "s" },
                    shown.join(", ")
                );
            }
        }
        match (self.facts.dropout_layers.unwrap_or(0), self.dropout) {
            (0, _) => {}
            (n, Some(rate)) => {
                let _ = writeln!(out, "- **Dropout**: {n} layer(s), rate set to {} for consumers.", short_float(rate));
            }
            (n, None) => {
                let _ = writeln!(out, "- **Dropout**: {n} layer(s), rates kept from training.");
            }
        }
        match (self.facts.batch_norm_layers.unwrap_or(0), self.batch_norm.is_set()) {
            (0, _) => {}
            (n, true) => {
                let mut set = Vec::new();
                if let Some(m) = self.batch_norm.momentum {
                    set.push(format!("momentum {}", short_float(m)));
                }
                if let Some(e) = self.batch_norm.epsilon {
                    set.push(format!("epsilon {}", short_float(e)));
                }
                let _ = writeln!(out, "- **Batch normalization**: {n} layer(s), {} set for consumers.", set.join(", "));
            }
            (n, false) => {
                let _ = writeln!(out, "- **Batch normalization**: {n} layer(s), momentum and epsilon kept from training.");
            }
        }
        if let Some(optimizer) = &self.inventory.optimizer {
            let size = optimizer.bytes_in_source.map(|b| format!(" ({})", human_bytes(b))).unwrap_or_default();
            let _ = writeln!(
                out,
                "- **Optimizer**: the source model was trained with {}; its state{size} is not part of this package. Fine-tune with your own optimizer.",
                optimizer.class
            );
            if !optimizer.lost_regularization.is_empty() && self.trainable {
                let lost: Vec<String> =
                    optimizer.lost_regularization.iter().map(|r| format!("`{} = {}`", r.name, short_float(r.value))).collect();
                let _ = writeln!(
                    out,
                    "- **Warning — regularization lost**: training used optimizer-level regularization ({}) of {}, which a SavedModel cannot carry. \
                     Configure it on your own optimizer to fine-tune the way this model was trained.",
                    lost.join(", "),
                    optimizer.class
                );
            }
        }
        match &self.report.reusable.hub {
            Some(hub) if hub.trainable_weights > 0 => {
                let _ = writeln!(
                    out,
                    "- **Checked**: `hub.KerasLayer(trainable=True)` loaded it and one fine-tuning step moved {} of {} trainable weights.",
                    hub.moved, hub.trainable_weights
                );
            }
            Some(_) => {
                let _ = writeln!(out, "- **Checked**: `hub.KerasLayer` loaded it; it exposes no trainable weights.");
            }
            None => {}
        }
        out.push('\n');
    }

    fn size(&self, out: &mut String) {
        let _ = writeln!(out, "## Size\n");
        let params = self.facts.params;
        if params.total > 0 {
            let _ = writeln!(
                out,
                "- Parameters: {} ({} trainable, {} non-trainable)",
                crate::tf::inspect::group_digits(params.total),
                crate::tf::inspect::group_digits(params.trainable),
                crate::tf::inspect::group_digits(params.non_trainable)
            );
        } else if let Some(variables) = &self.report.native.variables {
            let _ = writeln!(out, "- Parameters: {} in {} variables", crate::tf::inspect::group_digits(variables.parameters), variables.count);
        }
        if let Some(size) = &self.report.native.size {
            let _ = writeln!(
                out,
                "- SavedModel: {} (`saved_model.pb` {}, `variables/` {})",
                human_bytes(size.total),
                human_bytes(size.saved_model_pb),
                human_bytes(size.variables)
            );
        }
        let _ = writeln!(out, "- Archive `{}`: {}", files::ARCHIVE, human_bytes(self.archive_bytes));
        out.push('\n');
    }
}

fn shape(spec: &Spec) -> String {
    match &spec.shape {
        None => "?".to_string(),
        Some(dims) => format!("[{}]", dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
    }
}

fn is_tag_id(value: &str) -> bool {
    !value.is_empty() && value.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn to_tag_id(value: &str) -> String {
    let mut out = String::new();
    for c in value.trim().chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_string()
}

/// `example` (`key = "value"`) is shown as code, `note` after it.
fn missing(key: &str, example: &str, note: &str) -> Warning {
    Warning {
        code: "missing-docs".into(),
        message: format!("no docs.{key}: model.md is incomplete without it"),
        help: Some(format!("add `{example}`{note} to the model's or the piece's `docs`")),
    }
}

fn unknown_tag<'a>(key: &str, value: &str, known: impl Iterator<Item = &'a str> + Clone) -> Warning {
    let suggestion = crate::suggestion::did_you_mean(value, known.clone());
    Warning {
        code: format!("unknown-{key}"),
        message: format!("docs.{key} = `{value}` is not a TF Hub {key} id exportctl knows"),
        help: Some(suggestion.unwrap_or_else(|| format!("known values: {}", known.collect::<Vec<_>>().join(", ")))),
    }
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
    warnings: Vec<String>,
}

#[derive(Serialize)]
struct Outputs {
    #[serde(rename = "model.tar.gz")]
    archive: Output,
    #[serde(rename = "model.md")]
    docs: Output,
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

    use serde_json::json;

    use super::*;
    use crate::steps::validate::{HubSummary, NativeReport, ReusableReport, SizeSummary};

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
            vec![
                "fingerprint.pb",
                "saved_model.pb",
                "variables/",
                "variables/variables.data-00000-of-00001",
                "variables/variables.index"
            ]
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

    #[test]
    fn licenses_map_to_tf_hub_tag_ids() {
        assert_eq!(license_tag("Apache-2.0"), Some("apache-2.0"));
        assert_eq!(license_tag("apache-2.0"), Some("apache-2.0"));
        assert_eq!(license_tag("MIT"), Some("mit"));
        assert_eq!(license_tag("CC-BY-4.0"), Some("cc-by-4.0"));
        assert_eq!(license_tag("GPL-3.0-only"), Some("gpl-3.0"));
        assert_eq!(license_tag("BSD-3-Clause"), Some("bsd-3-clause"));
        assert_eq!(license_tag("Apache 2"), None);
        assert_eq!(license_tag("proprietary"), None);
    }

    struct Fixture {
        inventory: Inventory,
        facts: SliceFacts,
        traced: TraceFacts,
        report: Report,
        docs: DocsSettings,
    }

    fn fixture() -> Fixture {
        let inventory: Inventory = serde_json::from_value(json!({
            "flavour": "keras3", "model_file": "model.keras",
            "optimizer": {"class": "Ftrl", "lost_regularization": [{"name": "l1_regularization_strength", "value": 0.01}], "bytes_in_source": 29020}
        }))
        .unwrap();
        let facts: SliceFacts = serde_json::from_value(json!({
            "model_file": "model.keras",
            "params": {"total": 3754, "trainable": 3626, "non_trainable": 128},
            "dropout_layers": 1, "batch_norm_layers": 1
        }))
        .unwrap();
        let traced: TraceFacts = serde_json::from_value(json!({
            "signature": {
                "inputs": [{"name": "features", "shape": [-1, 16], "dtype": "float32"}],
                "outputs": [{"name": "logits", "shape": [-1, 10], "dtype": "float32"}]
            },
            "variables": 11, "trainable_variables": 8, "regularization_losses": 1,
            "has_dropout": true, "has_batch_norm": true
        }))
        .unwrap();
        let report = Report {
            format: 1,
            ok: true,
            native: NativeReport {
                ok: true,
                checks: vec![],
                signature: None,
                variables: None,
                size: Some(SizeSummary { saved_model_pb: 40_000, variables: 16_000, assets: 0, total: 56_100 }),
            },
            reusable: ReusableReport {
                ok: true,
                checks: vec![],
                regularization_loss_values: vec![Some(0.004)],
                hub: Some(HubSummary { trainable_weights: 8, losses: 1, moved: 8 }),
            },
            lints: vec![],
        };
        let docs = DocsSettings {
            description: Some("A small classifier (logits).".into()),
            body: None,
            task: Some("text-classification".into()),
            license: Some("Apache-2.0".into()),
            dataset: None,
            network_architecture: None,
            language: Some("en".into()),
            fine_tunable: None,
        };
        Fixture { inventory, facts, traced, report, docs }
    }

    fn render(f: &Fixture, base: Option<&str>, body: Option<&str>) -> (String, Vec<Warning>) {
        render_piece(f, base, body, true)
    }

    fn render_piece(f: &Fixture, base: Option<&str>, body: Option<&str>, trainable: bool) -> (String, Vec<Warning>) {
        let handle = Handle { publisher: "acme", model: "vision", piece: "classifier", version: 3 };
        let batch_norm = BatchNorm { momentum: Some(0.99), epsilon: Some(0.001) };
        let docs = Docs {
            handle: &handle,
            asset_path: asset_path(base, &handle),
            settings: &f.docs,
            trainable,
            dropout: Some(0.1),
            batch_norm: &batch_norm,
            single_input: true,
            inventory: &f.inventory,
            facts: &f.facts,
            traced: &f.traced,
            report: &f.report,
            archive_bytes: 20_480,
            body,
        };
        docs.render()
    }

    #[test]
    fn model_md_starts_with_the_handle_description_and_metadata() {
        let f = fixture();
        let (md, warnings) = render(&f, None, Some("## Overview\n\nTrained on nothing.\n"));
        assert!(warnings.is_empty(), "{warnings:?}");
        let head: Vec<&str> = md.lines().take(9).collect();
        assert_eq!(
            head,
            vec![
                "# Module acme/vision-classifier/3",
                "A small classifier (logits).",
                "",
                "<!-- format: saved_model_2 -->",
                "<!-- asset-path: model.tar.gz -->",
                "<!-- task: text-classification -->",
                "<!-- fine-tunable: true -->",
                "<!-- license: apache-2.0 -->",
                "<!-- language: en -->",
            ]
        );
        for section in ["## Inputs and outputs", "## Usage", "## Fine-tuning", "## Size"] {
            assert!(md.contains(section), "{section} missing:\n{md}");
        }
        assert!(md.contains("| input | `features` | float32 | `[-1, 16]` |"), "{md}");
        assert!(md.contains("| output | `logits` | float32 | `[-1, 10]` |"), "{md}");
        assert!(md.contains("hub.KerasLayer(\"path/to/saved_model\", trainable=True)"), "{md}");
        assert!(md.contains("tf.saved_model.load(\"path/to/saved_model\")"), "{md}");
        assert!(md.contains("- **Trainable variables**: 8 of 11 variables (3,626 of 3,754 parameters)."), "{md}");
        assert!(md.contains("value at export: 0.004"), "{md}");
        assert!(
            md.contains("with `training=True`, dropout is active and batch normalization uses and updates batch statistics."),
            "{md}"
        );
        assert!(md.contains("- **Dropout**: 1 layer(s), rate set to 0.1 for consumers."), "{md}");
        assert!(md.contains("- **Batch normalization**: 1 layer(s), momentum 0.99, epsilon 0.001 set for consumers."), "{md}");
        assert!(md.contains("trained with Ftrl; its state (28.3 KiB) is not part of this package"), "{md}");
        assert!(md.contains("**Warning — regularization lost**"), "{md}");
        assert!(md.contains("`l1_regularization_strength = 0.01`"), "{md}");
        assert!(md.contains("moved 8 of 8 trainable weights"), "{md}");
        assert!(md.contains("- Parameters: 3,754 (3,626 trainable, 128 non-trainable)"), "{md}");
        assert!(md.contains("- Archive `model.tar.gz`: 20.0 KiB"), "{md}");
        assert!(md.ends_with("## Overview\n\nTrained on nothing.\n"), "{md}");
    }

    #[test]
    fn a_frozen_piece_says_so_and_does_not_warn_about_fine_tuning() {
        let mut f = fixture();
        f.traced.trainable_variables = 0;
        f.report.reusable.hub = Some(HubSummary { trainable_weights: 0, losses: 1, moved: 0 });
        let (md, _) = render_piece(&f, None, None, false);
        assert!(md.contains("<!-- fine-tunable: false -->"), "{md}");
        assert!(md.contains("hub.KerasLayer(\"path/to/saved_model\", trainable=False)"), "{md}");
        assert!(md.contains("- **Trainable variables**: none: this piece is exported frozen"), "{md}");
        assert!(md.contains("- **Checked**: `hub.KerasLayer` loaded it; it exposes no trainable weights."), "{md}");
        assert!(!md.contains("regularization lost"), "{md}");
    }

    #[test]
    fn the_training_flag_section_follows_what_the_model_has() {
        let mut f = fixture();
        f.traced.has_dropout = Some(false);
        f.traced.has_batch_norm = Some(false);
        let (md, _) = render(&f, None, None);
        assert!(md.contains("this model has no dropout or batch normalization, so both compute the same."), "{md}");
        f.traced.has_dropout = None;
        f.traced.has_batch_norm = None;
        let (md, _) = render(&f, None, None);
        assert!(md.contains("what it changes is up to the source SavedModel's own `__call__`."), "{md}");
    }

    #[test]
    fn asset_path_joins_the_base_url_with_the_archive_path() {
        let f = fixture();
        let (md, _) = render(&f, Some("https://storage.example.com/models/"), None);
        assert!(md.contains("<!-- asset-path: https://storage.example.com/models/vision/classifier/3/model.tar.gz -->"), "{md}");
        assert!(md.contains("hub.KerasLayer(\"https://storage.example.com/models/vision/classifier/3/model.tar.gz\""), "{md}");
    }

    #[test]
    fn unknown_or_missing_documentation_fields_are_linted() {
        let mut f = fixture();
        f.docs.license = Some("Apache 2".into());
        f.docs.task = Some("image-clasification".into());
        f.docs.description = None;
        f.docs.dataset = Some("ImageNet 2012".into());
        let (md, warnings) = render(&f, None, None);
        let codes: Vec<&str> = warnings.iter().map(|w| w.code.as_str()).collect();
        assert_eq!(codes, vec!["missing-docs", "unknown-task", "unknown-license", "unknown-tag"]);
        assert_eq!(warnings[1].help.as_deref(), Some("did you mean `image-classification`?"));
        assert_eq!(warnings[3].help.as_deref(), Some("write it as `imagenet-2012`"));
        assert!(md.contains("<!-- license: Apache 2 -->"), "{md}");
        f.docs.license = None;
        let (_, warnings) = render(&f, None, None);
        let missing = warnings.iter().find(|w| w.code == "missing-docs" && w.message.contains("docs.license")).unwrap();
        assert_eq!(missing.help.as_deref(), Some("add `license = \"Apache-2.0\"` (an SPDX id) to the model's or the piece's `docs`"));
    }

    #[test]
    fn the_same_facts_give_the_same_documentation() {
        let f = fixture();
        assert_eq!(render(&f, None, Some("body")).0, render(&f, None, Some("body")).0);
    }
}
