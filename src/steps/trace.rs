//! trace (per piece): the sliced model written as a Reusable SavedModel (`__call__` traced for
//! `training=True` and `False`, `variables`, `trainable_variables`, `regularization_losses`)
//! with a `serving_default` signature, and the golden inputs and reference outputs that
//! validate compares the SavedModel with, computed by the Keras model itself before saving.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::export::{self, Spec};
use super::{dep_dir, files, settings, worker_error, worker_warnings, write_json, Clock, Dirs, FileDigest, Target, TfSteps};
use crate::exec::{StepContext, StepError, StepInputs, StepOutcome};
use crate::manifest::{GoldenInputs, InputSpec};
use crate::plan::StepKind;

/// The worker's `trace` result, kept as `trace.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TraceFacts {
    pub signature: SignatureFacts,
    pub variables: u64,
    pub trainable_variables: u64,
    pub regularization_losses: u64,
    #[serde(default)]
    pub has_dropout: Option<bool>,
    #[serde(default)]
    pub has_batch_norm: Option<bool>,
    #[serde(default)]
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignatureFacts {
    pub inputs: Vec<Spec>,
    pub outputs: Vec<Spec>,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct Settings<'a> {
    trainable: bool,
    inputs: &'a [InputSpec],
    golden: &'a GoldenInputs,
}

pub(super) fn inputs(target: &Target<'_>) -> StepInputs {
    let piece = target.piece();
    let settings = settings(&Settings { trainable: piece.trainable, inputs: &target.model.inputs, golden: &piece.validate.golden });
    StepInputs { settings, files: sample_files(&piece.validate.golden) }
}

fn sample_files(golden: &GoldenInputs) -> Vec<PathBuf> {
    match golden {
        GoldenInputs::Samples { path } => vec![path.clone()],
        GoldenInputs::Random { .. } => Vec::new(),
    }
}

pub(super) fn run(steps: &TfSteps, target: &Target<'_>, dirs: &Dirs, cx: &StepContext<'_>) -> Result<StepOutcome, StepError> {
    let piece = target.piece();
    let slice_dir = dep_dir(target, cx, StepKind::Slice)?;
    let inventory = export::load(&dep_dir(target, cx, StepKind::Export)?)?;
    let declared: Value = if target.model.inputs.is_empty() {
        Value::Null
    } else {
        target.model.inputs.iter().map(|i| json!({"name": i.name, "shape": i.shape, "dtype": i.dtype})).collect()
    };
    let golden = match &piece.validate.golden {
        GoldenInputs::Random { batch, seed } => json!({"batch": batch, "seed": seed}),
        GoldenInputs::Samples { path } => json!({"samples": dirs.project(path), "seed": 0}),
    };
    let params = json!({
        "export_dir": dep_dir(target, cx, StepKind::Export)?,
        "slice_dir": slice_dir,
        "flavour": inventory.flavour,
        "trainable": piece.trainable,
        "inputs": declared,
        "golden": golden,
        "root": dirs.root,
        "out_dir": dirs.out,
    });
    let mut clock = Clock::start();
    let result = steps.call("trace", params, target.step, &mut clock).map_err(|e| worker_error(e, target, steps.manifest()))?;
    let facts: TraceFacts =
        serde_json::from_value(result).map_err(|e| StepError::new(format!("the worker's trace result is not understood: {e}")))?;
    write_json(&dirs.out.join(files::TRACE), &facts)?;
    let sources: Vec<FileDigest> = super::digest_files(&dirs.root, &sample_files(&piece.validate.golden))?;
    write_json(&dirs.out.join(files::SOURCES), &sources)?;

    let summary = format!(
        "{} variables ({} trainable), {} regularization loss{}",
        facts.variables,
        facts.trainable_variables,
        facts.regularization_losses,
        if facts.regularization_losses == 1 { "" } else { "es" }
    );
    clock.lap("records");
    Ok(clock.outcome(worker_warnings(crate::contract::Lint::TraceNote, &facts.warnings), summary))
}

pub(super) fn load(dir: &Path) -> Result<TraceFacts, StepError> {
    super::read_json(&dir.join(files::TRACE))
}
