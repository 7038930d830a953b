//! The steps of a build (export, slice, trace, validate, package), run for real: [`TfSteps`] implements the engine's
//! [`StepRunner`] seam.
//!
//! | step | reads (its key: settings + files) | runs in | writes into its cache entry |
//! |---|---|---|---|
//! | export | source kind/paths, `keras`, `include-optimizer`, `dropout`, `batch-norm`; the source file or directory, checkpoint files, custom objects | worker `export` | `recipe.json` (how to build the model again), `inventory.json` (layers, parameters, optimizer facts), `code/`, `sources.json` (digests of what it read) |
//! | slice | the piece's `from`/`to`, its dropout/batch-norm | worker `slice` | `piece.json` (the cut), `slice.json` (its inputs, outputs, facts) |
//! | trace | `trainable`, declared inputs, golden inputs (`batch`+`seed`, or the samples file) | worker `trace` (the piece built from the recipe and the cut) | `saved_model/`, `golden/`, `trace.json`, `sources.json` |
//! | validate | tolerances, `fine-tune-step`, `trainable`, `include-optimizer`, declared inputs, dropout/batch-norm (for lints) | native (Rust, C API) + worker `validate` | `report.json` |
//! | convert-litert | `litert.quantize`, the LiteRT version | worker `convert_litert` (TensorFlow's converter) | `model.tflite` |
//! | validate-litert | `litert.atol`/`rtol`, the LiteRT version | worker `run_litert` (the LiteRT interpreter) + Rust comparison | `litert-report.json` |
//! | package | project handle fields, the piece's docs settings, dropout/batch-norm/trainable (for the docs), `[kaggle]`, the model's title, docs and pieces (for the Kaggle model card); the docs body | Rust | `model.tar.gz`, `model.md`, `build.json`, `kaggle/model-instance-metadata.json`, `kaggle-model/model-metadata.json` |
//!
//! The LiteRT steps exist only for pieces whose `formats` has `litert` (see `plan`); nothing
//! of the LiteRT settings or version enters the other steps' keys, so asking for LiteRT, or
//! changing its quantization, never rebuilds a SavedModel.
//!
//! **Only what a step reads goes into its key.** Each `inputs()` returns the canonical JSON of
//! exactly the settings that step uses, so editing a piece's docs re-runs its package and
//! nothing else, and changing a tolerance re-runs validate (and package, whose input changed)
//! but never trace.
//!
//! **Python starts late, libtensorflow too.** The worker is created idle (a [`Worker`] spawns
//! its process on the first request) and shared by every Python step behind one mutex: steps
//! that run in parallel queue for it, which is what one Python process can do anyway. The
//! native library is loaded on the first validate. A build whose steps all come from the cache
//! therefore never starts Python nor loads libtensorflow.
//!
//! **Paths.** The worker gets absolute paths (it runs with its own working directory); what the
//! steps write (JSON, docs, provenance) holds only paths relative to the project root.

mod convert_litert;
mod docs;
mod export;
mod kaggle_card;
mod litert;
mod package;
mod slice;
mod trace;
pub mod validate;
pub mod validate_litert;

pub use export::Spec;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::help_text;
use crate::exec::{StepContext, StepError, StepInputs, StepOutcome, StepRunner};
use crate::manifest::{LayerRef, Manifest, ManifestError, ManifestErrors, Model, Piece};
use crate::plan::{StepId, StepKind};
use crate::runtime::pool::WorkerPool;
use crate::runtime::worker::WorkerOptions;
use crate::runtime::{self, Provider, Runtime, Worker, WorkerError};
use crate::tf::{Native, TfLogs};

pub use docs::license_tag;
pub use package::{archive_saved_model, archive_saved_model_at, ArchiveSummary, ARCHIVE_LEVEL};
pub use validate::{Check, Report};

