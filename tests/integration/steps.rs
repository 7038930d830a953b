//! The five steps on real models, driven directly through `TfSteps` (no engine): the real
//! Python worker and the real native library, on the quickstart's committed Keras 3 model and
//! the low-level example's hand-written SavedModel.
//!
//! Each project's steps run once per test run (`OnceLock`) in dependency order, each into its
//! own output directory, with one worker shared by every test of this module; the tests then
//! read what the steps wrote. Numbers are asserted, not just success.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use exportctl::contract::CheckName;
use exportctl::exec::{Dependency, StepContext, StepError, StepOutcome, StepRunner};
use exportctl::manifest::{self, Manifest};
use exportctl::plan::{Plan, StepId, StepKind};
use exportctl::runtime::pool::WorkerPool;
use exportctl::runtime::worker::WorkerOptions;
use exportctl::steps::{Report, TfSteps};
use exportctl::tf::{self, Native, TfLogs};
use serde_json::Value;

use crate::support::{repo, runtime, Project};

/// One worker for the whole module: TensorFlow is imported once.
fn shared_workers() -> Arc<WorkerPool> {
    static POOL: OnceLock<Arc<WorkerPool>> = OnceLock::new();
    POOL.get_or_init(|| Arc::new(WorkerPool::new(runtime(), WorkerOptions::default(), 1))).clone()
}

fn native() -> &'static Native {
    let dir = runtime().require_tensorflow_dir().expect("the runtime has TensorFlow");
    Native::load(dir, &exportctl::runtime::home().join("native"), TfLogs::Quiet).expect("the native library loads")
}

/// A project and the outputs of the steps run so far.
struct Build {
    project: Project,
    manifest: Arc<Manifest>,
    steps: TfSteps,
    outputs: Mutex<BTreeMap<StepId, PathBuf>>,
}

impl Build {
    /// Copies `examples/<example>` into a temporary project, with `extra` appended to its manifest.
    fn example(example: &str, extra: &str) -> Build {
        let project = Project::example(example);
        let manifest_path = project.path().join("Export.toml");
        let mut text = std::fs::read_to_string(&manifest_path).unwrap();
        text.push_str(extra);
        std::fs::write(&manifest_path, text).unwrap();
        Build::open(project)
    }

    fn open(project: Project) -> Build {
        let manifest = Arc::new(
            manifest::load(&project.path().join("Export.toml"), "Export.toml")
                .unwrap_or_else(|e| panic!("the test manifest is valid: {e}")),
        );
        let steps = TfSteps::with_pool(
            manifest.clone(),
            std::sync::Arc::new(exportctl::runtime::Provider::ready(runtime().clone())),
            shared_workers(),
            0,
        );
        Build { project, manifest, steps, outputs: Mutex::new(BTreeMap::new()) }
    }

    /// Runs one step into a fresh directory, given every output so far as its dependencies.
    fn run(&self, id: &StepId) -> Result<(StepOutcome, PathBuf), StepError> {
        let deps: BTreeMap<StepId, Dependency> = self
            .outputs
            .lock()
            .unwrap()
            .iter()
            .map(|(id, dir)| (id.clone(), Dependency { id: id.clone(), dir: dir.clone(), files: Default::default() }))
            .collect();
        self.run_with(id, &deps)
    }

