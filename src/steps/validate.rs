//! validate (per piece): two independent loaders check the traced SavedModel.
//!
//! 1. **Native** (here, through `crate::tf`, never Python): load with tag `serve` the way TF
//!    Serving does; check `serving_default`'s inputs and outputs against the golden files and
//!    the manifest's declared inputs; run it on the golden inputs and compare every output with
//!    its reference (`|got - ref| <= atol + rtol·|ref|`, reporting the largest difference and
//!    where); list the variables and fail on optimizer state; record the sizes.
//! 2. **Reusable API** (the worker's `validate`): `tf.saved_model.load`, `__call__` with both
//!    `training` values, `variables` ⊇ `trainable_variables`, `regularization_losses`, one
//!    fine-tuning step; then the package as consumers use it: `hub.KerasLayer(trainable=True)`
//!    fitted one step in a tf_keras model, and `keras.layers.TFSMLayer` (`serving_default`) in
//!    a Keras 3 model, compared with the golden outputs and fitted one step.
//!
//! Both halves always run, so the report is complete even when the first one fails. The report
//! (`report.json`) holds every check with `ok`, `message` and `details`, minus the timings the
//! worker measures: the report is a cache entry and must have the same bytes on every build.
//!
//! The lints of the guide are raised here too, as warnings: outputs that end in softmax,
//! argmax or top-k; optimizer regularization the SavedModel cannot carry; dropout or
//! batch-norm layers without the settings consumers should fine-tune with.
//!
//! [`validate_saved_model`] is the same check for any SavedModel (`exportctl validate PATH`):
//! without golden files it makes seeded random inputs for the serving signature and takes the
//! native outputs as the reference, so Python is checked against C++.

use crate::contract::{CheckName, Lint};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::export::{self, Inventory, Spec};
use super::slice::{self, SliceFacts};
use super::{dep_dir, files, read_json, settings, short_float, write_json, Clock, Dirs, Target, TfSteps};
use crate::error::help_text;
use crate::exec::{StepContext, StepError, StepInputs, StepOutcome, Warning};
use crate::manifest::{BatchNorm, InputSpec, Piece};
use crate::plan::StepKind;
use crate::runtime::{Worker, WorkerError};
use crate::tf::array::ShapeDisplay;
use crate::tf::inspect::Files;
use crate::tf::saved_model_pb::SavedModelPb;
use crate::tf::signature::SpecShape;
use crate::tf::{self, variables, Array, ArrayData, Comparison, DType, LoadedModel, Native};

/// The signature every package must have.
const SERVING_DEFAULT: &str = "serving_default";