/// What each step writes, by name: the next steps read these.
pub mod files {
    /// export: the worker's layer inventory and model facts.
    pub const INVENTORY: &str = "inventory.json";
    /// export, trace: digests of the project files the step read (for `build.json`).
    pub const SOURCES: &str = "sources.json";
    /// slice: the worker's description of the piece.
    pub const SLICE: &str = "slice.json";
    /// trace: the worker's description of the traced SavedModel.
    pub const TRACE: &str = "trace.json";
    pub const SAVED_MODEL: &str = "saved_model";
    pub const GOLDEN: &str = "golden";
    /// validate: both loaders' checks and the lints.
    pub const REPORT: &str = "report.json";
    pub const ARCHIVE: &str = "model.tar.gz";
    /// convert-litert, package: the LiteRT flatbuffer.
    pub const TFLITE: &str = "model.tflite";
    /// validate-litert: its checks, the ops, the differences.
    pub const LITERT_REPORT: &str = "litert-report.json";
    pub const DOCS: &str = "model.md";
    /// package: the piece as a variation on Kaggle Models (`dist/<model>/<piece>/<version>/kaggle/`).
    pub const KAGGLE_VARIATION: &str = "kaggle/model-instance-metadata.json";
    /// package: the model on Kaggle Models (`dist/<model>/kaggle/`), the same for every piece.
    pub const KAGGLE_MODEL: &str = "kaggle-model/model-metadata.json";
    pub const BUILD: &str = "build.json";
}

/// The real steps: Python TensorFlow through the workers, native TensorFlow through `crate::tf`.
pub struct TfSteps {
    manifest: Arc<Manifest>,
    runtime: Arc<Provider>,
    pool: Arc<WorkerPool>,
    native: OnceLock<Result<&'static Native, StepError>>,
    logs: TfLogs,
}

impl TfSteps {
    /// Steps for `manifest`, running in `runtime` with one worker. Nothing starts until a
    /// step runs. `verbose` as `-v`: 1 shows the worker's log, 2 TensorFlow's own logs too.
    pub fn new(manifest: Arc<Manifest>, runtime: Runtime, verbose: u8) -> TfSteps {
        let options = WorkerOptions { timeout: Duration::from_secs(manifest.runtime.timeout_secs), verbose };
        let runtime = Arc::new(Provider::ready(runtime));
        let pool = Arc::new(WorkerPool::lazy(runtime.clone(), options, 1));
        TfSteps::with_pool(manifest, runtime, pool, verbose)
    }

    /// Steps sharing existing workers: `--watch` keeps them warm across manifest reloads.
    /// `runtime` is found when a step first needs it.
    pub fn with_pool(manifest: Arc<Manifest>, runtime: Arc<Provider>, pool: Arc<WorkerPool>, verbose: u8) -> TfSteps {
        let logs = if verbose >= 2 { TfLogs::Shown } else { TfLogs::Quiet };
        TfSteps { manifest, runtime, pool, native: OnceLock::new(), logs }
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The runtime: its identity is known; the runtime itself is found on first use.
    pub fn runtime(&self) -> &Provider {
        &self.runtime
    }

    /// The workers (to keep them warm, or to see whether one was started).
    pub fn pool(&self) -> &Arc<WorkerPool> {
        &self.pool
    }

    /// Whether the native library has been loaded by a step of this runner.
    pub fn native_loaded(&self) -> bool {
        self.native.get().is_some()
    }

    /// Sends one request to a worker; `step` names what runs, for messages. The time spent
    /// waiting for a worker, starting it, and the worker's own phases go into `clock`.
    fn call(&self, method: &str, params: Value, step: &StepId, clock: &mut Clock) -> Result<Value, WorkerError> {
        self.with_worker(step, clock, |worker, clock| {
            recycle_if_bloated(worker, step.kind);
            call_worker(worker, method, params, &step.to_string(), clock)
        })
    }

    /// Runs `f` on a worker, preferring the one that served `step`'s piece or model before;
    /// starts the other workers importing TensorFlow meanwhile.
    fn with_worker<T>(&self, step: &StepId, clock: &mut Clock, f: impl FnOnce(&mut Worker, &mut Clock) -> T) -> T {
        let mut affinity = Vec::new();
        if let Some(piece) = &step.piece {
            affinity.push(format!("{}/{piece}", step.model));
        }
        affinity.push(step.model.clone());
        self.pool.with_worker(&affinity, |worker| {
            clock.lap("wait for worker");
            // This step has its worker; the others start importing TensorFlow meanwhile.
            self.pool.prewarm();
            f(worker, clock)
        })
    }

    /// The native TensorFlow library, loaded on first use.
    fn native(&self) -> Result<&'static Native, StepError> {
        self.native
            .get_or_init(|| {
                let runtime = self.runtime.get().map_err(|e| StepError::from_diagnostic(&e))?;
                let dir = runtime.require_tensorflow_dir().map_err(|e| StepError::from_diagnostic(&e))?;
                Native::load(dir, &runtime::home().join("native"), self.logs).map_err(|e| StepError::from_diagnostic(&e))
            })
            .clone()
    }