    fn run_with(&self, id: &StepId, deps: &BTreeMap<StepId, Dependency>) -> Result<(StepOutcome, PathBuf), StepError> {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let out = self.project.path().join("out").join(format!(
            "{}-{}",
            id.to_string().replace(['/', ':'], "_"),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&out).unwrap();
        let cancelled = AtomicBool::new(false);
        let cx = StepContext { root: &self.manifest.root, out: &out, deps, cancelled: &cancelled };
        let outcome = self.steps.run(id, &cx)?;
        self.outputs.lock().unwrap().insert(id.clone(), out.clone());
        Ok((outcome, out))
    }

    /// Runs a piece's steps up to and including `last`, panicking on a failure.
    fn chain(&self, model: &str, piece: &str, last: StepKind) -> BTreeMap<StepKind, StepOutcome> {
        let mut outcomes = BTreeMap::new();
        let export = StepId { model: model.into(), piece: None, kind: StepKind::Export };
        if !self.outputs.lock().unwrap().contains_key(&export) {
            let (outcome, _) = self.run(&export).unwrap_or_else(|e| panic!("{export}: {e}\n{:?}", e.help));
            outcomes.insert(StepKind::Export, outcome);
        }
        // A LiteRT piece's package also waits for its LiteRT steps.
        let litert = self.manifest.model(model).and_then(|m| m.piece(piece)).is_some_and(|p| p.litert.is_some());
        let kinds = StepKind::ALL.into_iter().filter(|k| *k != StepKind::Export);
        for kind in kinds.filter(|k| litert || !matches!(k, StepKind::ConvertLitert | StepKind::ValidateLitert)) {
            let id = piece_step(model, piece, kind);
            let (outcome, _) = self.run(&id).unwrap_or_else(|e| panic!("{id}: {e}\n{:?}", e.help));
            outcomes.insert(kind, outcome);
            if kind == last {
                break;
            }
        }
        outcomes
    }

    fn dir(&self, id: &StepId) -> PathBuf {
        self.outputs.lock().unwrap().get(id).cloned().unwrap_or_else(|| panic!("{id} has not run"))
    }

    fn json(&self, id: &StepId, file: &str) -> Value {
        serde_json::from_str(&std::fs::read_to_string(self.dir(id).join(file)).unwrap()).unwrap()
    }
}

fn piece_step(model: &str, piece: &str, kind: StepKind) -> StepId {
    StepId { model: model.into(), piece: Some(piece.into()), kind }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &to.join(&name));
        } else {
            std::fs::copy(entry.path(), to.join(&name)).unwrap();
        }
    }
}

/// The quickstart plus pieces made to go wrong: one that ends in the softmax, one whose `to`
/// has a typo, one cut backwards.
const QUICKSTART_EXTRA: &str = r#"
[[models.classifier.pieces]]
name = "probabilities"
docs = { task = "text-classification" }

[[models.classifier.pieces]]
name = "typo"
to = "logitz"

[[models.classifier.pieces]]
name = "backwards"
from = "embedding"
to = "hidden"
"#;

/// The quickstart, with the `classifier` piece built through package.
struct Quickstart {
    build: Build,
    outcomes: BTreeMap<StepKind, StepOutcome>,
}

fn quickstart() -> &'static Quickstart {
    static QUICKSTART: OnceLock<Quickstart> = OnceLock::new();
    QUICKSTART.get_or_init(|| {
        let build = Build::example("quickstart", QUICKSTART_EXTRA);
        let outcomes = build.chain("classifier", "classifier", StepKind::Package);
        Quickstart { build, outcomes }
    })
}

fn step(kind: StepKind) -> StepId {
    piece_step("classifier", "classifier", kind)
}

fn report(build: &Build, id: &StepId) -> Report {
    serde_json::from_value(build.json(id, "report.json")).unwrap()
}