/// What validate writes: both halves and the lints.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub format: u32,
    pub ok: bool,
    pub native: NativeReport,
    pub reusable: ReusableReport,
    #[serde(default)]
    pub lints: Vec<Warning>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NativeReport {
    pub ok: bool,
    pub checks: Vec<Check>,
    /// `serving_default` as the C API sees it.
    #[serde(default)]
    pub signature: Option<SignatureSummary>,
    #[serde(default)]
    pub variables: Option<VariableSummary>,
    #[serde(default)]
    pub size: Option<SizeSummary>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReusableReport {
    pub ok: bool,
    pub checks: Vec<Check>,
    #[serde(default)]
    pub regularization_loss_values: Vec<Option<f64>>,
    #[serde(default)]
    pub hub: Option<HubSummary>,
    /// The Keras 3 consumer check (`keras.layers.TFSMLayer`).
    #[serde(default)]
    pub keras3: Option<Keras3Summary>,
}

/// One check: what was checked, whether it held, a sentence, and the numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    pub name: CheckName,
    pub ok: bool,
    pub message: String,
    #[serde(default)]
    pub details: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignatureSummary {
    pub inputs: Vec<Spec>,
    pub outputs: Vec<Spec>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VariableSummary {
    pub count: usize,
    pub trainable: usize,
    pub parameters: u64,
    pub bytes: u64,
    pub optimizer_variables: usize,
    pub optimizer_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SizeSummary {
    pub saved_model_pb: u64,
    pub variables: u64,
    pub assets: u64,
    pub total: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HubSummary {
    pub trainable_weights: u64,
    pub losses: u64,
    pub moved: u64,
}

/// What `keras.layers.TFSMLayer` exposed in a Keras 3 model, and how many of its trainable
/// weights one `fit` step moved (0 when the piece is frozen or the step is not wanted).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Keras3Summary {
    pub trainable_weights: u64,
    /// How many got a non-zero gradient through TFSMLayer in a Keras 3 model.
    #[serde(default)]
    pub reached: u64,
    /// How many one `fit` step changed (a gradient can be too small to change a float32).
    pub moved: u64,
}

/// `golden/golden.json`, written by the worker's trace (or by [`validate_saved_model`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Golden {
    pub format: u32,
    pub flavour: String,
    pub input_structure: String,
    pub output_structure: String,
    pub inputs: Vec<GoldenTensor>,
    pub outputs: Vec<GoldenTensor>,
    pub seed: u64,
    pub batch: u64,
    pub source: String,
    #[serde(default)]
    pub has_dropout: Option<bool>,
    #[serde(default)]
    pub has_batch_norm: Option<bool>,
    #[serde(default = "yes")]
    pub trainable: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GoldenTensor {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<i64>,
    /// Relative to the golden directory.
    pub file: String,
}

/// What the checks compare against.
pub struct Expectations<'a> {
    pub atol: f64,
    pub rtol: f64,
    /// Optimizer state is allowed (the manifest's `include-optimizer = true`).
    pub allow_optimizer: bool,
    /// The manifest's declared inputs (empty: inferred, nothing to compare).
    pub declared: &'a [InputSpec],
    pub fine_tune_step: bool,
    pub expect_trainable: bool,
    /// `__call__` must take a `training` argument (exportctl's packages always do; the
    /// Reusable SavedModel API makes it optional for others).
    pub require_training: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct Settings<'a> {
    atol: f64,
    rtol: f64,
    fine_tune_step: bool,
    trainable: bool,
    include_optimizer: bool,
    inputs: &'a [InputSpec],
    dropout: Option<f64>,
    batch_norm: &'a BatchNorm,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    allow_ops: &'a [String],
}

pub(super) fn inputs(target: &Target<'_>) -> StepInputs {
    let piece = target.piece();
    let settings = settings(&Settings {
        atol: piece.validate.atol,
        rtol: piece.validate.rtol,
        fine_tune_step: piece.validate.fine_tune_step,
        trainable: piece.trainable,
        include_optimizer: target.model.export.include_optimizer,
        inputs: &target.model.inputs,
        dropout: piece.dropout,
        batch_norm: &piece.batch_norm,
        allow_ops: &target.model.allow_ops,
    });
    StepInputs { settings, files: Vec::new() }
}

pub(super) fn run(steps: &TfSteps, target: &Target<'_>, dirs: &Dirs, cx: &StepContext<'_>) -> Result<StepOutcome, StepError> {
    let piece = target.piece();
    let trace_dir = dep_dir(target, cx, StepKind::Trace)?;
    let saved_model = trace_dir.join(files::SAVED_MODEL);
    let golden_dir = trace_dir.join(files::GOLDEN);
    let golden: Golden = read_json(&golden_dir.join("golden.json"))?;
    super::refuse_untrusted_ops(&saved_model, &target.model.allow_ops, &format!("the SavedModel of piece `{}`", piece.name))?;
    let expect = Expectations {
        atol: piece.validate.atol,
        rtol: piece.validate.rtol,
        allow_optimizer: target.model.export.include_optimizer,
        declared: &target.model.inputs,
        fine_tune_step: piece.validate.fine_tune_step,
        expect_trainable: piece.trainable,
        require_training: true,
    };

    let mut clock = Clock::start();
    let native = steps.native()?;
    clock.lap("native library");
    // The two loaders are independent: the native half runs on a thread of its own while the
    // worker runs the Reusable API's checks.
    let (native, reusable) = std::thread::scope(|scope| {
        let native_half = scope.spawn(|| {
            let mut native_clock = Clock::start();
            let report = native_checks(native, &saved_model, Some((&golden_dir, &golden)), &expect, &mut native_clock);
            (report, native_clock.finish())
        });
        let reusable = steps.with_worker(target.step, &mut clock, |worker, clock| {
            super::recycle_if_bloated(worker, StepKind::Validate);
            let outputs_dir = dirs.out.join(".outputs");
            reusable_checks(worker, &saved_model, (&golden_dir, &golden), &outputs_dir, &expect, &target.step.to_string(), clock)
        });
        let (native, native_phases) = native_half.join().expect("the native checks do not panic");
        for (name, ms) in native_phases {
            clock.add(&name, Duration::from_millis(ms));
        }
        (native, reusable)
    });
    if cx.cancelled.load(std::sync::atomic::Ordering::Relaxed) {
        return Err(StepError::new("cancelled"));
    }
    let reusable = reusable.map_err(|e| super::worker_error(e, target, steps.manifest()))?;

    let inventory = export::load(&dep_dir(target, cx, StepKind::Export)?)?;
    let facts = slice::load(&dep_dir(target, cx, StepKind::Slice)?)?;
    let lints = lints(piece, &inventory, &facts);

    let report = Report { format: 1, ok: native.ok && reusable.ok, native, reusable, lints: lints.clone() };
    if !report.ok {
        return Err(failure(&report));
    }
    write_json(&dirs.out.join(files::REPORT), &report)?;
    clock.lap("records");
    Ok(clock.outcome(lints, summary(&report)))
}

/// One line: how many checks, and the largest output difference.
fn summary(report: &Report) -> String {
    let checks = report.native.checks.len() + report.reusable.checks.len();
    let diff = report
        .native
        .checks
        .iter()
        .find(|c| c.name == CheckName::Outputs)
        .and_then(|c| c.details.get("max_abs_diff"))
        .and_then(Value::as_f64);
    match diff {
        Some(diff) => format!("{checks} checks passed (native max |diff| {})", short_float(diff)),
        None => format!("{checks} checks passed"),
    }
}

/// The failure of a step: every failed check, with its message (which names the output,
/// expected vs got and the difference vs the tolerance).
fn failure(report: &Report) -> StepError {
    let failed: Vec<(&str, &Check)> = report
        .native
        .checks
        .iter()
        .map(|c| ("native", c))
        .chain(report.reusable.checks.iter().map(|c| ("reusable API", c)))
        .filter(|(_, c)| !c.ok)
        .collect();
    let total = report.native.checks.len() + report.reusable.checks.len();
    let mut message = format!("{} of {total} validation checks failed", failed.len());
    for (half, check) in &failed {
        message.push_str(&format!("\n  {half} check `{}`: {}", check.name, check.message));
    }
    let mut helps: Vec<&str> = Vec::new();
    for (_, check) in &failed {
        if let Some(help) = crate::contract::check_fix(check.name) {
            if !helps.contains(&help) {
                helps.push(help);
            }
        }
    }
    helps.push("the build report (`exportctl report`) lists every check with its details (docs/validation.md says what each proves); `exportctl validate <dir>` reruns them on a SavedModel");
    StepError::new(message).with_help(helps.join("\n"))
}

// ---------------------------------------------------------------------------------------------
// The native half.
// ---------------------------------------------------------------------------------------------

/// The native checks: `load`, `no_optimizer_state`, `signature`, `outputs`. Without golden
/// files (`None`), `signature` only requires `serving_default` and `outputs` is left out.
pub fn native_checks(
    native: &Native,
    dir: &Path,
    golden: Option<(&Path, &Golden)>,
    expect: &Expectations<'_>,
    clock: &mut Clock,
) -> NativeReport {
    let mut report = NativeReport::default();
    let files = Files::measure(dir);
    report.size =
        Some(SizeSummary { saved_model_pb: files.saved_model_pb, variables: files.variables, assets: files.assets, total: files.total });

    // The variables, from the object graph (no session needed).
    match SavedModelPb::read(dir) {
        Ok(pb) => match pb.meta_graph(&[tf::model::SERVE]) {
            Some(meta) => {
                let (variables, optimizer) = variables::analyse(meta);
                report.variables = Some(VariableSummary {
                    count: variables.count,
                    trainable: variables.trainable,
                    parameters: variables.parameters,
                    bytes: variables.bytes,
                    optimizer_variables: optimizer.variables.len(),
                    optimizer_bytes: optimizer.bytes,
                });
                let names: Vec<&str> = optimizer.variables.iter().map(|v| v.path.as_deref().unwrap_or(&v.name)).collect();
                let ok = !optimizer.present || expect.allow_optimizer;
                let message = if !optimizer.present {
                    format!("{} variables ({} trainable), no optimizer state", variables.count, variables.trainable)
                } else if ok {
                    format!("optimizer state present ({} variables), allowed by include-optimizer", optimizer.variables.len())
                } else {
                    format!(
                        "optimizer state in the SavedModel: {} variable(s), {} bytes (e.g. {}); expected none",
                        optimizer.variables.len(),
                        optimizer.bytes,
                        names.iter().take(3).copied().collect::<Vec<_>>().join(", ")
                    )
                };
                report.checks.push(check(
                    CheckName::NoOptimizerState,
                    ok,
                    message,
                    json!({
                        "variables": variables.count,
                        "trainable": variables.trainable,
                        "parameters": variables.parameters,
                        "optimizer_objects": optimizer.objects.iter().map(|o| &o.path).collect::<Vec<_>>(),
                        "optimizer_variables": names.iter().take(50).collect::<Vec<_>>(),
                    }),
                ));
            }
            None => report.checks.push(check(
                CheckName::NoOptimizerState,
                false,
                "the SavedModel has no meta graph tagged `serve`".into(),
                json!({"meta_graphs": pb.meta_graphs.iter().map(|m| &m.tags).collect::<Vec<_>>()}),
            )),
        },
        Err(e) => {
            report.checks.push(check(CheckName::Load, false, e.to_string(), json!({"tags": [tf::model::SERVE]})));
            return finish(report);
        }
    }

    clock.lap("read graph");
    // Load it as TF Serving would.
    let model = LoadedModel::load(native, dir);
    clock.lap("native load");
    let model = match model {
        Ok(model) => {
            report.checks.insert(
                0,
                check(
                    CheckName::Load,
                    true,
                    "loaded with tag `serve` through the TensorFlow C API".into(),
                    json!({"tags": [tf::model::SERVE]}),
                ),
            );
            model
        }
        Err(e) => {
            let mut details = json!({"tags": [tf::model::SERVE]});
            if let Some(help) = help_text(&e) {
                details["help"] = json!(help);
            }
            report.checks.insert(0, check(CheckName::Load, false, e.to_string(), details));
            return finish(report);
        }
    };

    let Some(signature) = model.signature(SERVING_DEFAULT) else {
        let available: Vec<&str> = model.signatures().iter().map(|s| s.key.as_str()).collect();
        let message = format!(
            "no `serving_default` signature (the SavedModel has {}): TF Serving cannot call it",
            if available.is_empty() { "none".to_string() } else { available.join(", ") }
        );
        report.checks.push(check(CheckName::Signature, false, message, json!({"available": available})));
        return finish(report);
    };
    let spec =
        |t: &tf::TensorSpec| Spec { name: t.key.clone(), shape: t.shape.clone(), dtype: t.dtype.name().into_owned(), activation: None };
    report.signature = Some(SignatureSummary {
        inputs: signature.inputs.iter().map(spec).collect(),
        outputs: signature.outputs.iter().map(spec).collect(),
    });
    let problems = match golden {
        Some((_, golden)) => signature_problems(signature, golden, expect.declared),
        None => Vec::new(),
    };
    let message = if problems.is_empty() {
        format!(
            "serving_default: {} input(s) ({}), {} output(s) ({}) as expected",
            signature.inputs.len(),
            signature.inputs.iter().map(|t| t.key.as_str()).collect::<Vec<_>>().join(", "),
            signature.outputs.len(),
            signature.outputs.iter().map(|t| t.key.as_str()).collect::<Vec<_>>().join(", ")
        )
    } else {
        problems.join("; ")
    };
    report.checks.push(check(CheckName::Signature, problems.is_empty(), message, json!({"problems": problems})));

    if let Some((golden_dir, golden)) = golden {
        report.checks.push(outputs_check(&model, golden_dir, golden, expect, clock));
    }
    finish(report)
}

fn finish(mut report: NativeReport) -> NativeReport {
    report.ok = report.checks.iter().all(|c| c.ok);
    report
}

pub(super) fn check(name: CheckName, ok: bool, message: String, details: Value) -> Check {
    Check { name, ok, message, details }
}

/// How `serving_default` differs from the golden files and from the manifest's inputs.
fn signature_problems(signature: &tf::Signature, golden: &Golden, declared: &[InputSpec]) -> Vec<String> {
    let mut problems = Vec::new();
    for input in &golden.inputs {
        match signature.input(&input.name) {
            None => problems.push(format!("input `{}`: expected in serving_default, missing", input.name)),
            Some(spec) => {
                if spec.dtype.name() != input.dtype {
                    problems.push(format!("input `{}`: expected dtype {}, got {}", input.name, input.dtype, spec.dtype));
                }
                let shape: Vec<usize> = input.shape.iter().map(|&d| d.max(0) as usize).collect();
                if !spec.accepts_shape(&shape) {
                    problems.push(format!(
                        "input `{}`: shape {} does not accept the golden input's {}",
                        input.name,
                        SpecShape(&spec.shape),
                        ShapeDisplay(&shape)
                    ));
                }
            }
        }
    }
    for spec in &signature.inputs {
        if !golden.inputs.iter().any(|i| i.name == spec.key) {
            problems.push(format!("input `{}`: not expected (golden inputs: {})", spec.key, names(&golden.inputs)));
        }
    }
    for output in &golden.outputs {
        match signature.output(&output.name) {
            None => problems.push(format!("output `{}`: expected in serving_default, missing", output.name)),
            Some(spec) if spec.dtype.name() != output.dtype => {
                problems.push(format!("output `{}`: expected dtype {}, got {}", output.name, output.dtype, spec.dtype))
            }
            Some(_) => {}
        }
    }
    for spec in &signature.outputs {
        if !golden.outputs.iter().any(|o| o.name == spec.key) {
            problems.push(format!("output `{}`: not expected (reference outputs: {})", spec.key, names(&golden.outputs)));
        }
    }
    for input in declared {
        let Some(spec) = signature.input(&input.name) else {
            problems.push(format!("input `{}` declared in the manifest: missing from serving_default", input.name));
            continue;
        };
        if spec.dtype.name() != input.dtype {
            problems.push(format!("input `{}`: the manifest declares {}, serving_default has {}", input.name, input.dtype, spec.dtype));
        }
        if let Some(dims) = &spec.shape {
            // The batch dimension is always made dynamic; the others must agree where both know them.
            let agrees = dims.len() == input.shape.len()
                && dims.iter().zip(&input.shape).skip(1).all(|(&got, &want)| got < 0 || want < 0 || got == want);
            if !agrees {
                problems.push(format!(
                    "input `{}`: the manifest declares shape {:?}, serving_default has {}",
                    input.name,
                    input.shape,
                    SpecShape(&spec.shape)
                ));
            }
        }
    }
    problems
}

fn names(tensors: &[GoldenTensor]) -> String {
    tensors.iter().map(|t| t.name.as_str()).collect::<Vec<_>>().join(", ")
}

/// Runs `serving_default` on the golden inputs and compares every output with its reference.
fn outputs_check(model: &LoadedModel, golden_dir: &Path, golden: &Golden, expect: &Expectations<'_>, clock: &mut Clock) -> Check {
    let mut feeds = Vec::new();
    for input in &golden.inputs {
        match tf::npy::read(&golden_dir.join(&input.file)) {
            Ok(array) => feeds.push((input.name.clone(), array)),
            Err(e) => return check(CheckName::Outputs, false, format!("golden input `{}`: {e}", input.name), Value::Null),
        }
    }
    clock.lap("read golden");
    let got = model.run(SERVING_DEFAULT, &feeds);
    clock.lap("native run");
    let got = match got {
        Ok(got) => got,
        Err(e) => {
            let details = help_text(&e).map_or(Value::Null, |h| json!({"help": h}));
            return check(CheckName::Outputs, false, e.to_string(), details);
        }
    };
    let judged = judge_outputs(golden_dir, golden, "serving_default", expect.atol, expect.rtol, |name| {
        got.iter().find(|(n, _)| n == name).map(|(_, array)| Ok(Cow::Borrowed(array)))
    });
    clock.lap("compare");
    check(CheckName::Outputs, judged.ok, judged.message, judged.details)
}

/// How a loader's outputs compare with the reference outputs: every output judged by
/// [`tf::compare`] (shape, dtype, `|got - ref| <= atol + rtol·|ref|`), whoever computed it —
/// the native loader, the worker's loaders or the LiteRT interpreter.
pub(super) struct Judged {
    pub ok: bool,
    /// `N output(s) match …`, or every failure (`output `x`: …`) joined by `; `.
    pub message: String,
    /// `outputs` (per output: [`comparison_details`]), `atol`, `rtol`, `max_abs_diff`.
    pub details: Value,
    /// Per output, the largest difference.
    pub maxima: BTreeMap<String, f64>,
}

/// Judges the outputs `got` returns for each of the golden outputs (`None`: the loader did not
/// return that output; `Err`: it could not be read). `by` names the loader in messages.
pub(super) fn judge_outputs<'a>(
    golden_dir: &Path,
    golden: &Golden,
    by: &str,
    atol: f64,
    rtol: f64,
    mut got: impl FnMut(&str) -> Option<Result<Cow<'a, Array>, String>>,
) -> Judged {
    let mut per_output = Map::new();
    let mut maxima = BTreeMap::new();
    let mut failures = Vec::new();
    for output in &golden.outputs {
        let expected = match tf::npy::read(&golden_dir.join(&output.file)) {
            Ok(a) => a,
            Err(e) => {
                failures.push(format!("reference output `{}`: {e}", output.name));
                continue;
            }
        };
        let array = match got(&output.name) {
            None => {
                failures.push(format!("output `{}`: expected, but {by} did not return it", output.name));
                continue;
            }
            Some(Err(e)) => {
                failures.push(format!("output `{}` of {by}: {e}", output.name));
                continue;
            }
            Some(Ok(array)) => array,
        };
        let comparison = tf::compare(&expected, &array, atol, rtol);
        maxima.insert(output.name.clone(), comparison.max_abs_diff());
        if !comparison.ok {
            failures.push(format!("output `{}`: {comparison}", output.name));
        }
        per_output.insert(output.name.clone(), comparison_details(&comparison));
    }
    let max = maxima.values().copied().fold(0.0, f64::max);
    let details = json!({"outputs": per_output, "atol": atol, "rtol": rtol, "max_abs_diff": max});
    let message = if failures.is_empty() {
        format!(
            "{} output(s) match the reference within atol {} + rtol {}·|ref| (max |diff| {})",
            golden.outputs.len(),
            short_float(atol),
            short_float(rtol),
            short_float(max)
        )
    } else {
        failures.join("; ")
    };
    Judged { ok: failures.is_empty(), message, details, maxima }
}

pub(super) fn comparison_details(c: &Comparison) -> Value {
    let mut details = json!({
        "shape": c.got_shape,
        "expected_shape": c.expected_shape,
        "dtype": c.got_dtype,
        "expected_dtype": c.expected_dtype,
        "elements": c.elements,
        "mismatches": c.violations,
        "max_abs_diff": c.max_abs_diff(),
    });
    if let Some(max) = &c.max {
        details["index"] = json!(max.index);
        details["got"] = json!(max.got);
        details["expected"] = json!(max.expected);
        details["tolerance"] = json!(max.tolerance);
    }
    if let Some(worst) = &c.worst {
        details["worst"] = json!(worst);
    }
    details
}

// ---------------------------------------------------------------------------------------------
// The Reusable SavedModel half (the worker).
// ---------------------------------------------------------------------------------------------

/// The worker's `validate`, with its timings taken out (reports are reproducible). The worker
/// does not judge outputs: a check that ran the package on the golden inputs hands over what it
/// computed (`computed`: one `.npy` per output, written under `outputs_dir`), and it is judged
/// here by the native check's rule ([`judge_outputs`]), dtypes included. `outputs_dir` is
/// removed afterwards.
pub fn reusable_checks(
    worker: &mut Worker,
    dir: &Path,
    golden: (&Path, &Golden),
    outputs_dir: &Path,
    expect: &Expectations<'_>,
    label: &str,
    clock: &mut Clock,
) -> Result<ReusableReport, WorkerError> {
    let (golden_dir, golden) = golden;
    let params = json!({
        "saved_model_dir": dir,
        "golden_dir": golden_dir,
        "outputs_dir": outputs_dir,
        "fine_tune_step": expect.fine_tune_step,
        "expect_trainable": expect.expect_trainable,
        "require_training": expect.require_training,
    });
    let result = super::call_worker(worker, "validate", params, label, clock);
    let judged = result.and_then(|result| {
        let protocol = |e: serde_json::Error| WorkerError::Protocol {
            step: label.to_string(),
            detail: format!("the validate result is not understood: {e}"),
        };
        let mut report = ReusableReport::deserialize(&result).map_err(protocol)?;
        let computed = Vec::<WorkerCheck>::deserialize(&result["checks"]).map_err(protocol)?;
        for (check, worker_check) in report.checks.iter_mut().zip(computed) {
            if let Some(computed) = worker_check.computed {
                judge_computed(check, &computed, (golden_dir, golden), outputs_dir, expect);
            }
            if let Some(runs) = worker_check.runs {
                judge_training_flag(check, &runs, golden, outputs_dir, expect);
            }
            if let Some(details) = check.details.as_object_mut() {
                details.remove("seconds");
                // A training step's loss depends on how the CPU's kernels round (AVX-512 or
                // not): the check records that it is finite, the report does not keep its digits.
                details.remove("loss");
            }
        }
        report.ok = report.checks.iter().all(|c| c.ok);
        Ok(report)
    });
    let _ = std::fs::remove_dir_all(outputs_dir);
    clock.lap("compare");
    judged
}

/// A check of the worker, with what it computed for exportctl to judge.
#[derive(Deserialize)]
struct WorkerCheck {
    #[serde(default)]
    computed: Option<Computed>,
    /// `training_flag`: the runs of `__call__` it compares (`false`, `false_again`, `true`,
    /// `true_again`), each as a `computed` record.
    #[serde(default)]
    runs: Option<BTreeMap<String, Computed>>,
}

/// What a worker check computed on the golden inputs: who computed it (`__call__(training=False)`,
/// …) and each golden output's file under the outputs folder (`None`: not returned).
#[derive(Deserialize)]
struct Computed {
    by: String,
    outputs: BTreeMap<String, Option<String>>,
}

/// Judges a worker check's outputs: the check holds when the worker found nothing wrong and
/// every output matches. The message names who computed them; the details get the same
/// per-output record as the native check's.
fn judge_computed(check: &mut Check, computed: &Computed, golden: (&Path, &Golden), outputs_dir: &Path, expect: &Expectations<'_>) {
    let (golden_dir, golden) = golden;
    let judged = judge_outputs(golden_dir, golden, &computed.by, expect.atol, expect.rtol, |name| {
        let file = computed.outputs.get(name)?.as_ref()?;
        Some(tf::npy::read(&outputs_dir.join(file)).map(Cow::Owned).map_err(|e| e.to_string()))
    });
    let mut parts = Vec::new();
    if !judged.ok || check.ok {
        parts.push(format!("{}: {}", computed.by, judged.message));
    }
    if !check.message.is_empty() {
        parts.push(check.message.clone());
    }
    check.message = parts.join("; ");
    check.ok = check.ok && judged.ok;
    if let (Some(details), Value::Object(judged)) = (check.details.as_object_mut(), judged.details) {
        details.extend(judged);
    }
}

/// `training_flag`'s verdict, from the runs of `__call__` the worker wrote. Two runs give the
/// same outputs when every output agrees within the piece's tolerance, by the rule every output
/// is judged by ([`tf::compare`]): threaded reductions make two runs of one function differ in
/// their last bits (1e-6 on outputs near 1 at BERT-base size), so equal bits would fail a
/// correct model. Inference must give the same outputs twice; with dropout, training must not;
/// with dropout or batch normalization, training and inference must differ. The report keeps
/// the verdicts and the tolerance, not the differences between runs, which vary from run to run.
fn judge_training_flag(
    check: &mut Check,
    runs: &BTreeMap<String, Computed>,
    golden: &Golden,
    outputs_dir: &Path,
    expect: &Expectations<'_>,
) {
    let (atol, rtol) = (expect.atol, expect.rtol);
    let read = |run: &str, output: &str| -> Result<Option<Array>, String> {
        let Some(computed) = runs.get(run) else { return Err(format!("the worker wrote no `{run}` run")) };
        match computed.outputs.get(output) {
            Some(Some(file)) => tf::npy::read(&outputs_dir.join(file)).map(Some).map_err(|e| format!("{}: {e}", computed.by)),
            _ => Ok(None),
        }
    };
    // Whether runs `a` and `b` agree on every output both returned; on a disagreement, where.
    let agree = |a: &str, b: &str| -> Result<Option<String>, String> {
        for output in &golden.outputs {
            let (Some(first), Some(second)) = (read(a, &output.name)?, read(b, &output.name)?) else { continue };
            let comparison = tf::compare(&first, &second, atol, rtol);
            if !comparison.ok {
                return Ok(Some(format!("output `{}`: {comparison}", output.name)));
            }
        }
        Ok(None)
    };
    let verdicts = agree("false", "false_again").and_then(|inference| {
        let training = agree("true", "true_again")?;
        let flag = agree("false", "true")?;
        Ok((inference, training, flag))
    });
    let (inference, training, flag) = match verdicts {
        Ok(verdicts) => verdicts,
        Err(e) => {
            check.ok = false;
            check.message = format!("the runs could not be compared: {e}");
            return;
        }
    };
    let has_dropout = check.details["has_dropout"] == Value::Bool(true);
    let has_batch_norm = check.details["has_batch_norm"] == Value::Bool(true);
    let tolerance = format!("atol {} + rtol {}·|ref|", short_float(atol), short_float(rtol));
    let mut problems = Vec::new();
    if let Some(at) = &inference {
        problems.push(format!("training=False is not deterministic: two calls differ beyond {tolerance} ({at})"));
    }
    if has_dropout && training.is_none() {
        problems.push(format!("the model has dropout but training=True gave the same outputs twice (within {tolerance})"));
    }
    if (has_dropout || has_batch_norm) && flag.is_none() {
        problems.push(format!(
            "the model has dropout/batch-norm but training=True and training=False give the same outputs (within {tolerance})"
        ));
    }
    check.ok = check.ok && problems.is_empty();
    check.message = if problems.is_empty() {
        let mut message = format!("training=False deterministic within {tolerance}");
        if has_dropout {
            message.push_str("; training=True stochastic");
        }
        if has_dropout || has_batch_norm {
            message.push_str("; the training flag changes the outputs");
        }
        message
    } else {
        problems.join("; ")
    };
    if let Some(details) = check.details.as_object_mut() {
        details.insert("deterministic".into(), json!(inference.is_none()));
        details.insert("stochastic".into(), json!(training.is_some()));
        details.insert("training_changes_output".into(), json!(flag.is_some()));
        details.insert("atol".into(), json!(atol));
        details.insert("rtol".into(), json!(rtol));
    }
}

// ---------------------------------------------------------------------------------------------
// Lints.
// ---------------------------------------------------------------------------------------------

/// The guide's advice, checked: logits not probabilities, optimizer regularization that is
/// lost, dropout/batch-norm hyper-parameters chosen for consumers.
pub(crate) fn lints(piece: &Piece, inventory: &Inventory, facts: &SliceFacts) -> Vec<Warning> {
    let mut warnings = Vec::new();
    for output in &facts.outputs {
        let Some(activation) = output.activation.as_deref() else { continue };
        let (code, what_it_is) = match activation {
            "softmax" | "log_softmax" => (Lint::SoftmaxOutput, "a softmax"),
            "argmax" => (Lint::ArgmaxOutput, "an argmax"),
            "top_k" => (Lint::TopKOutput, "a top-k"),
            _ => continue,
        };
        let layer = inventory.layers.iter().find(|l| l.name == output.name);
        let help = match layer {
            Some(l) if matches!(l.class.as_str(), "Activation" | "Softmax") && l.inbound.len() == 1 => {
                format!("cut before it: `to = \"{}\"` gives consumers the logits", l.inbound[0])
            }
            Some(l) => {
                format!("layer `{}` ({}) applies it itself: give it a linear activation, or cut at the layer before it", l.name, l.class)
            }
            None => "cut the piece before the activation (`to` = the layer producing the logits)".to_string(),
        };
        warnings.push(Warning {
            code,
            message: format!(
                "output `{}` ends in {what_it_is}; consumers fine-tune on logits (the guide: output logits, not probabilities or top-k predictions)",
                output.name
            ),
            help: Some(help),
        });
    }
    if let Some(optimizer) = &inventory.optimizer {
        // A frozen piece is not fine-tuned through this package: nothing to warn about.
        if !optimizer.lost_regularization.is_empty() && piece.trainable {
            let lost: Vec<String> = optimizer.lost_regularization.iter().map(|r| format!("{} = {}", r.name, r.value)).collect();
            warnings.push(Warning {
                code: Lint::LostRegularization,
                message: format!(
                    "the source's {} optimizer regularizes with {}; no SavedModel can carry optimizer-level regularization",
                    optimizer.class,
                    lost.join(", ")
                ),
                help: Some("model.md tells consumers to set it on their own optimizer when fine-tuning".to_string()),
            });
        }
    }
    if facts.dropout_layers.unwrap_or(0) > 0 && piece.dropout.is_none() {
        warnings.push(Warning {
            code: Lint::DropoutNotSet,
            message: format!(
                "{} dropout layer(s) keep their training-time rate: no `dropout` setting chosen for consumers",
                facts.dropout_layers.unwrap_or(0)
            ),
            help: Some("set `dropout = <rate>` in [defaults], the model or the piece; the docs then record it".to_string()),
        });
    }
    if facts.batch_norm_layers.unwrap_or(0) > 0 && !piece.batch_norm.is_set() {
        warnings.push(Warning {
            code: Lint::BatchNormNotSet,
            message: format!(
                "{} batch-normalization layer(s) keep their training-time momentum/epsilon: no `batch-norm` setting chosen for consumers",
                facts.batch_norm_layers.unwrap_or(0)
            ),
            help: Some(
                "set `batch-norm = { momentum = 0.99, epsilon = 0.001 }` (or your values) in [defaults], the model or the piece"
                    .to_string(),
            ),
        });
    }
    warnings
}

// ---------------------------------------------------------------------------------------------
// Any SavedModel (`exportctl validate PATH`).
// ---------------------------------------------------------------------------------------------

/// Options of [`validate_saved_model`].
pub struct Standalone<'a> {
    /// A directory holding `golden.json` and the arrays it names; `None`: seeded random inputs
    /// for the serving signature, the native outputs as the reference.
    pub golden: Option<&'a Path>,
    pub batch: usize,
    pub seed: u64,
    pub atol: f64,
    pub rtol: f64,
    pub allow_optimizer: bool,
    pub fine_tune_step: bool,
    /// Where temporary golden files go (removed afterwards).
    pub scratch: &'a Path,
    /// Ops the op scan refuses that may run anyway (`--allow-op`).
    pub allow_ops: &'a [String],
}