    /// The model and piece a step belongs to.
    fn target<'a>(&'a self, step: &'a StepId) -> Result<Target<'a>, StepError> {
        let model =
            self.manifest.model(&step.model).ok_or_else(|| StepError::new(format!("the manifest has no model `{}`", step.model)))?;
        let piece = match &step.piece {
            None => None,
            Some(name) => Some(
                model.piece(name).ok_or_else(|| StepError::new(format!("model `{}` has no piece `{name}` in the manifest", model.name)))?,
            ),
        };
        if matches!(step.kind, StepKind::ConvertLitert | StepKind::ValidateLitert) && piece.is_some_and(|p| p.litert.is_none()) {
            return Err(StepError::new(format!(
                "{step}: piece `{}` does not have `litert` in its formats",
                step.piece.as_deref().unwrap_or_default()
            ))
            .with_help("add it: formats = [\"saved-model\", \"litert\"]"));
        }
        Ok(Target { step, model, piece })
    }
}

impl StepRunner for TfSteps {
    fn inputs(&self, step: &StepId) -> Result<StepInputs, StepError> {
        let target = self.target(step)?;
        Ok(match step.kind {
            StepKind::Export => export::inputs(&target, &self.manifest.root),
            StepKind::Slice => slice::inputs(&target),
            StepKind::Trace => trace::inputs(&target),
            StepKind::Validate => validate::inputs(&target),
            StepKind::ConvertLitert => convert_litert::inputs(&target, &self.runtime.litert_identity()),
            StepKind::ValidateLitert => validate_litert::inputs(&target, &self.runtime.litert_identity()),
            StepKind::Package => package::inputs(&self.manifest, &target),
        })
    }

    fn run(&self, step: &StepId, cx: &StepContext<'_>) -> Result<StepOutcome, StepError> {
        if cx.cancelled.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(StepError::new("cancelled"));
        }
        let target = self.target(step)?;
        let dirs = Dirs::new(cx)?;
        match step.kind {
            StepKind::Export => export::run(self, &target, &dirs),
            StepKind::Slice => slice::run(self, &target, &dirs, cx),
            StepKind::Trace => trace::run(self, &target, &dirs, cx),
            StepKind::Validate => validate::run(self, &target, &dirs, cx),
            StepKind::ConvertLitert => convert_litert::run(self, &target, &dirs, cx),
            StepKind::ValidateLitert => validate_litert::run(self, &target, &dirs, cx),
            StepKind::Package => package::run(self, &target, &dirs, cx),
        }
    }
}

/// A worker keeps what its last steps allocated when TensorFlow's or glibc's allocators do
/// not give it back, and a worker holding a big model's leftovers would stack the next model on
/// top of them. It is replaced by a fresh one (TensorFlow imported again, a few seconds) before
/// a validate — the step that needs the most — when it holds over 1 GB, and before any other
/// step over 2 GB. Small models never come near: their workers live for the whole build.
pub(crate) fn recycle_if_bloated(worker: &mut Worker, kind: StepKind) {
    const GB: u64 = 1 << 30;
    let limit = if kind == StepKind::Validate { GB } else { 2 * GB };
    worker.recycle_above(limit);
}