#[test]
fn the_optimizer_is_left_out_and_proven_absent() {
    let q = quickstart();
    let export = q.build.json(&StepId { model: "classifier".into(), piece: None, kind: StepKind::Export }, "inventory.json");
    assert_eq!(export["optimizer"]["class"], "Adam");
    let optimizer_bytes = export["optimizer"]["bytes_in_source"].as_u64().unwrap();
    assert!(optimizer_bytes > 20_000, "Adam's state of 3,626 trainable weights: {optimizer_bytes} bytes");
    assert!(
        q.outcomes[&StepKind::Export].summary.contains("Adam optimizer state (28.3 KiB) left out"),
        "{}",
        q.outcomes[&StepKind::Export].summary
    );

    // The dropout and batch-norm settings rewrote the layers' configuration (train.py used
    // dropout 0.3).
    let layer = |name: &str| export["layers"].as_array().unwrap().iter().find(|l| l["name"] == name).unwrap().clone();
    assert_eq!(layer("dropout")["dropout_rate"], 0.1);
    assert_eq!(layer("hidden_bn")["batch_norm"]["momentum"], 0.99);
    // Export and slice keep a recipe and a cut, never a copy of the weights: trace builds the
    // piece again from the project's own model file.
    let export_dir = q.build.dir(&StepId { model: "classifier".into(), piece: None, kind: StepKind::Export });
    let recipe: Value = serde_json::from_str(&std::fs::read_to_string(export_dir.join("recipe.json")).unwrap()).unwrap();
    assert_eq!(recipe["path"], "models/classifier.keras");
    assert_eq!(recipe["dropout"], 0.1);
    let piece: Value =
        serde_json::from_str(&std::fs::read_to_string(q.build.dir(&step(StepKind::Slice)).join("piece.json")).unwrap()).unwrap();
    assert_eq!(piece["to"], serde_json::json!(["logits"]));
    for dir in [export_dir, q.build.dir(&step(StepKind::Slice))] {
        let names: Vec<String> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        assert!(!names.iter().any(|n| n.ends_with(".keras") || n.ends_with(".h5") || n == "saved_model"), "{names:?}");
    }

    // Read natively from the traced SavedModel: model variables only.
    let inspection = tf::inspect(native(), &q.build.dir(&step(StepKind::Trace)).join("saved_model"), &[]).unwrap();
    assert!(!inspection.optimizer.present, "{:?}", inspection.optimizer);
    assert_eq!(inspection.optimizer.variables.len(), 0);
    assert_eq!(inspection.variables.trainable, 8, "4 Dense kernels and biases... {:?}", inspection.variables.list);

    let report = report(&q.build, &step(StepKind::Validate));
    let native_check = report.native.checks.iter().find(|c| c.name == CheckName::NoOptimizerState).unwrap();
    assert!(native_check.ok, "{native_check:?}");
    let variables = report.native.variables.unwrap();
    assert_eq!((variables.optimizer_variables, variables.optimizer_bytes), (0, 0));
    assert!(report.reusable.checks.iter().any(|c| c.name == CheckName::NoOptimizerState && c.ok));

    // And the archive holds no more than the SavedModel: 6 entries, no optimizer.
    let archive = q.build.dir(&step(StepKind::Package)).join("model.tar.gz");
    let scratch = tempfile::tempdir().unwrap();
    let packaged = tf::inspect_archive(native(), &archive, scratch.path(), &[]).unwrap();
    assert!(!packaged.optimizer.present);
    assert_eq!(packaged.variables.count, inspection.variables.count);
}

#[test]
fn the_package_matches_the_keras_model_within_tolerance() {
    let q = quickstart();
    let trace = q.build.dir(&step(StepKind::Trace));
    let inputs = trace.join("golden/inputs/features.npy");
    // The reference, computed independently of exportctl: Keras 3 loads the source file.
    let keras_out = q.build.project.path().join("keras_logits.npy");
    let script = format!(
        "import keras, numpy as np\n\
         m = keras.saving.load_model({model:?}, compile=False)\n\
         logits = keras.Model(m.inputs, m.get_layer('logits').output)\n\
         np.save({out:?}, logits(np.load({inputs:?}), training=False).numpy())\n",
        model = q.build.project.path().join("models/classifier.keras"),
        out = keras_out,
        inputs = inputs,
    );
    let output = Command::new(&runtime().python).arg("-c").arg(&script).env("TF_CPP_MIN_LOG_LEVEL", "3").output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let expected = tf::npy::read(&keras_out).unwrap();

    // The packaged archive, unpacked and run by the C API as TF Serving would.
    let archive = q.build.dir(&step(StepKind::Package)).join("model.tar.gz");
    let scratch = tempfile::tempdir().unwrap();
    let unpacked = tf::extract_archive(&archive, scratch.path()).unwrap();
    let x = tf::npy::read(&inputs).unwrap();
    let got = tf::run_signature(native(), unpacked.path(), "serving_default", &[("features".into(), x)]).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, "logits");
    assert_eq!(got[0].1.shape(), &[4, 10]);
    let comparison = tf::compare(&expected, &got[0].1, 1e-5, 1e-5);
    assert!(comparison.ok, "{comparison}");

    // validate said the same: every check passed, native max |diff| within atol + rtol*|ref|.
    let report = report(&q.build, &step(StepKind::Validate));
    assert!(report.ok);
    let outputs = report.native.checks.iter().find(|c| c.name == CheckName::Outputs).unwrap();
    let diff = outputs.details["outputs"]["logits"]["max_abs_diff"].as_f64().unwrap();
    let tolerance = outputs.details["outputs"]["logits"]["tolerance"].as_f64().unwrap();
    assert!(diff <= tolerance && tolerance >= 1e-5, "{diff} vs {tolerance}");
    assert_eq!(
        report.native.checks.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        ["load", "no_optimizer_state", "signature", "outputs"]
    );
    assert_eq!(report.reusable.checks.len(), 13, "{:#?}", report.reusable.checks);
    assert_eq!(report.reusable.checks.last().map(|c| c.name.as_str()), Some("keras3_tfsm_layer"));
}