/// Validate's checks on any SavedModel directory. Returns the report (not written anywhere).
pub fn validate_saved_model(native: &Native, worker: &mut Worker, dir: &Path, options: &Standalone<'_>) -> Result<Report, StepError> {
    super::refuse_untrusted_ops(dir, options.allow_ops, &format!("the SavedModel {}", dir.display()))?;
    let trainable = SavedModelPb::read(dir)
        .ok()
        .and_then(|pb| pb.meta_graph(&[tf::model::SERVE]).map(|m| variables::analyse(m).0.trainable))
        .unwrap_or(0);
    let expect = Expectations {
        atol: options.atol,
        rtol: options.rtol,
        allow_optimizer: options.allow_optimizer,
        declared: &[],
        fine_tune_step: options.fine_tune_step,
        expect_trainable: trainable > 0,
        require_training: false,
    };
    let generated;
    let (golden_dir, golden) = match options.golden {
        Some(dir) => (dir.to_path_buf(), read_json::<Golden>(&dir.join("golden.json"))?),
        None => {
            let scratch = crate::scratch::process_dir(options.scratch).map_err(|e| StepError::from_diagnostic(&e))?;
            generated = tempfile::Builder::new().prefix("golden-").tempdir_in(&scratch).map_err(io_error)?;
            match generate_golden(native, dir, generated.path(), options) {
                Ok(golden) => (generated.path().to_path_buf(), golden),
                Err(failed) => {
                    // No inputs could be made or run: the native checks that need none still
                    // run, and Python has nothing to be fed.
                    let mut native_report = native_checks(native, dir, None, &expect, &mut Clock::start());
                    if !native_report.checks.iter().any(|c| c.name == failed.name && !c.ok) {
                        native_report.checks.push(failed);
                    }
                    let reusable = ReusableReport {
                        ok: false,
                        checks: vec![check(
                            CheckName::Inputs,
                            false,
                            "skipped: the Reusable API checks need inputs, made for serving_default (or give --golden DIR)".into(),
                            Value::Null,
                        )],
                        ..ReusableReport::default()
                    };
                    return Ok(Report { format: 1, ok: false, native: finish(native_report), reusable, lints: Vec::new() });
                }
            }
        }
    };
    let mut clock = Clock::start();
    let native_report = native_checks(native, dir, Some((&golden_dir, &golden)), &expect, &mut clock);
    let dir = super::absolute(dir)?;
    let golden_dir = super::absolute(&golden_dir)?;
    let scratch = crate::scratch::process_dir(options.scratch).map_err(|e| StepError::from_diagnostic(&e))?;
    let outputs = tempfile::Builder::new().prefix("outputs-").tempdir_in(&scratch).map_err(io_error)?;
    let reusable = reusable_checks(worker, &dir, (&golden_dir, &golden), outputs.path(), &expect, "validate", &mut clock)
        .map_err(|e| StepError::from_diagnostic(&e))?;
    Ok(Report { format: 1, ok: native_report.ok && reusable.ok, native: native_report, reusable, lints: Vec::new() })
}