/// Sends one request to `worker`, recording its phases in `clock`: the process start (when
/// this request started one) and the phases the worker reports (`result.phases`).
pub(crate) fn call_worker(worker: &mut Worker, method: &str, params: Value, label: &str, clock: &mut Clock) -> Result<Value, WorkerError> {
    let starts = worker.starts;
    let started = std::time::Instant::now();
    let mut result = worker.call(method, params, label)?;
    let total = started.elapsed();
    let reported = result.as_object_mut().and_then(|o| o.shift_remove("phases"));
    if let Some(peak) = result.as_object_mut().and_then(|o| o.shift_remove("peak_memory")).and_then(|v| v.as_u64()) {
        clock.peak_memory = Some(clock.peak_memory.unwrap_or(0).max(peak));
    }
    if worker.starts != starts {
        clock.add("worker start", worker.last_start.unwrap_or_default());
    }
    let mut accounted = worker.last_start.filter(|_| worker.starts != starts).unwrap_or_default();
    if let Some(Value::Object(phases)) = reported {
        for (name, ms) in phases {
            let ms = ms.as_u64().unwrap_or(0);
            accounted += Duration::from_millis(ms);
            clock.add(&name, Duration::from_millis(ms));
        }
    }
    // What the worker did not account for: the protocol, JSON, and Python's own start.
    clock.add("worker overhead", total.saturating_sub(accounted));
    clock.reset();
    Ok(result)
}

/// Where a step's time goes: named phases, in the order they ran (`"phases"` in the
/// `step-finished` event, shown with `-v`).
pub struct Clock {
    phases: crate::exec::Phases,
    mark: std::time::Instant,
    /// The worker's peak resident memory during the step, when it reports one.
    pub peak_memory: Option<u64>,
}

impl Clock {
    pub fn start() -> Clock {
        Clock { phases: crate::exec::Phases::new(), mark: std::time::Instant::now(), peak_memory: None }
    }

    /// Ends the current phase: the time since the last lap goes to `name`.
    pub fn lap(&mut self, name: &str) {
        let elapsed = self.mark.elapsed();
        self.add(name, elapsed);
        self.reset();
    }

    /// Adds `elapsed` to `name` (phases met twice add up).
    pub fn add(&mut self, name: &str, elapsed: Duration) {
        *self.phases.entry(name.to_string()).or_insert(0) += elapsed.as_millis() as u64;
    }

    /// Starts timing the next phase now.
    pub fn reset(&mut self) {
        self.mark = std::time::Instant::now();
    }

    pub fn finish(self) -> crate::exec::Phases {
        self.phases
    }

    /// The phases, and the peak memory as the outcome records them.
    pub fn outcome(self, warnings: Vec<crate::exec::Warning>, summary: String) -> StepOutcome {
        StepOutcome { warnings, summary, peak_memory: self.peak_memory, phases: self.phases }
    }
}

/// A step's model and piece in the manifest.
struct Target<'a> {
    step: &'a StepId,
    model: &'a Model,
    piece: Option<&'a Piece>,
}

impl Target<'_> {
    /// The piece of a piece step (slice, trace, validate, package).
    fn piece(&self) -> &Piece {
        self.piece.unwrap_or_else(|| panic!("{} is not a piece step", self.step))
    }

    /// The LiteRT settings of a LiteRT step's piece.
    fn litert(&self) -> &crate::manifest::LitertSettings {
        self.piece().litert.as_ref().unwrap_or_else(|| panic!("{} belongs to a piece without litert", self.step))
    }

    /// The id of another step of the same piece (or of the model's export).
    fn sibling(&self, kind: StepKind) -> StepId {
        let piece = if kind == StepKind::Export { None } else { self.step.piece.clone() };
        StepId { model: self.step.model.clone(), piece, kind }
    }
}

/// The directories a running step uses, made absolute (the worker runs elsewhere).
struct Dirs {
    root: PathBuf,
    out: PathBuf,
}