#[test]
fn regularization_losses_and_fine_tuning_survive_the_export() {
    let q = quickstart();
    let trace = q.build.json(&step(StepKind::Trace), "trace.json");
    assert_eq!(trace["regularization_losses"], 1, "one L2 kernel regularizer");
    assert_eq!(trace["trainable_variables"], 8);
    assert_eq!(trace["has_dropout"], true);
    assert_eq!(trace["has_batch_norm"], true);

    let report = report(&q.build, &step(StepKind::Validate));
    assert_eq!(report.reusable.regularization_loss_values.len(), 1);
    let loss = report.reusable.regularization_loss_values[0].unwrap();
    assert!(loss > 0.0 && loss < 0.1, "1e-4 * sum(kernel**2) of a 16x64 kernel: {loss}");
    let hub = report.reusable.hub.clone().expect("tensorflow_hub is in the managed runtime");
    assert_eq!((hub.trainable_weights, hub.moved, hub.losses), (8, 8, 1), "hub.KerasLayer fine-tuned every weight");
    let flag = report.reusable.checks.iter().find(|c| c.name == CheckName::TrainingFlag).unwrap();
    assert_eq!(flag.details["stochastic"], true, "dropout makes training=True stochastic");
    assert!(report.reusable.checks.iter().all(|c| c.details.get("seconds").is_none()), "reports carry no timings");

    let md = std::fs::read_to_string(q.build.dir(&step(StepKind::Package)).join("model.md")).unwrap();
    assert!(md.starts_with("# Module exportctl-examples/classifier-classifier/1\nA small dense classifier"), "{md}");
    assert!(md.contains("- **Trainable variables**: 8 of 11 variables (3,626 of 3,754 parameters)."), "{md}");
    assert!(md.contains(&format!("value at export: {}", exportctl_short(loss))), "{md}");
    assert!(md.contains("- **Dropout**: 1 layer(s), rate set to 0.1 for consumers."), "{md}");
    assert!(md.contains("momentum 0.99, epsilon 0.001 set for consumers"), "{md}");
    assert!(md.contains("trained with Adam; its state (28.3 KiB) is not part of this package"), "{md}");
    assert!(md.trim_end().ends_with("labelled by their largest coordinate."), "the docs body comes last");
}

