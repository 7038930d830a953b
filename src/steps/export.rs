//! export (per model): the source, loaded by the worker once, with the dropout/batch-norm
//! defaults applied: the layer inventory every later step and the docs read, what its optimizer
//! held (left out of every package), and the recipe slice and trace build the model again
//! from (`recipe.json`: the source, its flavour, the user code copied into `code/`). No copy of
//! the weights is kept: the source's digests (`sources.json`) stand for them in every key.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{files, settings, worker_error, worker_warnings, write_json, Clock, Dirs, FileDigest, Target, TfSteps};
use crate::exec::{StepError, StepInputs, StepOutcome};
use crate::manifest::{BatchNorm, Model, Source};
use crate::tf::inspect::human_bytes;

/// The export's layer inventory and model facts: the worker's `export` result, as it writes it
/// to `inventory.json`. Only the fields exportctl reads are declared.
#[derive(Debug, Clone, Deserialize)]
pub struct Inventory {
    pub flavour: crate::contract::Flavour,
    #[serde(default)]
    pub layers: Vec<LayerInfo>,
    #[serde(default)]
    pub params: Option<Params>,
    #[serde(default)]
    pub optimizer: Option<OptimizerFacts>,
    #[serde(default)]
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LayerInfo {
    pub name: String,
    #[serde(rename = "class")]
    pub class: String,
    #[serde(default)]
    pub inbound: Vec<String>,
}

/// A tensor as the worker describes it; outputs of export and slice say their activation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Spec {
    pub name: String,
    pub shape: Option<Vec<i64>>,
    pub dtype: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activation: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Params {
    pub total: u64,
    pub trainable: u64,
    pub non_trainable: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct OptimizerFacts {
    #[serde(rename = "class")]
    pub class: String,
    #[serde(default)]
    pub lost_regularization: Vec<LostRegularization>,
    #[serde(default)]
    pub bytes_in_source: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LostRegularization {
    pub name: String,
    pub value: f64,
}

/// What the export step reads of the manifest.
#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct Settings<'a> {
    source: &'a Source,
    custom_objects: &'a [PathBuf],
    keras: crate::manifest::KerasFlavour,
    include_optimizer: bool,
    dropout: Option<f64>,
    batch_norm: &'a BatchNorm,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    allow_ops: &'a [String],
}

pub(super) fn inputs(target: &Target<'_>, root: &Path) -> StepInputs {
    let model = target.model;
    let settings = settings(&Settings {
        source: &model.source,
        custom_objects: &model.custom_objects,
        keras: model.keras,
        include_optimizer: model.export.include_optimizer,
        dropout: model.export.dropout,
        batch_norm: &model.export.batch_norm,
        allow_ops: if matches!(model.source, Source::SavedModel { .. }) { &model.allow_ops } else { &[] },
    });
    StepInputs { settings, files: source_files(model, root) }
}

/// The project files the export reads: the source (file or directory), a builder's checkpoint
/// (`prefix.index` + `prefix.data-*`, or the whole directory), the custom-object files.
pub(super) fn source_files(model: &Model, root: &Path) -> Vec<PathBuf> {
    let mut paths = vec![model.source.path().clone()];
    if let Source::Builder { checkpoint: Some(checkpoint), .. } = &model.source {
        paths.extend(checkpoint_files(root, checkpoint));
    }
    paths.extend(model.custom_objects.iter().cloned());
    paths
}

/// A checkpoint prefix names `prefix.index` and `prefix.data-NNNNN-of-NNNNN`; a directory is
/// read whole (the worker picks its latest checkpoint).
fn checkpoint_files(root: &Path, checkpoint: &Path) -> Vec<PathBuf> {
    if root.join(checkpoint).is_dir() {
        return vec![checkpoint.to_path_buf()];
    }
    let Some(prefix) = checkpoint.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return vec![checkpoint.to_path_buf()];
    };
    let parent = checkpoint.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut found: Vec<PathBuf> = std::fs::read_dir(root.join(&parent))
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| name == &format!("{prefix}.index") || name.starts_with(&format!("{prefix}.data-")))
                .map(|name| parent.join(name))
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    if found.is_empty() {
        // Let the worker say that the checkpoint is missing; the key still names it.
        found.push(checkpoint.with_file_name(format!("{prefix}.index")));
    }
    found
}