impl Dirs {
    fn new(cx: &StepContext<'_>) -> Result<Dirs, StepError> {
        Ok(Dirs { root: absolute(cx.root)?, out: absolute(cx.out)? })
    }

    /// A project file, absolute.
    fn project(&self, relative: &Path) -> PathBuf {
        self.root.join(relative)
    }
}

/// The output directory of dependency `kind` of the same piece, absolute.
fn dep_dir(target: &Target<'_>, cx: &StepContext<'_>, kind: StepKind) -> Result<PathBuf, StepError> {
    absolute(cx.dep(&target.sibling(kind)))
}

fn absolute(path: &Path) -> Result<PathBuf, StepError> {
    std::path::absolute(path).map_err(|e| StepError::new(format!("cannot resolve {}: {e}", path.display())))
}

/// Refuses the SavedModel at `dir` when its code reaches outside it (files, other hosts,
/// Python: see `tf::scan`), before anything loads or runs it. `allowed` ops go through.
pub(crate) fn refuse_untrusted_ops(dir: &Path, allowed: &[String], what: &str) -> Result<(), StepError> {
    let path = dir.join(crate::tf::saved_model_pb::SAVED_MODEL_PB);
    let Ok(bytes) = std::fs::read(&path) else {
        return Ok(()); // not a SavedModel: the loader says so with its own words
    };
    let scan = crate::tf::scan::scan(&bytes)
        .map_err(|e| StepError::new(format!("{what} cannot be scanned: {} is malformed: {e}", path.display())))?;
    let refused = scan.refused(allowed);
    if refused.is_empty() {
        return Ok(());
    }
    let mut ops: Vec<&str> = refused.iter().map(|f| f.op.as_str()).collect();
    ops.sort_unstable();
    ops.dedup();
    Err(StepError::new(format!(
        "{what} runs ops that reach outside the model, so nothing was run: {}",
        crate::tf::scan::Scan::describe(&refused)
    ))
    .with_help(format!(
        "a SavedModel is a program: these ops read or write files, talk to other hosts or run Python. If you trust this model, \
         let them through with `allow-ops = [{}]` in the model's table (or `--allow-op` for `exportctl validate`)",
        ops.iter().map(|o| format!("\"{o}\"")).collect::<Vec<_>>().join(", ")
    )))
}

/// Reads a JSON file a step (or the worker) wrote.
fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, StepError> {
    let text = std::fs::read_to_string(path).map_err(|e| StepError::new(format!("cannot read {}: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| {
        StepError::new(format!("{} is not what this version of exportctl wrote: {e}", path.display()))
            .with_help("run `exportctl clean --cache` and build again")
    })
}

/// Writes `value` as pretty JSON with a final newline: stable bytes for the same value.
fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), StepError> {
    let mut text = serde_json::to_string_pretty(value).expect("step records serialise");
    text.push('\n');
    std::fs::write(path, text).map_err(|e| StepError::new(format!("cannot write {}: {e}", path.display())))
}

/// Canonical JSON of what a step reads.
fn settings<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).expect("settings serialise")
}

/// A project file a step read, with its digest (provenance; never absolute).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDigest {
    /// Relative to the project root, `/`-separated.
    pub path: String,
    pub bytes: u64,
    pub digest: String,
}

/// Digests of `paths` (relative to `root`); directories are expanded into their files, sorted.
fn digest_files(root: &Path, paths: &[PathBuf]) -> Result<Vec<FileDigest>, StepError> {
    let mut files = Vec::new();
    for path in paths {
        collect_files(root, path, &mut files)?;
    }
    files.sort();
    files.dedup();
    files
        .into_iter()
        .map(|relative| {
            let full = root.join(&relative);
            let digest = crate::hash::digest_file(&full).map_err(|e| StepError::new(format!("cannot read {}: {e}", full.display())))?;
            let bytes = std::fs::metadata(&full).map(|m| m.len()).unwrap_or(0);
            Ok(FileDigest { path: slash_path(&relative), bytes, digest })
        })
        .collect()
}