/// 4 significant digits, as model.md writes regularization values.
fn exportctl_short(v: f64) -> String {
    let digits = (3 - v.abs().log10().floor() as i32).max(0) as usize;
    let text = format!("{v:.digits$}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[test]
fn two_packagings_give_identical_bytes() {
    let q = quickstart();
    let first = q.build.dir(&step(StepKind::Package));
    let (_, second) = q.build.run(&step(StepKind::Package)).unwrap();
    assert_ne!(first, second);
    for file in ["model.tar.gz", "model.md", "build.json"] {
        let (a, b) = (std::fs::read(first.join(file)).unwrap(), std::fs::read(second.join(file)).unwrap());
        assert!(a == b, "{file} differs between two packagings of the same SavedModel");
    }
    let build = std::fs::read_to_string(first.join("build.json")).unwrap();
    let root = q.build.project.path().to_string_lossy().into_owned();
    assert!(!build.contains(&root) && !build.contains("/tmp/") && !build.contains("/root/"), "no absolute paths: {build}");
    let build: Value = serde_json::from_str(&build).unwrap();
    assert_eq!(build["inputs"][0]["path"], "models/classifier.keras");
    assert_eq!(
        build["inputs"][0]["digest"].as_str().unwrap(),
        exportctl::hash::digest_file(&q.build.project.path().join("models/classifier.keras")).unwrap()
    );
    assert_eq!(
        build["outputs"]["model.tar.gz"]["digest"].as_str().unwrap(),
        exportctl::hash::digest_file(&first.join("model.tar.gz")).unwrap()
    );
    assert_eq!(build["validation"]["hub"]["moved"], 8);
}

#[test]
fn a_piece_ending_in_softmax_is_linted() {
    let q = quickstart();
    let outcomes = q.build.chain("classifier", "probabilities", StepKind::Validate);
    let warnings = &outcomes[&StepKind::Validate].warnings;
    let softmax: Vec<_> = warnings.iter().filter(|w| w.code == "softmax-output").collect();
    assert_eq!(softmax.len(), 1, "{warnings:?}");
    assert!(softmax[0].message.contains("output `probabilities` ends in a softmax"), "{}", softmax[0].message);
    assert_eq!(softmax[0].help.as_deref(), Some("cut before it: `to = \"logits\"` gives consumers the logits"));
    // The classifier piece, cut at the logits, has no such warning.
    assert!(q.outcomes[&StepKind::Validate].warnings.is_empty(), "{:?}", q.outcomes[&StepKind::Validate].warnings);
}

#[test]
fn an_unknown_to_layer_points_at_the_manifest_with_a_suggestion() {
    let q = quickstart();
    let error = q.build.run(&piece_step("classifier", "typo", StepKind::Slice)).unwrap_err();
    let text = std::fs::read_to_string(q.build.project.path().join("Export.toml")).unwrap();
    let line = text.lines().position(|l| l == "to = \"logitz\"").unwrap() + 1;
    let first_line = error.message.lines().next().unwrap();
    assert_eq!(first_line, format!("Export.toml:{line}:6: model `classifier` has no layer `logitz` (`to` of piece `typo`)"));
    assert!(error.message.contains(&format!("{line} | to = \"logitz\"")), "{}", error.message);
    assert!(error.message.contains("|      ^^^^^^^^ here"), "{}", error.message);
    assert_eq!(error.help.as_deref(), Some("did you mean `logits`?"));
}

#[test]
fn a_cut_not_aligned_with_layers_names_the_path_that_bypasses_it() {
    let q = quickstart();
    let error = q.build.run(&piece_step("classifier", "backwards", StepKind::Slice)).unwrap_err();
    let text = std::fs::read_to_string(q.build.project.path().join("Export.toml")).unwrap();
    let line = text.lines().position(|l| l == "to = \"hidden\"").unwrap() + 1;
    assert!(
        error.message.starts_with(&format!("Export.toml:{line}:6: the cut of piece `backwards` is not aligned with layers: ")),
        "{}",
        error.message
    );
    assert!(error.help.as_deref().unwrap().ends_with("this one does not: hidden <- features"), "{:?}", error.help);
}

#[test]
fn a_failed_comparison_names_the_output_the_values_and_the_tolerance() {
    let q = quickstart();
    // A trace whose reference output is off by 0.5 at [1, 3].
    let trace = q.build.dir(&step(StepKind::Trace));
    let broken = q.build.project.path().join("broken-trace");
    copy_dir(&trace, &broken);
    let path = broken.join("golden/outputs/logits.npy");
    let array = tf::npy::read(&path).unwrap();
    let tf::ArrayData::Float32(mut values) = array.data().clone() else { panic!("float32 logits") };
    let original = values[13];
    values[13] += 0.5;
    tf::npy::write(&path, &tf::Array::new(vec![4, 10], values).unwrap()).unwrap();

    let mut deps: BTreeMap<StepId, Dependency> = q
        .build
        .outputs
        .lock()
        .unwrap()
        .iter()
        .map(|(id, dir)| (id.clone(), Dependency { id: id.clone(), dir: dir.clone(), files: Default::default() }))
        .collect();
    deps.insert(step(StepKind::Trace), Dependency { id: step(StepKind::Trace), dir: broken, files: Default::default() });
    let error = q.build.run_with(&step(StepKind::Validate), &deps).unwrap_err();
    let message = &error.message;
    assert!(message.starts_with("5 of 17 validation checks failed"), "{message}");
    // One judge: every loader's outputs are compared by the same rule, in the same words.
    let judged = "output `logits`: 1 of 40 elements outside tolerance; worst at [1, 3]";
    for failed in [
        format!("native check `outputs`: {judged}"),
        format!("reusable API check `call_training_false`: __call__(training=False): {judged}"),
        format!("reusable API check `serving_default`: serving_default: {judged}"),
        format!("reusable API check `hub_keras_layer`: hub.KerasLayer in a tf_keras model: {judged}"),
        format!("reusable API check `keras3_tfsm_layer`: keras.layers.TFSMLayer in a Keras 3 model: {judged}"),
    ] {
        assert!(message.contains(&failed), "{failed}\nnot in\n{message}");
    }
    assert!(message.contains(&format!("got {}", original as f64)), "{message}");
    assert!(message.contains("> tolerance"), "{message}");
    assert!(error.help.as_deref().unwrap().contains("validate.atol"), "{:?}", error.help);
}

#[test]
fn asking_what_steps_read_starts_neither_python_nor_tensorflow() {
    let build = Build::example("quickstart", "");
    let pool = Arc::new(WorkerPool::new(runtime(), WorkerOptions::default(), 2));
    let steps = TfSteps::with_pool(
        build.manifest.clone(),
        std::sync::Arc::new(exportctl::runtime::Provider::ready(runtime().clone())),
        pool.clone(),
        0,
    );
    let plan = Plan::new(&build.manifest);
    for node in plan.topological() {
        let id = &plan.graph[node];
        let inputs = steps.inputs(id).unwrap();
        assert!(inputs.settings.is_object(), "{id}");
    }
    assert_eq!(pool.starts(), 0);
    assert!(!steps.native_loaded());
}

#[test]
fn editing_the_docs_changes_only_what_package_reads() {
    let read = |extra: &str| {
        let build = Build::example("quickstart", extra);
        let plan = Plan::new(&build.manifest);
        plan.topological()
            .into_iter()
            .map(|n| {
                let id = plan.graph[n].clone();
                let inputs = build.steps.inputs(&id).unwrap();
                (id, (inputs.settings, inputs.files))
            })
            .collect::<BTreeMap<_, _>>()
    };
    let before = read("");
    // The same project with the encoder piece's description rewritten.
    let text = std::fs::read_to_string(repo().join("examples/quickstart/Export.toml")).unwrap();
    let edited = text.replace("32-dimensional embeddings of 16 input features.", "Embeddings.");
    assert_ne!(text, edited);
    let project = Project::example("quickstart");
    std::fs::write(project.path().join("Export.toml"), edited).unwrap();
    let edited_build = Build::open(project);
    for (id, read_before) in &before {
        let inputs = edited_build.steps.inputs(id).unwrap();
        let same = (inputs.settings, inputs.files) == *read_before;
        // Every package of the model reads the description: the Kaggle model card
        // (model-metadata.json, written by each) lists each piece with its description.
        let expect_same = id.kind != StepKind::Package;
        assert_eq!(same, expect_same, "{id}");
    }
    // The body file is an input of package only.
    let body = PathBuf::from("docs/classifier.md");
    for (id, (_, files)) in &before {
        assert_eq!(files.contains(&body), id.kind == StepKind::Package, "{id}");
    }
}

#[test]
fn the_low_level_saved_model_keeps_its_regularization_loss() {
    let build = Build::example("low-level", "");
    let outcomes = build.chain("my-mul", "multiply", StepKind::Package);
    let id = |kind| piece_step("my-mul", "multiply", kind);
    let report = report(&build, &id(StepKind::Validate));
    assert!(report.ok);
    assert_eq!(report.reusable.regularization_loss_values.len(), 1);
    let loss = report.reusable.regularization_loss_values[0].unwrap();
    assert!((loss - 0.004).abs() < 1e-9, "0.001 * 2.0**2, got {loss}");
    let hub = report.reusable.hub.unwrap();
    assert_eq!((hub.trainable_weights, hub.moved, hub.losses), (1, 1, 1));
    let signature = report.native.signature.unwrap();
    assert_eq!(signature.inputs[0].name, "x", "declared in the manifest: serving_default has it");
    assert_eq!(signature.inputs[0].shape, Some(vec![-1]));

    // `__call__(x) = x * v` with v = 2.0, run natively on the golden inputs.
    let trace = build.dir(&id(StepKind::Trace));
    let x = tf::npy::read(&trace.join("golden/inputs/x.npy")).unwrap();
    let got = tf::run_signature(native(), &trace.join("saved_model"), "serving_default", &[("x".into(), x.clone())]).unwrap();
    let (tf::ArrayData::Float32(xs), tf::ArrayData::Float32(ys)) = (x.data(), got[0].1.data()) else { panic!() };
    assert_eq!(ys.len(), 4);
    for (x, y) in xs.iter().zip(ys) {
        assert_eq!(*y, x * 2.0);
    }

    let md = std::fs::read_to_string(build.dir(&id(StepKind::Package)).join("model.md")).unwrap();
    assert!(
        md.contains("- **Regularization losses**: 1 (`regularization_losses`, one per weight regularizer; value at export: 0.004)."),
        "{md}"
    );
    assert!(md.contains("what it changes is up to the source SavedModel's own `__call__`"), "{md}");
    assert!(outcomes[&StepKind::Trace].warnings.iter().any(|w| w.message.contains("no __call__ with a 'training' argument")));
    let codes: Vec<&str> = outcomes[&StepKind::Package].warnings.iter().map(|w| w.code.code()).collect();
    assert_eq!(codes, ["missing-docs"], "the example has no TF Hub task for a multiplier");
}

#[test]
fn validate_accepts_the_guides_saved_model_as_it_is() {
    // `exportctl validate` on the hand-written MyMulModel: no golden files, no `training`
    // argument (optional in the Reusable SavedModel API), inputs of unknown rank.
    let out = crate::support::exportctl().arg("validate").arg(repo().join("examples/low-level/my_mul")).output().unwrap();
    let text = crate::support::stdout(&out);
    assert!(out.status.success(), "{text}\n{}", crate::support::stderr(&out));
    assert!(text.contains("ok   call_training_false"), "{text}");
    assert!(text.contains("its __call__ takes no training argument"), "{text}");
    assert!(text.contains("regularization losses: 0.004\n"), "{text}");
    assert!(text.contains("hub.KerasLayer: 1 trainable weights, 1 moved by one fit step"), "{text}");
    assert!(text.ends_with("valid: every check passed\n"), "{text}");
}

#[test]
fn validate_fails_a_saved_model_that_carries_its_optimizer() {
    let q = quickstart();
    let dir = q.build.project.path().join("with_optimizer");
    let script = format!(
        "import keras, tensorflow as tf\n\
         m = keras.saving.load_model({model:?})\n\
         m.optimizer.build(m.trainable_variables)\n\
         tf.saved_model.save(m, {dir:?})\n",
        model = q.build.project.path().join("models/classifier.keras"),
        dir = dir,
    );
    let output = Command::new(&runtime().python).arg("-c").arg(&script).env("TF_CPP_MIN_LOG_LEVEL", "3").output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));

    let out = crate::support::exportctl().args(["validate", "--format", "json"]).arg(&dir).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", crate::support::stderr(&out));
    // One JSON document: the report, with the command's error in it.
    let value: serde_json::Value = serde_json::from_str(&crate::support::stdout(&out)).unwrap();
    assert_eq!(value["error"]["exit_code"], 1, "{}", value["error"]);
    assert!(value["error"]["message"].as_str().unwrap().contains("is not a valid package"), "{}", value["error"]);
    let report: Report = serde_json::from_value(value).unwrap();
    let check = report.native.checks.iter().find(|c| c.name == CheckName::NoOptimizerState).unwrap();
    assert!(!check.ok);
    assert!(check.message.starts_with("optimizer state in the SavedModel: "), "{}", check.message);
    let variables = report.native.variables.unwrap();
    assert!(variables.optimizer_bytes > 20_000, "Adam's slots for 3,626 weights: {variables:?}");
    // Keras 3's own model object was saved, so the C API cannot run it either (FACTS.md).
    let outputs = report.native.checks.iter().find(|c| c.name == CheckName::Outputs).unwrap();
    assert!(!outputs.ok && outputs.message.contains("Could not find variable"), "{}", outputs.message);
    assert!(outputs.details["help"].as_str().unwrap().contains("hold the underlying tf.Variables"), "{}", outputs.details);
}
