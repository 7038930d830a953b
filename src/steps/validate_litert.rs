//! validate-litert (per piece, when `formats` has `litert`): the LiteRT interpreter
//! (`ai_edge_litert`, in the worker) runs `model.tflite` on the trace's golden inputs; here
//! its outputs are compared with the reference outputs by the same rule as validate
//! (`|got - ref| <= atol + rtol·|ref|`, largest difference reported, `tf::compare`), with the
//! piece's `[…litert]` tolerances; and its `serving_default` signature is checked against the
//! SavedModel's (names, dtypes, shapes). `report.json` also records the ops the model uses and
//! its size, for `model.md`.
//!
//! The interpreter runs on one thread, so that its outputs — and the report's differences —
//! are the same bits on every run. Its raw outputs are not kept: the report is the entry.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::export::Spec;
use super::trace;
use super::validate::{check, judge_outputs, Check, Golden};
use super::{dep_dir, files, read_json, settings, short_float, worker_error, write_json, Clock, Dirs, Target, TfSteps};
use crate::contract::CheckName;
use crate::exec::{StepContext, StepError, StepInputs, StepOutcome};
use crate::manifest::Quantize;
use crate::plan::StepKind;
use crate::tf::signature::SpecShape;

/// What validate-litert writes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LitertReport {
    pub format: u32,
    pub ok: bool,
    pub quantize: Quantize,
    /// `ai-edge-litert==<version>`.
    pub litert: String,
    pub bytes: u64,
    pub checks: Vec<Check>,
    /// The LiteRT ops the model runs, sorted.
    pub ops: Vec<String>,
    pub inputs: Vec<Spec>,
    pub outputs: Vec<Spec>,
    /// Per output, the largest |LiteRT - reference|.
    pub max_abs_diff: BTreeMap<String, f64>,
    pub atol: f64,
    pub rtol: f64,
}

impl LitertReport {
    /// The largest difference over every output.
    pub fn largest_difference(&self) -> f64 {
        self.max_abs_diff.values().copied().fold(0.0, f64::max)
    }
}

#[derive(Serialize)]
struct Settings<'a> {
    atol: f64,
    rtol: f64,
    litert: &'a str,
}

pub(super) fn inputs(target: &Target<'_>, litert: &str) -> StepInputs {
    let settings_ = target.litert();
    let settings = settings(&Settings { atol: settings_.atol, rtol: settings_.rtol, litert });
    StepInputs { settings, files: Vec::new() }
}

/// The worker's `run_litert` result.
#[derive(Deserialize)]
struct Ran {
    inputs: Vec<Spec>,
    outputs: Vec<Spec>,
    results: Vec<Written>,
    ops: Vec<String>,
}

#[derive(Deserialize)]
struct Written {
    name: String,
    file: String,
}

pub(super) fn run(steps: &TfSteps, target: &Target<'_>, dirs: &Dirs, cx: &StepContext<'_>) -> Result<StepOutcome, StepError> {
    let settings = target.litert();
    let mut clock = Clock::start();
    steps.runtime().get_with_litert().map_err(|e| StepError::from_diagnostic(&e))?;
    clock.lap("litert runtime");
    let trace_dir = dep_dir(target, cx, StepKind::Trace)?;
    let golden_dir = trace_dir.join(files::GOLDEN);
    let golden: Golden = read_json(&golden_dir.join("golden.json"))?;
    let traced = trace::load(&trace_dir)?;
    let model_path = dep_dir(target, cx, StepKind::ConvertLitert)?.join(files::TFLITE);
    let bytes = std::fs::metadata(&model_path).map_err(|e| StepError::new(format!("cannot read {}: {e}", model_path.display())))?.len();
    // The interpreter's outputs pass through a scratch folder of the entry, removed below.
    let scratch = dirs.out.join(".outputs");
    let params = json!({ "model_path": model_path, "golden_dir": golden_dir, "out_dir": scratch });
    let result = steps.call("run_litert", params, target.step, &mut clock).map_err(|e| worker_error(e, target, steps.manifest()))?;
    let ran: Ran =
        serde_json::from_value(result).map_err(|e| StepError::new(format!("the worker's run_litert result is not understood: {e}")))?;

    let mut checks = vec![signature_check(&ran, &traced.signature)];
    let (outputs, max_abs_diff) = outputs_check(&ran, &scratch, &golden_dir, &golden, settings.atol, settings.rtol);
    checks.push(outputs);
    let _ = std::fs::remove_dir_all(&scratch);
    clock.lap("compare");
    let report = LitertReport {
        format: 1,
        ok: checks.iter().all(|c| c.ok),
        quantize: settings.quantize,
        litert: steps.runtime().litert_identity(),
        bytes,
        checks,
        ops: ran.ops,
        inputs: ran.inputs,
        outputs: ran.outputs,
        max_abs_diff,
        atol: settings.atol,
        rtol: settings.rtol,
    };
    if !report.ok {
        return Err(failure(&report, target));
    }
    write_json(&dirs.out.join(files::LITERT_REPORT), &report)?;
    clock.lap("records");
    let summary = format!(
        "{} checks passed (LiteRT max |diff| {}, {} ops)",
        report.checks.len(),
        short_float(report.largest_difference()),
        report.ops.len()
    );
    Ok(clock.outcome(Vec::new(), summary))
}

