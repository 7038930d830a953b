//! slice (per piece): the sub-model between the piece's `from` and `to` layers, cut by the
//! worker from the export's model (built again from its recipe) and described: its inputs,
//! outputs, parameters, final activation. It writes the cut (`piece.json`), not the weights:
//! trace builds the piece from it. A layer name the model does not have becomes a manifest
//! error at that name, with the worker's did-you-mean.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::export::{self, Params, Spec};
use super::{dep_dir, files, settings, worker_error, worker_warnings, write_json, Clock, Dirs, Target, TfSteps};
use crate::exec::{StepContext, StepError, StepInputs, StepOutcome};
use crate::manifest::BatchNorm;
use crate::plan::StepKind;

/// The worker's `slice` result, kept as `slice.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SliceFacts {
    #[serde(default)]
    pub inputs: Vec<Spec>,
    #[serde(default)]
    pub outputs: Vec<Spec>,
    #[serde(default)]
    pub layers: u64,
    #[serde(default)]
    pub params: Params,
    #[serde(default)]
    pub dropout_layers: Option<u64>,
    #[serde(default)]
    pub batch_norm_layers: Option<u64>,
    #[serde(default)]
    pub regularizer_count: Option<u64>,
    #[serde(default)]
    pub activity_regularizers: Option<u64>,
    #[serde(default)]
    pub output_activation: Option<String>,
    #[serde(default)]
    pub warnings: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct Settings<'a> {
    from: Option<&'a str>,
    to: Vec<&'a str>,
    dropout: Option<f64>,
    batch_norm: &'a BatchNorm,
}

pub(super) fn inputs(target: &Target<'_>) -> StepInputs {
    let piece = target.piece();
    let settings = settings(&Settings {
        from: piece.cut.from.as_ref().map(|l| l.name.as_str()),
        to: piece.cut.to.iter().map(|l| l.name.as_str()).collect(),
        dropout: piece.dropout,
        batch_norm: &piece.batch_norm,
    });
    StepInputs { settings, files: Vec::new() }
}

pub(super) fn run(steps: &TfSteps, target: &Target<'_>, dirs: &Dirs, cx: &StepContext<'_>) -> Result<StepOutcome, StepError> {
    let piece = target.piece();
    let export_dir = dep_dir(target, cx, StepKind::Export)?;
    let inventory = export::load(&export_dir)?;
    // A SavedModel source has no layers to re-configure; the worker would only warn.
    let keras = inventory.flavour.is_keras();
    let params = json!({
        "export_dir": export_dir,
        "flavour": inventory.flavour,
        "from": piece.cut.from.as_ref().map(|l| &l.name),
        "to": piece.cut.to.iter().map(|l| &l.name).collect::<Vec<_>>(),
        "dropout": if keras { piece.dropout } else { None },
        "batch_norm": if keras { export::batch_norm_param(&piece.batch_norm) } else { Value::Null },
        "root": dirs.root,
        "out_dir": dirs.out,
    });
    let mut clock = Clock::start();
    let result = steps.call("slice", params, target.step, &mut clock).map_err(|e| worker_error(e, target, steps.manifest()))?;
    let facts: SliceFacts =
        serde_json::from_value(result).map_err(|e| StepError::new(format!("the worker's slice result is not understood: {e}")))?;
    write_json(&dirs.out.join(files::SLICE), &facts)?;

    let outputs: Vec<String> = facts.outputs.iter().map(|o| format!("`{}`", o.name)).collect();
    let mut summary = format!("{} output{} ({})", outputs.len(), if outputs.len() == 1 { "" } else { "s" }, outputs.join(", "));
    if facts.params.total > 0 {
        summary.push_str(&format!(", {} parameters", crate::tf::inspect::group_digits(facts.params.total)));
    }
    clock.lap("records");
    Ok(clock.outcome(worker_warnings(crate::contract::Lint::SliceNote, &facts.warnings), summary))
}

pub(super) fn load(dir: &Path) -> Result<SliceFacts, StepError> {
    super::read_json(&dir.join(files::SLICE))
}