fn collect_files(root: &Path, relative: &Path, out: &mut Vec<PathBuf>) -> Result<(), StepError> {
    let full = root.join(relative);
    let meta = std::fs::metadata(&full).map_err(|e| StepError::new(format!("cannot read {}: {e}", full.display())))?;
    if meta.is_dir() {
        let entries = std::fs::read_dir(&full).map_err(|e| StepError::new(format!("cannot list {}: {e}", full.display())))?;
        for entry in entries {
            let entry = entry.map_err(|e| StepError::new(format!("cannot list {}: {e}", full.display())))?;
            collect_files(root, &relative.join(entry.file_name()), out)?;
        }
    } else {
        out.push(relative.to_path_buf());
    }
    Ok(())
}

/// A relative path with `/` separators, as it is written in records.
fn slash_path(path: &Path) -> String {
    path.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/")
}

/// Turns a worker failure into a step error. Layer-name errors of slice point at the
/// manifest (`file:line:col`, the line, carets) with the worker's did-you-mean.
fn worker_error(error: WorkerError, target: &Target<'_>, manifest: &Manifest) -> StepError {
    if let WorkerError::Python { kind, message, data, .. } = &error {
        if let Some(piece) = target.piece {
            if let Some(located) = layer_error(kind, message, data, target.model, piece, manifest) {
                return located;
            }
        }
        // The worker's own codes are mistakes a user can fix: the message says what, without
        // a traceback. Any other Python exception keeps its type and traceback.
        let ours = matches!(
            kind.as_str(),
            "BadParams"
                | "BadSource"
                | "CheckpointMismatch"
                | "UnsupportedModel"
                | "MissingPackage"
                | "InputMismatch"
                | "NeedInputs"
                | "BadSamples"
                | "UnsupportedCut"
                | "UnknownLayer"
                | "UnalignedCut"
                | "BackendSpecific"
                | "LitertUnsupportedOps"
                | "LitertDynamicShape"
                | "LitertConversion"
                | "LitertSignature"
        );
        let mut help: Vec<String> = Vec::new();
        if let Some(suggestions) = data.get("suggestions").and_then(Value::as_array) {
            let names: Vec<String> = suggestions.iter().filter_map(Value::as_str).map(|s| format!("`{s}`")).collect();
            if !names.is_empty() {
                help.push(format!("did you mean {}?", names.join(" or ")));
            }
        }
        if ours {
            if let Some(hint) = data.get("hint").and_then(Value::as_str) {
                help.push(hint.to_string());
            }
        } else if let Some(more) = help_text(&error) {
            help.push(more);
        }
        let what = if ours { message.clone() } else { format!("{kind}: {message}") };
        let mut step_error = StepError::new(format!("model `{}`: {what}", target.model.name));
        if !help.is_empty() {
            step_error = step_error.with_help(help.join("\n"));
        }
        return step_error;
    }
    StepError::from_diagnostic(&error)
}