fn failure(report: &LitertReport, target: &Target<'_>) -> StepError {
    let failed: Vec<&Check> = report.checks.iter().filter(|c| !c.ok).collect();
    let mut message = format!("{} of {} LiteRT checks failed", failed.len(), report.checks.len());
    for check in &failed {
        message.push_str(&format!("\n  LiteRT check `{}`: {}", check.name, check.message));
    }
    let help = if failed.iter().any(|c| c.name == CheckName::Outputs) {
        format!(
            "the LiteRT model (quantize = \"{}\") is compared with |got - ref| <= atol + rtol*|ref| (atol {}, rtol {}); if the difference is what the quantization costs, raise `litert.atol` / `litert.rtol` for piece `{}`, or quantize less",
            report.quantize.as_str(),
            short_float(report.atol),
            short_float(report.rtol),
            target.piece().name
        )
    } else {
        "the converted model's signature must be the SavedModel's: `exportctl clean --cache` and build again; if it persists, the converter changed the model's interface".to_string()
    };
    StepError::new(message).with_help(help)
}

/// LiteRT's `serving_default` against the SavedModel's: the same input and output names, the
/// same dtypes, and shapes that agree wherever both know a dimension.
fn signature_check(ran: &Ran, signature: &trace::SignatureFacts) -> Check {
    let mut problems = Vec::new();
    for (role, got, want) in [("input", &ran.inputs, &signature.inputs), ("output", &ran.outputs, &signature.outputs)] {
        for spec in want {
            let Some(lite) = got.iter().find(|g| g.name == spec.name) else {
                problems.push(format!(
                    "{role} `{}`: in the SavedModel, missing from the LiteRT model (it has {})",
                    spec.name,
                    got.iter().map(|g| format!("`{}`", g.name)).collect::<Vec<_>>().join(", ")
                ));
                continue;
            };
            if lite.dtype != spec.dtype {
                problems.push(format!("{role} `{}`: the SavedModel has {}, the LiteRT model {}", spec.name, spec.dtype, lite.dtype));
            }
            if let (Some(want), Some(have)) = (&spec.shape, &lite.shape) {
                let agrees = want.len() == have.len() && want.iter().zip(have).all(|(&w, &h)| w < 0 || h < 0 || w == h);
                if !agrees {
                    problems.push(format!(
                        "{role} `{}`: the SavedModel has shape {}, the LiteRT model {}",
                        spec.name,
                        SpecShape(&spec.shape),
                        SpecShape(&lite.shape)
                    ));
                }
            }
        }
        for lite in got {
            if !want.iter().any(|s| s.name == lite.name) {
                problems.push(format!("{role} `{}`: in the LiteRT model, not in the SavedModel", lite.name));
            }
        }
    }
    let message = if problems.is_empty() {
        format!(
            "serving_default: {} input(s) ({}), {} output(s) ({}) with the SavedModel's names, dtypes and shapes",
            ran.inputs.len(),
            ran.inputs.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", "),
            ran.outputs.len(),
            ran.outputs.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", ")
        )
    } else {
        problems.join("; ")
    };
    check(CheckName::Signature, problems.is_empty(), message, json!({ "problems": problems }))
}

/// Every reference output against what the interpreter returned, by validate's rule.
fn outputs_check(
    ran: &Ran,
    scratch: &std::path::Path,
    golden_dir: &std::path::Path,
    golden: &Golden,
    atol: f64,
    rtol: f64,
) -> (Check, BTreeMap<String, f64>) {
    let judged = judge_outputs(golden_dir, golden, "the LiteRT model", atol, rtol, |name| {
        let written = ran.results.iter().find(|r| r.name == name)?;
        Some(crate::tf::npy::read(&scratch.join(&written.file)).map(std::borrow::Cow::Owned).map_err(|e| e.to_string()))
    });
    (check(CheckName::Outputs, judged.ok, judged.message, judged.details), judged.maxima)
}

pub(super) fn load(dir: &std::path::Path) -> Result<LitertReport, StepError> {
    read_json(&dir.join(files::LITERT_REPORT))
}