fn io_error(e: std::io::Error) -> StepError {
    StepError::new(format!("cannot make a temporary folder for golden files and outputs: {e}"))
}

/// Seeded random inputs for `serving_default`, and the native outputs as the reference,
/// written as a golden directory the worker reads. On failure, the failed check saying why.
fn generate_golden(native: &Native, dir: &Path, out: &Path, options: &Standalone<'_>) -> Result<Golden, Check> {
    let fail = |name: CheckName, message: String| check(name, false, message, Value::Null);
    let model = LoadedModel::load(native, dir).map_err(|e| {
        let details = help_text(&e).map_or(Value::Null, |help| json!({ "help": help }));
        check(CheckName::Load, false, e.to_string(), details)
    })?;
    let Some(signature) = model.signature(SERVING_DEFAULT) else {
        let available: Vec<&str> = model.signatures().iter().map(|s| s.key.as_str()).collect();
        return Err(fail(
            CheckName::Signature,
            format!(
                "no `serving_default` signature (the SavedModel has {}): TF Serving cannot call it, and there are no inputs to generate",
                if available.is_empty() { "none".to_string() } else { available.join(", ") }
            ),
        ));
    };
    let mut rng = SplitMix64(options.seed);
    let mut feeds = Vec::new();
    let mut inputs = Vec::new();
    std::fs::create_dir_all(out.join("inputs")).map_err(|e| fail(CheckName::Inputs, e.to_string()))?;
    std::fs::create_dir_all(out.join("outputs")).map_err(|e| fail(CheckName::Outputs, e.to_string()))?;
    for spec in &signature.inputs {
        // A signature of unknown rank (the guide's MyMulModel: `TensorSpec(shape=None)`) gets a
        // vector of `batch` values.
        let dims = spec.shape.clone().unwrap_or_else(|| vec![-1]);
        let shape: Vec<usize> = dims
            .iter()
            .enumerate()
            .map(|(i, &d)| {
                if d >= 0 {
                    d as usize
                } else if i == 0 {
                    options.batch
                } else {
                    8
                }
            })
            .collect();
        let array = random_array(spec.dtype, shape.clone(), &mut rng).ok_or_else(|| {
            fail(CheckName::Signature, format!("input `{}` is {}: give --golden DIR with its values", spec.key, spec.dtype))
        })?;
        let file = format!("inputs/{}.npy", file_name(&spec.key));
        tf::npy::write(&out.join(&file), &array).map_err(|e| fail(CheckName::Inputs, e.to_string()))?;
        inputs.push(GoldenTensor {
            name: spec.key.clone(),
            dtype: spec.dtype.name().into_owned(),
            shape: shape.iter().map(|&d| d as i64).collect(),
            file,
        });
        feeds.push((spec.key.clone(), array));
    }
    let got = model.run(SERVING_DEFAULT, &feeds).map_err(|e| {
        let details = help_text(&e).map_or(Value::Null, |help| json!({ "help": help }));
        check(CheckName::Outputs, false, e.to_string(), details)
    })?;
    let mut outputs = Vec::new();
    for (name, array) in &got {
        let file = format!("outputs/{}.npy", file_name(name));
        tf::npy::write(&out.join(&file), array).map_err(|e| fail(CheckName::Outputs, e.to_string()))?;
        outputs.push(GoldenTensor {
            name: name.clone(),
            dtype: array.dtype().name().into_owned(),
            shape: array.shape().iter().map(|&d| d as i64).collect(),
            file,
        });
    }
    let golden = Golden {
        format: 1,
        flavour: crate::contract::Flavour::SavedModel.as_str().into(),
        input_structure: if inputs.len() == 1 { "single" } else { "dict" }.into(),
        output_structure: "dict".into(),
        inputs,
        outputs,
        seed: options.seed,
        batch: options.batch as u64,
        source: "generated".into(),
        has_dropout: None,
        has_batch_norm: None,
        trainable: true,
    };
    let text = serde_json::to_string_pretty(&golden).expect("golden serialises");
    std::fs::write(out.join("golden.json"), text).map_err(|e| fail(CheckName::Inputs, e.to_string()))?;
    Ok(golden)
}

