//! The validated manifest: every default applied, every inheritance resolved.
//!
//! `[defaults]` → `[models.X]` → `[[models.X.pieces]]` inheritance is resolved once, in
//! `resolve.rs`; nothing downstream looks at raw keys or asks "is this set here or there".
//! Spans are kept only where a later phase may still report an error about a value (layer
//! names, which are checked against the model once its export step has run).

use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

use super::document::Span;
use super::source::ManifestSource;

#[derive(Debug, Clone)]
pub struct Manifest {
    pub source: Arc<ManifestSource>,
    /// The directory holding the manifest: the project root. Every path is relative to it.
    pub root: PathBuf,
    pub project: Project,
    pub runtime: RuntimeSettings,
    pub cache: CacheSettings,
    pub kaggle: KaggleSettings,
    pub models: Vec<Model>,
}

/// `[kaggle]`: publishing to Kaggle Models.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KaggleSettings {
    /// The owner's slug: `owner`, or the project's publisher.
    pub owner: String,
    pub private: bool,
    /// `version-notes`; `None`: `Version <version>`.
    pub version_notes: Option<String>,
}

/// `[cache]`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CacheSettings {
    /// `max-size` in bytes; `None`: the default (or the environment's).
    pub max_size: Option<u64>,
    /// `remote`: the base URL of a shared cache.
    pub remote: Option<String>,
    /// `remote-upload`.
    pub remote_upload: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Project {
    pub name: String,
    pub version: u32,
    pub publisher: String,
    /// Relative to the project root.
    pub out_dir: PathBuf,
    pub asset_base_url: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RuntimeSettings {
    /// `None`: automatic discovery (`python = "auto"`).
    pub python: Option<PathBuf>,
    pub tensorflow: String,
    pub keras: KerasFlavour,
    pub timeout_secs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum KerasFlavour {
    Auto,
    Keras3,
    TfKeras,
}

impl KerasFlavour {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "auto" => Some(KerasFlavour::Auto),
            "keras3" => Some(KerasFlavour::Keras3),
            "tf-keras" => Some(KerasFlavour::TfKeras),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Model {
    pub name: String,
    pub name_span: Span,
    /// `title` (Kaggle Models); `None`: the name.
    pub title: Option<String>,
    pub source: Source,
    pub custom_objects: Vec<PathBuf>,
    pub keras: KerasFlavour,
    pub export: ExportSettings,
    /// Declared inputs, in manifest order; empty when they are to be inferred.
    pub inputs: Vec<InputSpec>,
    /// Ops the op scan refuses that this model may run anyway (`allow-ops`).
    pub allow_ops: Vec<String>,
    /// The documentation at the model's level (`[defaults]` then the model's `docs`), without a
    /// body: what the model as a whole is described with (the Kaggle model card).
    pub docs: DocsSettings,
    pub pieces: Vec<Piece>,
}

/// Where a model comes from. Paths are relative to the project root.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Source {
    /// A Keras 3 `.keras` or a tf_keras `.h5`/`.keras` file.
    KerasFile { path: PathBuf },
    /// A SavedModel directory (holding `saved_model.pb`).
    SavedModel { path: PathBuf },
    /// `file.py:function`, optionally with weights restored from a checkpoint.
    Builder { path: PathBuf, function: String, checkpoint: Option<PathBuf>, restore: Option<String> },
}

impl Source {
    /// The file or directory the source names.
    pub fn path(&self) -> &PathBuf {
        match self {
            Source::KerasFile { path } | Source::SavedModel { path } | Source::Builder { path, .. } => path,
        }
    }
}

/// What the export step reads of the model's settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExportSettings {
    pub include_optimizer: bool,
    pub dropout: Option<f64>,
    pub batch_norm: BatchNorm,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BatchNorm {
    pub momentum: Option<f64>,
    pub epsilon: Option<f64>,
}

impl BatchNorm {
    pub fn is_set(&self) -> bool {
        self.momentum.is_some() || self.epsilon.is_some()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InputSpec {
    pub name: String,
    /// `-1` for a dimension of any size.
    pub shape: Vec<i64>,
    pub dtype: String,
}

#[derive(Debug, Clone)]
pub struct Piece {
    pub name: String,
    pub name_span: Span,
    pub cut: Cut,
    pub trainable: bool,
    /// Dropout and batch-norm settings in force for this piece (model's, or the piece's own).
    pub dropout: Option<f64>,
    pub batch_norm: BatchNorm,
    pub validate: ValidateSettings,
    pub docs: DocsSettings,
    /// `Some` when `formats` has `litert`: the piece is also converted to LiteRT.
    pub litert: Option<LitertSettings>,
}

/// `[…litert]` of a piece whose `formats` has `litert`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LitertSettings {
    pub quantize: Quantize,
    pub atol: f64,
    pub rtol: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Quantize {
    None,
    Dynamic,
    Float16,
}

impl Quantize {
    pub fn parse(s: &str) -> Option<Quantize> {
        match s {
            "none" => Some(Quantize::None),
            "dynamic" => Some(Quantize::Dynamic),
            "float16" => Some(Quantize::Float16),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Quantize::None => "none",
            Quantize::Dynamic => "dynamic",
            Quantize::Float16 => "float16",
        }
    }

    /// The default (atol, rtol) of the LiteRT comparison. Measured on the examples: float32
    /// conversion differs from TensorFlow by rounding only (1e-6 on MobileNetV3's logits);
    /// float16 weights by about 1e-3; int8 weights by a few hundredths of a logit.
    pub fn default_tolerances(self) -> (f64, f64) {
        match self {
            Quantize::None => (1e-4, 1e-4),
            Quantize::Float16 => (1e-2, 1e-2),
            Quantize::Dynamic => (0.1, 0.1),
        }
    }

    /// How the quantization is described in documentation.
    pub fn describe(self) -> &'static str {
        match self {
            Quantize::None => "none (float32 weights and activations)",
            Quantize::Dynamic => "dynamic range (int8 weights, float32 activations)",
            Quantize::Float16 => "float16 weights (computed in float32 on CPU)",
        }
    }
}

/// Which part of the model a piece is: layer names with the spans they were written at.
#[derive(Debug, Clone, Default)]
pub struct Cut {
    pub from: Option<LayerRef>,
    /// Empty: the model's outputs.
    pub to: Vec<LayerRef>,
}

impl Cut {
    pub fn is_whole_model(&self) -> bool {
        self.from.is_none() && self.to.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerRef {
    pub name: String,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ValidateSettings {
    pub golden: GoldenInputs,
    pub atol: f64,
    pub rtol: f64,
    pub fine_tune_step: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum GoldenInputs {
    /// Seeded random inputs.
    Random { batch: u32, seed: u64 },
    /// Arrays from an `.npz` file (relative to the project root).
    Samples { path: PathBuf },
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DocsSettings {
    pub description: Option<String>,
    pub body: Option<PathBuf>,
    pub task: Option<String>,
    pub license: Option<String>,
    pub dataset: Option<String>,
    pub network_architecture: Option<String>,
    pub language: Option<String>,
    pub fine_tunable: Option<bool>,
    /// `training-data`: one sentence, or a list of datasets.
    pub training_data: Vec<String>,
    pub evaluation: Option<String>,
    pub limitations: Option<String>,
    pub citation: Option<String>,
}

impl Manifest {
    pub fn model(&self, name: &str) -> Option<&Model> {
        self.models.iter().find(|m| m.name == name)
    }

    pub fn out_dir(&self) -> PathBuf {
        self.root.join(&self.project.out_dir)
    }

    pub fn piece_count(&self) -> usize {
        self.models.iter().map(|m| m.pieces.len()).sum()
    }
}

impl Model {
    pub fn piece(&self, name: &str) -> Option<&Piece> {
        self.pieces.iter().find(|p| p.name == name)
    }
}
