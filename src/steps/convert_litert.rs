//! convert-litert (per piece, when `formats` has `litert`): the traced SavedModel's
//! `serving_default` converted to a LiteRT flatbuffer (`model.tflite`) by TensorFlow's
//! converter, quantized as `[…litert] quantize` says.
//!
//! **Its key** holds the quantization and the LiteRT package version (the interpreter that
//! validates its output is part of what the format means), plus the trace's output digest as
//! every key does; the runtime's versions cover the converter, which is TensorFlow's.
//!
//! **Byte-stable.** The converter writes the same bytes for the same SavedModel in a fresh
//! process, in a warm worker after other conversions, and from any folder (measured on the
//! quickstart and MobileNetV3-Small, float32 and dynamic-range; the reproducibility tests hold
//! it): nothing is canonicalised after it.

use serde::Serialize;
use serde_json::json;

use super::{dep_dir, files, settings, worker_error, Clock, Dirs, Target, TfSteps};
use crate::exec::{StepContext, StepError, StepInputs, StepOutcome};
use crate::manifest::Quantize;
use crate::plan::StepKind;
use crate::tf::inspect::human_bytes;

#[derive(Serialize)]
struct Settings<'a> {
    quantize: Quantize,
    /// `ai-edge-litert==<version>`.
    litert: &'a str,
}

pub(super) fn inputs(target: &Target<'_>, litert: &str) -> StepInputs {
    let settings = settings(&Settings { quantize: target.litert().quantize, litert });
    StepInputs { settings, files: Vec::new() }
}

pub(super) fn run(steps: &TfSteps, target: &Target<'_>, dirs: &Dirs, cx: &StepContext<'_>) -> Result<StepOutcome, StepError> {
    let litert = target.litert();
    let saved_model = dep_dir(target, cx, StepKind::Trace)?.join(files::SAVED_MODEL);
    let out_path = dirs.out.join(files::TFLITE);
    let params = json!({
        "saved_model_dir": saved_model,
        "out_path": out_path,
        "quantize": litert.quantize.as_str(),
    });
    let mut clock = Clock::start();
    steps.call("convert_litert", params, target.step, &mut clock).map_err(|e| worker_error(e, target, steps.manifest()))?;
    let bytes =
        std::fs::metadata(&out_path).map_err(|e| StepError::new(format!("the converter wrote no {}: {e}", out_path.display())))?.len();
    clock.lap("records");
    let summary = format!("{} ({}, quantize {})", files::TFLITE, human_bytes(bytes), litert.quantize.as_str());
    Ok(clock.outcome(Vec::new(), summary))
}