fn file_name(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' }).collect()
}

/// A small seeded generator (SplitMix64): the same inputs for the same seed, everywhere.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn uniform(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller).
    fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(f64::MIN_POSITIVE);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

/// Floats standard normal, integers uniform in [0, 10), bools fair coins (as the worker does).
fn random_array(dtype: DType, shape: Vec<usize>, rng: &mut SplitMix64) -> Option<Array> {
    let n: usize = shape.iter().product();
    let data: ArrayData = match dtype {
        DType::Float32 => (0..n).map(|_| rng.normal() as f32).collect::<Vec<_>>().into(),
        DType::Float64 => (0..n).map(|_| rng.normal()).collect::<Vec<_>>().into(),
        DType::Int32 => (0..n).map(|_| (rng.next() % 10) as i32).collect::<Vec<_>>().into(),
        DType::Int64 => (0..n).map(|_| (rng.next() % 10) as i64).collect::<Vec<_>>().into(),
        DType::Int8 => (0..n).map(|_| (rng.next() % 10) as i8).collect::<Vec<_>>().into(),
        DType::Int16 => (0..n).map(|_| (rng.next() % 10) as i16).collect::<Vec<_>>().into(),
        DType::UInt8 => (0..n).map(|_| (rng.next() % 10) as u8).collect::<Vec<_>>().into(),
        DType::UInt16 => (0..n).map(|_| (rng.next() % 10) as u16).collect::<Vec<_>>().into(),
        DType::UInt32 => (0..n).map(|_| (rng.next() % 10) as u32).collect::<Vec<_>>().into(),
        DType::UInt64 => (0..n).map(|_| rng.next() % 10).collect::<Vec<_>>().into(),
        DType::Bool => (0..n).map(|_| rng.next() & 1 == 1).collect::<Vec<_>>().into(),
        _ => return None,
    };
    Array::new(shape, data).ok()
}