/// `UnknownLayer` / `UnalignedCut` / `UnsupportedCut` as a manifest diagnostic at the layer name.
fn layer_error(kind: &str, message: &str, data: &Value, model: &Model, piece: &Piece, manifest: &Manifest) -> Option<StepError> {
    let field = |key: &str| data.get(key).and_then(Value::as_str);
    let find_to = |name: &str| piece.cut.to.iter().find(|r| r.name == name);
    let find_from = |name: &str| piece.cut.from.as_ref().filter(|r| r.name == name);
    let (layer, code, text, help): (&LayerRef, &'static str, String, Option<String>) = match kind {
        "UnknownLayer" => {
            let name = field("name")?;
            let which = field("kind").unwrap_or("to");
            let layer =
                if which == "from" { find_from(name) } else { find_to(name) }.or_else(|| find_to(name)).or_else(|| find_from(name))?;
            let suggestions: Vec<&str> =
                data.get("suggestions").and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
            let help = match suggestions.as_slice() {
                [] => Some(format!("`exportctl inspect` or the export's inventory lists the layers of model `{}`", model.name)),
                [one] => Some(format!("did you mean `{one}`?")),
                many => Some(format!("did you mean {}?", many.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", "))),
            };
            (layer, "unknown-layer", format!("model `{}` has no layer `{name}` (`{which}` of piece `{}`)", model.name, piece.name), help)
        }
        "UnalignedCut" => {
            let output = field("output");
            let from = field("from");
            let layer = output.and_then(find_to).or_else(|| from.and_then(find_from)).or(piece.cut.to.first())?;
            let path: Vec<&str> =
                data.get("path").and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
            let help = Some(if path.is_empty() {
                "every path from a `to` layer back to the model's inputs must pass through `from`".to_string()
            } else {
                format!(
                    "every path from a `to` layer back to the model's inputs must pass through `from`; this one does not: {}",
                    path.join(" <- ")
                )
            });
            (layer, "unaligned-cut", format!("the cut of piece `{}` is not aligned with layers: {message}", piece.name), help)
        }
        "UnsupportedCut" => {
            let layer = piece.cut.from.as_ref().or(piece.cut.to.first())?;
            (layer, "unsupported-cut", message.to_string(), Some("remove `from`/`to` to export the whole model, or build the piece with a builder function (`source = \"file.py:function\"`)".into()))
        }
        _ => return None,
    };
    let diagnostic = ManifestError::new(code, layer.span.clone(), text.clone()).label("here").maybe_help(None);
    let rendered = ManifestErrors { source: manifest.source.clone(), errors: vec![diagnostic] }.render_plain();
    let (line, col) = manifest.source.line_col(layer.span.start);
    // The first rendered line repeats the message; keep the excerpt (source line and carets).
    let excerpt: Vec<&str> = rendered.lines().skip(1).collect();
    let mut error = StepError::new(format!("{}:{line}:{col}: {text}\n{}", manifest.source.name, excerpt.join("\n")));
    if let Some(help) = help {
        error = error.with_help(help);
    }
    Some(error)
}

/// Converts the worker's free-text warnings into step warnings.
fn worker_warnings(code: crate::contract::Lint, warnings: &[String]) -> Vec<crate::exec::Warning> {
    warnings.iter().map(|message| crate::exec::Warning { code, message: message.clone(), help: None }).collect()
}

/// A float the way people write it, 4 significant digits: `0.004`, `0.99`, `1e-5`.
pub(crate) fn short_float(value: f64) -> String {
    if value == 0.0 || !value.is_finite() {
        return value.to_string();
    }
    if value.abs() < 1e-4 || value.abs() >= 1e6 {
        let text = format!("{value:.3e}");
        let (mantissa, exponent) = text.split_once('e').expect("exponent notation");
        let mantissa = mantissa.trim_end_matches('0').trim_end_matches('.');
        return format!("{mantissa}e{exponent}");
    }
    let digits = (3 - value.abs().log10().floor() as i32).max(0) as usize; // 4 significant digits
    let text = format!("{value:.digits$}");
    let text = if text.contains('.') { text.trim_end_matches('0').trim_end_matches('.') } else { &text };
    text.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        assert_eq!(crate::tf::inspect::group_digits(0), "0");
        assert_eq!(crate::tf::inspect::group_digits(999), "999");
        assert_eq!(crate::tf::inspect::group_digits(1000), "1,000");
        assert_eq!(crate::tf::inspect::group_digits(1_527_338), "1,527,338");
    }

    #[test]
    fn floats_are_written_as_people_write_them() {
        assert_eq!(short_float(0.004), "0.004");
        assert_eq!(short_float(0.1), "0.1");
        assert_eq!(short_float(0.99), "0.99");
        assert_eq!(short_float(0.001), "0.001");
        assert_eq!(short_float(0.0024959654547274113), "0.002496");
        assert_eq!(short_float(2.0), "2");
        assert_eq!(short_float(1e-5), "1e-5");
        assert_eq!(short_float(2.5e-7), "2.5e-7");
        assert_eq!(short_float(0.0), "0");
    }
}