pub(super) fn run(steps: &TfSteps, target: &Target<'_>, dirs: &Dirs) -> Result<StepOutcome, StepError> {
    let model = target.model;
    if let Source::SavedModel { path } = &model.source {
        // Loading it runs its restore and init functions: scan it first.
        super::refuse_untrusted_ops(&dirs.project(path), &model.allow_ops, &format!("the source of model `{}`", model.name))?;
    }
    let source = match &model.source {
        Source::KerasFile { path } => json!({"kind": "keras-file", "path": dirs.project(path)}),
        Source::SavedModel { path } => json!({"kind": "saved-model", "path": dirs.project(path)}),
        Source::Builder { path, function, checkpoint, restore } => json!({
            "kind": "builder",
            "path": dirs.project(path),
            "function": function,
            "checkpoint": checkpoint.as_ref().map(|c| dirs.project(c)),
            "restore": restore,
        }),
    };
    let params = json!({
        "source": source,
        "custom_objects": model.custom_objects.iter().map(|p| dirs.project(p)).collect::<Vec<_>>(),
        "keras": keras_name(model.keras),
        "include_optimizer": model.export.include_optimizer,
        "dropout": model.export.dropout,
        "batch_norm": batch_norm_param(&model.export.batch_norm),
        "seed": 0,
        "root": dirs.root,
        "out_dir": dirs.out,
    });
    let mut clock = Clock::start();
    let result = steps.call("export", params, target.step, &mut clock).map_err(|e| worker_error(e, target, steps.manifest()))?;
    let inventory: Inventory =
        serde_json::from_value(result).map_err(|e| StepError::new(format!("the worker's export result is not understood: {e}")))?;

    let sources: Vec<FileDigest> = super::digest_files(&dirs.root, &source_files(model, &dirs.root))?;
    write_json(&dirs.out.join(files::SOURCES), &sources)?;

    clock.lap("records");
    Ok(clock.outcome(worker_warnings(crate::contract::Lint::ExportNote, &inventory.warnings), summary(&inventory)))
}

fn summary(inventory: &Inventory) -> String {
    let mut parts = vec![format!("{} model", inventory.flavour)];
    if !inventory.layers.is_empty() {
        parts.push(format!("{} layers", inventory.layers.len()));
    }
    if let Some(params) = inventory.params {
        parts.push(format!("{} parameters", crate::tf::inspect::group_digits(params.total)));
    }
    if let Some(optimizer) = &inventory.optimizer {
        match optimizer.bytes_in_source {
            Some(bytes) => parts.push(format!("{} optimizer state ({}) left out", optimizer.class, human_bytes(bytes))),
            None => parts.push(format!("{} optimizer left out", optimizer.class)),
        }
    }
    parts.join(", ")
}

pub(super) fn keras_name(flavour: crate::manifest::KerasFlavour) -> &'static str {
    match flavour {
        crate::manifest::KerasFlavour::Auto => "auto",
        crate::manifest::KerasFlavour::Keras3 => crate::contract::Flavour::Keras3.as_str(),
        crate::manifest::KerasFlavour::TfKeras => crate::contract::Flavour::TfKeras.as_str(),
    }
}

/// The worker's `batch_norm` parameter: `null` when nothing is overridden.
pub(super) fn batch_norm_param(batch_norm: &BatchNorm) -> Value {
    if batch_norm.is_set() {
        json!({"momentum": batch_norm.momentum, "epsilon": batch_norm.epsilon})
    } else {
        Value::Null
    }
}

/// Reads the export's inventory from its cache entry.
pub(super) fn load(dir: &Path) -> Result<Inventory, StepError> {
    super::read_json(&dir.join(files::INVENTORY))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_prefix_names_its_index_and_data_files() {
        let dir = tempfile::tempdir().unwrap();
        let ckpt = dir.path().join("ckpt");
        std::fs::create_dir(&ckpt).unwrap();
        for name in ["model-7.index", "model-7.data-00000-of-00001", "model-70.index", "checkpoint"] {
            std::fs::write(ckpt.join(name), b"x").unwrap();
        }
        let files = checkpoint_files(dir.path(), Path::new("ckpt/model-7"));
        assert_eq!(files, vec![PathBuf::from("ckpt/model-7.data-00000-of-00001"), PathBuf::from("ckpt/model-7.index")]);
        assert_eq!(checkpoint_files(dir.path(), Path::new("ckpt")), vec![PathBuf::from("ckpt")]);
    }
}