/// The report as a person reads it: one line per check.
pub fn render_report(report: &Report) -> String {
    let mut out = String::new();
    for (title, checks) in
        [("Native (TensorFlow C API)", &report.native.checks), ("Reusable SavedModel API (Python)", &report.reusable.checks)]
    {
        out.push_str(title);
        out.push('\n');
        for c in checks {
            out.push_str(&format!("  {} {:<22} {}\n", if c.ok { "ok  " } else { "FAIL" }, c.name, c.message));
            if let (false, Some(help)) = (c.ok, c.details.get("help").and_then(Value::as_str)) {
                out.push_str(&format!("       {:<22} help: {help}\n", ""));
            }
        }
    }
    let values = &report.reusable.regularization_loss_values;
    if !values.is_empty() {
        let shown: Vec<String> = values.iter().map(|v| v.map_or("?".to_string(), short_float)).collect();
        out.push_str(&format!("regularization losses: {}\n", shown.join(", ")));
    }
    if let Some(hub) = &report.reusable.hub {
        out.push_str(&format!("hub.KerasLayer: {} trainable weights, {} moved by one fit step\n", hub.trainable_weights, hub.moved));
    }
    if let Some(keras3) = &report.reusable.keras3 {
        out.push_str(&format!(
            "keras.layers.TFSMLayer: {} trainable weights, {} moved by one fit step\n",
            keras3.trainable_weights, keras3.moved
        ));
    }
    for lint in &report.lints {
        out.push_str(&format!("warning[{}]: {}\n", lint.code, lint.message));
    }
    let failed = report.native.checks.iter().chain(&report.reusable.checks).filter(|c| !c.ok).count();
    if failed == 0 {
        out.push_str("valid: every check passed\n");
    } else {
        out.push_str(&format!("INVALID: {failed} check(s) failed\n"));
    }
    out
}

/// Reads a validate step's report.
pub(super) fn load(dir: &Path) -> Result<Report, StepError> {
    read_json(&dir.join(files::REPORT))
}

/// The golden directory of a trace entry (for `exportctl validate --golden`).
pub fn golden_dir_of(trace_dir: &Path) -> PathBuf {
    trace_dir.join(files::GOLDEN)
}

/// Per-output maxima of a report's native comparison, by output name (for provenance).
pub(super) fn max_differences(report: &Report) -> BTreeMap<String, f64> {
    report
        .native
        .checks
        .iter()
        .find(|c| c.name == CheckName::Outputs)
        .and_then(|c| c.details.get("outputs"))
        .and_then(Value::as_object)
        .map(|outputs| {
            outputs.iter().filter_map(|(name, d)| d.get("max_abs_diff").and_then(Value::as_f64).map(|v| (name.clone(), v))).collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{Cut, DocsSettings, GoldenInputs, ValidateSettings};

    fn piece(dropout: Option<f64>, batch_norm: BatchNorm) -> Piece {
        Piece {
            name: "p".into(),
            name_span: 0..0,
            cut: Cut::default(),
            trainable: true,
            dropout,
            batch_norm,
            validate: ValidateSettings { golden: GoldenInputs::Random { batch: 2, seed: 0 }, atol: 1e-5, rtol: 1e-5, fine_tune_step: true },
            docs: DocsSettings::default(),
            litert: None,
        }
    }

    fn inventory(json: Value) -> Inventory {
        serde_json::from_value(json).unwrap()
    }

    fn facts(json: Value) -> SliceFacts {
        serde_json::from_value(json).unwrap()
    }

    fn codes(warnings: &[Warning]) -> Vec<&str> {
        warnings.iter().map(|w| w.code.code()).collect()
    }

    #[test]
    fn a_softmax_output_is_linted_with_the_layer_to_cut_at() {
        let inv = inventory(json!({
            "flavour": "keras3", "model_file": "model.keras",
            "layers": [
                {"name": "logits", "class": "Dense", "inbound": ["embedding"]},
                {"name": "probabilities", "class": "Activation", "inbound": ["logits"]}
            ]
        }));
        let f = facts(json!({"model_file": "model.keras",
            "outputs": [{"name": "probabilities", "shape": [-1, 10], "dtype": "float32", "activation": "softmax"}]}));
        let warnings = lints(&piece(Some(0.1), BatchNorm::default()), &inv, &f);
        assert_eq!(codes(&warnings), vec!["softmax-output"]);
        assert!(warnings[0].message.contains("output `probabilities` ends in a softmax"), "{}", warnings[0].message);
        assert_eq!(warnings[0].help.as_deref(), Some("cut before it: `to = \"logits\"` gives consumers the logits"));
    }

    #[test]
    fn logits_argmax_and_top_k() {
        let inv = inventory(json!({"flavour": "keras3", "model_file": "model.keras"}));
        let f = facts(json!({"model_file": "model.keras", "outputs": [
            {"name": "logits", "shape": [-1, 10], "dtype": "float32", "activation": "linear"},
            {"name": "class", "shape": [-1], "dtype": "int64", "activation": "argmax"},
            {"name": "top", "shape": [-1, 5], "dtype": "float32", "activation": "top_k"}
        ]}));
        let warnings = lints(&piece(None, BatchNorm::default()), &inv, &f);
        assert_eq!(codes(&warnings), vec!["argmax-output", "top-k-output"]);
    }

    #[test]
    fn lost_optimizer_regularization_is_linted() {
        let inv = inventory(json!({"flavour": "tf-keras", "model_file": "model.h5",
            "optimizer": {"class": "Ftrl", "lost_regularization": [{"name": "l1_regularization_strength", "value": 0.01}], "bytes_in_source": 100}}));
        let f = facts(json!({"model_file": "model.h5"}));
        let warnings = lints(&piece(None, BatchNorm::default()), &inv, &f);
        assert_eq!(codes(&warnings), vec!["lost-regularization"]);
        assert!(warnings[0].message.contains("Ftrl optimizer regularizes with l1_regularization_strength = 0.01"));
        let mut frozen = piece(None, BatchNorm::default());
        frozen.trainable = false;
        assert!(lints(&frozen, &inv, &f).is_empty(), "a frozen piece is not fine-tuned through the package");
    }

    #[test]
    fn dropout_and_batch_norm_without_settings_are_linted_only_when_present_and_unset() {
        let inv = inventory(json!({"flavour": "keras3", "model_file": "model.keras"}));
        let f = facts(json!({"model_file": "model.keras", "dropout_layers": 2, "batch_norm_layers": 1}));
        let unset = lints(&piece(None, BatchNorm::default()), &inv, &f);
        assert_eq!(codes(&unset), vec!["dropout-not-set", "batch-norm-not-set"]);
        assert!(unset[0].message.contains("2 dropout layer(s)"));
        let set = lints(&piece(Some(0.1), BatchNorm { momentum: Some(0.99), epsilon: None }), &inv, &f);
        assert!(set.is_empty(), "{set:?}");
        let none = facts(json!({"model_file": "model.keras", "dropout_layers": 0, "batch_norm_layers": 0}));
        assert!(lints(&piece(None, BatchNorm::default()), &inv, &none).is_empty());
    }

    #[test]
    fn generated_inputs_depend_only_on_the_seed() {
        let a = random_array(DType::Float32, vec![2, 3], &mut SplitMix64(7)).unwrap();
        let b = random_array(DType::Float32, vec![2, 3], &mut SplitMix64(7)).unwrap();
        let c = random_array(DType::Float32, vec![2, 3], &mut SplitMix64(8)).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        let ints = random_array(DType::Int32, vec![100], &mut SplitMix64(0)).unwrap();
        let ArrayData::Int32(v) = ints.data() else { panic!() };
        assert!(v.iter().all(|&x| (0..10).contains(&x)));
        assert!(random_array(DType::String, vec![1], &mut SplitMix64(0)).is_none());
    }

    #[test]
    fn signature_problems_name_what_differs() {
        use tf::signature::{Encoding, TensorSpec};
        let spec = |key: &str, dtype, shape: Vec<i64>| TensorSpec {
            key: key.into(),
            tensor: format!("serving_default_{key}:0"),
            dtype,
            shape: Some(shape),
            encoding: Encoding::Dense,
        };
        let signature = tf::Signature {
            key: "serving_default".into(),
            method: "tensorflow/serving/predict".into(),
            inputs: vec![spec("x", DType::Float32, vec![-1, 4])],
            outputs: vec![spec("y", DType::Float32, vec![-1, 3])],
        };
        let tensor =
            |name: &str, dtype: &str, shape: Vec<i64>| GoldenTensor { name: name.into(), dtype: dtype.into(), shape, file: String::new() };
        let golden = Golden {
            format: 1,
            flavour: "keras3".into(),
            input_structure: "single".into(),
            output_structure: "single".into(),
            inputs: vec![tensor("x", "float32", vec![2, 4])],
            outputs: vec![tensor("logits", "float32", vec![2, 3])],
            seed: 0,
            batch: 2,
            source: "generated".into(),
            has_dropout: None,
            has_batch_norm: None,
            trainable: true,
        };
        let declared = [InputSpec { name: "x".into(), shape: vec![-1, 5], dtype: "float32".into() }];
        let problems = signature_problems(&signature, &golden, &declared);
        assert_eq!(
            problems,
            vec![
                "output `logits`: expected in serving_default, missing",
                "output `y`: not expected (reference outputs: logits)",
                "input `x`: the manifest declares shape [-1, 5], serving_default has [-1, 4]",
            ]
        );
    }

    /// A golden folder with one reference output per `(name, array)`.
    fn golden_with(dir: &Path, outputs: &[(&str, Array)]) -> Golden {
        let mut tensors = Vec::new();
        for (i, (name, array)) in outputs.iter().enumerate() {
            let file = format!("out{i}.npy");
            tf::npy::write(&dir.join(&file), array).unwrap();
            let shape = array.shape().iter().map(|&d| d as i64).collect();
            tensors.push(GoldenTensor { name: name.to_string(), dtype: array.dtype().to_string(), shape, file });
        }
        Golden {
            format: 1,
            flavour: "keras3".into(),
            input_structure: "single".into(),
            output_structure: "dict".into(),
            inputs: Vec::new(),
            outputs: tensors,
            seed: 0,
            batch: 2,
            source: "keras".into(),
            has_dropout: None,
            has_batch_norm: None,
            trainable: true,
        }
    }

    fn expectations() -> Expectations<'static> {
        Expectations {
            atol: 1e-5,
            rtol: 1e-5,
            allow_optimizer: false,
            declared: &[],
            fine_tune_step: true,
            expect_trainable: true,
            require_training: true,
        }
    }

    /// What the worker hands over for a check that ran the package: its verdict on everything
    /// else, and its outputs as files.
    fn worker_check(name: CheckName, ok: bool, message: &str) -> Check {
        check(name, ok, message.into(), json!({"takes_training": true}))
    }

    fn computed(outputs: &[(&str, Option<&str>)]) -> Computed {
        Computed {
            by: "__call__(training=False)".into(),
            outputs: outputs.iter().map(|(n, f)| (n.to_string(), f.map(String::from))).collect(),
        }
    }

    #[test]
    fn the_workers_outputs_are_judged_by_the_native_rule_dtypes_included() {
        let dir = tempfile::tempdir().unwrap();
        let golden = golden_with(dir.path(), &[("logits", Array::vector(vec![1.0f32, 2.0])), ("ids", Array::vector(vec![3i64, 4]))]);
        let outputs = dir.path().join("outputs");
        std::fs::create_dir(&outputs).unwrap();
        // The same values, but float64 where the reference is float32: the rule the native
        // check applies fails it, whoever computed it.
        tf::npy::write(&outputs.join("0.npy"), &Array::vector(vec![1.0f64, 2.0])).unwrap();
        tf::npy::write(&outputs.join("1.npy"), &Array::vector(vec![3i64, 4])).unwrap();
        let mut c = worker_check(CheckName::CallTrainingFalse, true, "");
        judge_computed(
            &mut c,
            &computed(&[("logits", Some("0.npy")), ("ids", Some("1.npy"))]),
            (dir.path(), &golden),
            &outputs,
            &expectations(),
        );
        assert!(!c.ok);
        assert_eq!(c.message, "__call__(training=False): output `logits`: dtype float32 expected, got float64; 2 elements within tolerance; max |diff| 0 at [0] (tolerance there 2.00e-5)");
        assert_eq!(c.details["outputs"]["logits"]["dtype"], "float64");
        assert_eq!(c.details["outputs"]["ids"]["mismatches"], 0);
        assert_eq!(c.details["takes_training"], true, "the worker's details are kept");

        // Integers get the same tolerance rule as in the native check (not exact equality).
        tf::npy::write(&outputs.join("0.npy"), &Array::vector(vec![1.0f32, 2.00001])).unwrap();
        tf::npy::write(&outputs.join("1.npy"), &Array::vector(vec![3i64, 5])).unwrap();
        let mut c = worker_check(CheckName::ServingDefault, true, "");
        judge_computed(
            &mut c,
            &computed(&[("logits", Some("0.npy")), ("ids", Some("1.npy"))]),
            (dir.path(), &golden),
            &outputs,
            &expectations(),
        );
        assert!(!c.ok);
        assert!(c.message.contains("output `ids`: 1 of 2 elements outside tolerance"), "{}", c.message);
        assert!(!c.message.contains("output `logits`"), "{}", c.message);
    }

    #[test]
    fn a_judged_check_keeps_what_else_the_worker_found() {
        let dir = tempfile::tempdir().unwrap();
        let golden = golden_with(dir.path(), &[("y", Array::vector(vec![0.5f32]))]);
        let outputs = dir.path().join("outputs");
        std::fs::create_dir(&outputs).unwrap();
        tf::npy::write(&outputs.join("0.npy"), &Array::vector(vec![0.5f32])).unwrap();
        let both = computed(&[("y", Some("0.npy"))]);

        let mut c = worker_check(CheckName::Keras3TfsmLayer, true, "all 6 trainable weights get a gradient");
        judge_computed(&mut c, &both, (dir.path(), &golden), &outputs, &expectations());
        assert!(c.ok);
        assert_eq!(
            c.message,
            "__call__(training=False): 1 output(s) match the reference within atol 1e-5 + rtol 1e-5·|ref| (max |diff| 0); \
             all 6 trainable weights get a gradient"
        );

        let mut c = worker_check(CheckName::Keras3TfsmLayer, false, "one fit step moved none of the 6 trainable weights");
        judge_computed(&mut c, &both, (dir.path(), &golden), &outputs, &expectations());
        assert_eq!((c.ok, c.message.as_str()), (false, "one fit step moved none of the 6 trainable weights"));

        let mut c = worker_check(CheckName::ServingDefault, true, "");
        judge_computed(&mut c, &computed(&[("y", None)]), (dir.path(), &golden), &outputs, &expectations());
        assert_eq!(
            (c.ok, c.message.as_str()),
            (false, "__call__(training=False): output `y`: expected, but __call__(training=False) did not return it")
        );
    }

    /// training_flag's runs for one output `y`, each written as `<run>.npy`.
    fn flag_runs(outputs: &Path, runs: &[(&str, Vec<f32>)]) -> BTreeMap<String, Computed> {
        runs.iter()
            .map(|(run, values)| {
                let file = format!("{run}.npy");
                tf::npy::write(&outputs.join(&file), &Array::vector(values.clone())).unwrap();
                (run.to_string(), Computed { by: run.to_string(), outputs: [("y".to_string(), Some(file))].into() })
            })
            .collect()
    }

    #[test]
    fn the_training_flag_compares_runs_within_the_tolerance_not_bit_for_bit() {
        let dir = tempfile::tempdir().unwrap();
        let golden = golden_with(dir.path(), &[("y", Array::vector(vec![0.9f32, -0.3]))]);
        let outputs = dir.path().join("outputs");
        std::fs::create_dir(&outputs).unwrap();
        let flag = || check(CheckName::TrainingFlag, true, String::new(), json!({"has_dropout": true, "has_batch_norm": false}));

        // Two inference runs 1.1e-6 apart on outputs near 0.9 (threaded reductions, as at
        // BERT-base size) are the same run; dropout makes the training runs differ.
        let runs = flag_runs(
            &outputs,
            &[
                ("false", vec![0.9, -0.3]),
                ("false_again", vec![0.900_001_1, -0.3]),
                ("true", vec![0.2, -0.1]),
                ("true_again", vec![0.7, 0.0]),
            ],
        );
        let mut c = flag();
        judge_training_flag(&mut c, &runs, &golden, &outputs, &expectations());
        assert!(c.ok, "{}", c.message);
        assert_eq!(
            c.message,
            "training=False deterministic within atol 1e-5 + rtol 1e-5·|ref|; training=True stochastic; the training flag changes the outputs"
        );
        assert_eq!((&c.details["deterministic"], &c.details["stochastic"], &c.details["atol"]), (&json!(true), &json!(true), &json!(1e-5)));

        // Inference that is random fails, and says where.
        let runs = flag_runs(
            &outputs,
            &[("false", vec![0.9, -0.3]), ("false_again", vec![0.95, -0.3]), ("true", vec![0.2, -0.1]), ("true_again", vec![0.7, 0.0])],
        );
        let mut c = flag();
        judge_training_flag(&mut c, &runs, &golden, &outputs, &expectations());
        assert!(!c.ok);
        assert!(
            c.message.starts_with("training=False is not deterministic: two calls differ beyond atol 1e-5 + rtol 1e-5·|ref| (output `y`: "),
            "{}",
            c.message
        );

        // Dropout that training=True ignores: runs a last bit apart are still the same.
        let runs = flag_runs(
            &outputs,
            &[
                ("false", vec![0.9, -0.3]),
                ("false_again", vec![0.9, -0.3]),
                ("true", vec![0.900_000_1, -0.3]),
                ("true_again", vec![0.9, -0.3]),
            ],
        );
        let mut c = flag();
        judge_training_flag(&mut c, &runs, &golden, &outputs, &expectations());
        assert!(!c.ok);
        assert_eq!(
            c.message,
            "the model has dropout but training=True gave the same outputs twice (within atol 1e-5 + rtol 1e-5·|ref|); \
             the model has dropout/batch-norm but training=True and training=False give the same outputs (within atol 1e-5 + rtol 1e-5·|ref|)"
        );
        assert_eq!(c.details["stochastic"], false);
    }
}
