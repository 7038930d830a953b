//! Every example beyond the quickstart (which `build.rs` and `steps.rs` cover), built from a
//! fresh copy with the README's one command, `exportctl build`, then built again: all cached.
//! The numbers each example exists to show are asserted from what it wrote.

use std::path::Path;

use exportctl::tf::{self, Native, TfLogs};
use serde_json::Value;

use crate::consumers::{assert_publishable, run_model_md_snippets};
use crate::support::{finished, runtime, stderr, Project};

fn native() -> &'static Native {
    let dir = runtime().require_tensorflow_dir().expect("the runtime has TensorFlow");
    Native::load(dir, &exportctl::runtime::home().join("native"), TfLogs::Quiet).expect("the native library loads")
}

/// Builds `examples/<name>` in a fresh project, then again; returns the project and the first
/// build's events.
fn build_twice(name: &str, steps: u64) -> (Project, Vec<Value>) {
    runtime();
    let project = Project::example(name);
    let (out, events) = project.build_json(&[]);
    assert!(out.status.success(), "building examples/{name} failed:\n{}", stderr(&out));
    assert_eq!(finished(&events)["ran"], steps, "{events:#?}");
    let (out, again) = project.build_json(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!((finished(&again)["ran"].as_u64(), finished(&again)["cached"].as_u64()), (Some(0), Some(steps)));
    (project, events)
}

fn piece_dir(project: &Project, model: &str, piece: &str) -> std::path::PathBuf {
    project.path().join("dist").join(model).join(piece).join("1")
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

/// The warnings of one step, by code.
fn warning_codes(events: &[Value], step: &str) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["event"] == "warning" && e["step"] == step)
        .flat_map(|e| e["diagnostics"].as_array().cloned().unwrap_or_default())
        .map(|d| d["code"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// What every package must be: valid, fine-tuned through hub.KerasLayer (tf_keras) and
/// TFSMLayer (Keras 3), no optimizer state, and the usage `model.md` shows runs as written.
fn assert_sound_package(dir: &Path) -> Value {
    let build = read_json(&dir.join("build.json"));
    assert_eq!(build["validation"]["ok"], true, "{}", dir.display());
    let hub = &build["validation"]["hub"];
    assert_eq!(hub["moved"], hub["trainable_weights"], "hub.KerasLayer fine-tuning moved every trainable weight: {hub}");
    let keras3 = &build["validation"]["keras3"];
    assert_eq!(keras3["trainable_weights"], hub["trainable_weights"], "TFSMLayer exposes the trainable variables: {keras3}");
    assert_eq!(keras3["reached"], keras3["trainable_weights"], "every trainable weight gets a gradient in Keras 3: {keras3}");
    if keras3["trainable_weights"] != 0 {
        assert!(keras3["moved"].as_u64().unwrap() > 0, "one Keras 3 fit step moved weights: {keras3}");
    }
    run_model_md_snippets(dir);
    let scratch = tempfile::tempdir().unwrap();
    let inspection = tf::inspect_archive(native(), &dir.join("model.tar.gz"), scratch.path(), &[]).unwrap();
    assert!(!inspection.optimizer.present, "{}: {:?}", dir.display(), inspection.optimizer);
    assert!(matches!(inspection.native_load, tf::inspect::NativeLoad::Ok), "{:?}", inspection.native_load);
    assert!(inspection.signatures.iter().any(|s| s.key == "serving_default"));
    build
}

#[test]
fn low_level_my_mul_model() {
    let (project, events) = build_twice("low-level", 5);
    let dir = piece_dir(&project, "my-mul", "multiply");
    let build = assert_sound_package(&dir);
    let loss = build["validation"]["regularization_loss_values"][0].as_f64().unwrap();
    assert!((loss - 0.004).abs() < 1e-9, "0.001 * v**2 for v = 2.0: {loss}");
    assert_eq!(build["validation"]["hub"]["trainable_weights"], 1);
    let md = std::fs::read_to_string(dir.join("model.md")).unwrap();
    assert!(md.contains("value at export: 0.004)"), "{md}");
    assert_eq!(warning_codes(&events, "my-mul/multiply:package"), ["missing-docs"]);
    assert_publishable(&project, &["my-mul/multiply"]);
}

#[test]
fn legacy_keras_h5_with_ftrl() {
    let (project, events) = build_twice("legacy-keras", 9);
    // The optimizer-level L1 that no SavedModel can carry: a lint for the fine-tunable piece,
    // a warning in its documentation; the frozen piece is not fine-tuned, so neither.
    assert_eq!(warning_codes(&events, "iris/classifier:validate"), ["lost-regularization"]);
    assert!(warning_codes(&events, "iris/features:validate").is_empty());
    let classifier = piece_dir(&project, "iris", "classifier");
    let build = assert_sound_package(&classifier);
    assert_eq!(build["validation"]["hub"]["trainable_weights"], 4, "two Dense layers, kernel and bias each");
    assert_eq!(build["settings"]["export"]["source"]["path"], "models/iris.h5");
    let md = std::fs::read_to_string(classifier.join("model.md")).unwrap();
    assert!(md.contains("trained with Ftrl"), "{md}");
    assert!(md.contains("**Warning — regularization lost**"), "{md}");
    assert!(md.contains("`l1_regularization_strength = 0.01`"), "{md}");
    assert!(md.contains("<!-- asset-path: https://storage.example.com/exportctl-examples/iris/classifier/1/model.tar.gz -->"), "{md}");

    let features = piece_dir(&project, "iris", "features");
    let build = assert_sound_package(&features);
    assert_eq!(build["validation"]["hub"]["trainable_weights"], 0, "trainable = false");
    let md = std::fs::read_to_string(features.join("model.md")).unwrap();
    assert!(md.contains("<!-- fine-tunable: false -->"), "{md}");
    assert!(!md.contains("regularization lost"), "{md}");
    let sent = assert_publishable(&project, &["iris/classifier", "iris/features"]);
    let fine_tunable: Vec<&Value> =
        sent.iter().filter(|e| e["request"] == "create_model_instance").map(|e| &e["body"]["body"]["fineTunable"]).collect();
    assert_eq!(fine_tunable, [&Value::Bool(true), &Value::Bool(false)], "the frozen piece is not fine-tunable on Kaggle either");
}

#[test]
fn bert_style_encoder_from_a_pretrainer_checkpoint() {
    let (project, events) = build_twice("bert-style", 16);
    for (model, piece) in [("encoder", "encoder"), ("encoder", "pooled"), ("encoder-with-mlm", "mlm")] {
        let build = assert_sound_package(&piece_dir(&project, model, piece));
        let inputs: Vec<&str> = build["inputs"].as_array().unwrap().iter().map(|i| i["path"].as_str().unwrap()).collect();
        assert_eq!(
            inputs,
            ["ckpt/pretrainer.data-00000-of-00001", "ckpt/pretrainer.index", "encoder.py", "data/samples.npz", "docs/encoder.md"],
            "{model}/{piece}"
        );
    }
    assert!(events.iter().all(|e| e["event"] != "warning"), "{:#?}", events.iter().filter(|e| e["event"] == "warning").collect::<Vec<_>>());

    // Dict inputs and outputs, as BERT encoders on TF Hub have them.
    let scratch = tempfile::tempdir().unwrap();
    let encoder =
        tf::inspect_archive(native(), &piece_dir(&project, "encoder", "encoder").join("model.tar.gz"), scratch.path(), &[]).unwrap();
    let serving = encoder.signatures.iter().find(|s| s.key == "serving_default").unwrap();
    let names =
        |specs: &[tf::TensorSpec]| specs.iter().map(|s| (s.key.clone(), s.dtype.name().into_owned(), s.shape.clone())).collect::<Vec<_>>();
    let int = |name: &str| (name.to_string(), "int32".to_string(), Some(vec![-1, 16]));
    assert_eq!(names(&serving.inputs), [int("input_mask"), int("input_type_ids"), int("input_word_ids")]);
    assert_eq!(
        names(&serving.outputs),
        [
            ("pooled_output".to_string(), "float32".to_string(), Some(vec![-1, 32])),
            ("sequence_output".to_string(), "float32".to_string(), Some(vec![-1, 16, 32])),
        ]
    );
    let mlm =
        tf::inspect_archive(native(), &piece_dir(&project, "encoder-with-mlm", "mlm").join("model.tar.gz"), scratch.path(), &[]).unwrap();
    let mlm_serving = mlm.signatures.iter().find(|s| s.key == "serving_default").unwrap();
    let logits = mlm_serving.outputs.iter().find(|s| s.key == "mlm_logits").expect("the MLM variant has its head");
    assert_eq!(logits.shape, Some(vec![-1, 16, 128]));
    // The head's weights make the MLM variant bigger than the encoder alone.
    assert!(mlm.variables.parameters > encoder.variables.parameters);
    assert_publishable(&project, &["encoder/encoder", "encoder/pooled", "encoder-with-mlm/mlm"]);

    // The pooled piece's LiteRT variant takes the same three named inputs. The converted
    // model's flat input order is not the signature's: model.md feeds them by name, and its
    // snippet runs.
    let pooled = piece_dir(&project, "encoder", "pooled");
    let md = std::fs::read_to_string(pooled.join("model.md")).unwrap();
    let snippet = crate::litert::litert_snippet(&md);
    assert!(snippet.contains("get_signature_runner(\"serving_default\")"), "{snippet}");
    let check = format!(
        "{snippet}\nprint([d['name'] for d in interpreter.get_input_details()])\n\
         print(interpreter.get_signature_list()['serving_default']['inputs'])"
    );
    let out = std::process::Command::new(&runtime().python)
        .current_dir(&pooled)
        .args(["-c", &check])
        .env("TF_CPP_MIN_LOG_LEVEL", "3")
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the model.md snippet failed:\n{check}\n{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = printed.lines().collect();
    assert_eq!(lines[0], "pooler (1, 32)", "{printed}");
    assert_eq!(lines[2], "['input_mask', 'input_type_ids', 'input_word_ids']", "{printed}");
    assert_ne!(
        lines[1], "['serving_default_input_mask:0', 'serving_default_input_type_ids:0', 'serving_default_input_word_ids:0']",
        "feeding by position would give the inputs to the wrong tensors: {printed}"
    );
    assert!(!piece_dir(&project, "encoder", "encoder").join("model.tflite").exists());
}

#[test]
fn mobilenet_v3_small_logits_and_feature_vector() {
    let (project, events) = build_twice("mobilenet", 11);
    let export = events.iter().find(|e| e["event"] == "step-finished" && e["step"] == "mobilenet:export").unwrap();
    assert!(export["summary"].as_str().unwrap().contains("Adam optimizer state (11.7 MiB) left out"), "{export}");
    assert!(events.iter().all(|e| e["event"] != "warning"), "logits, dropout and batch-norm settings: no lint expected");

    let classification = piece_dir(&project, "mobilenet", "classification");
    let build = assert_sound_package(&classification);
    let archive = build["outputs"]["model.tar.gz"]["bytes"].as_u64().unwrap();
    assert!(archive < 7 << 20, "1.5 M float32 parameters compress to about 5.5 MB: {archive}");
    let md = std::fs::read_to_string(classification.join("model.md")).unwrap();
    assert!(md.contains("| output | `flatten` | float32 | `[-1, 10]` |"), "logits: {md}");
    assert!(md.contains("its state (11.7 MiB) is not part of this package"), "{md}");
    assert!(md.contains("- Parameters: 1,540,218"), "{md}");
    // The dynamic-range LiteRT variant: int8 weights, validated against the same reference logits.
    let tflite = build["outputs"]["model.tflite"]["bytes"].as_u64().expect("model.tflite in build.json");
    assert!(tflite < 2 << 20, "1.5 M int8 weights: under 2 MiB, against ~6 MB in float32: {tflite}");
    assert!(md.contains("- Quantization: dynamic range (int8 weights, float32 activations)"), "{md}");
    assert!(md.contains("`CONV_2D`") && md.contains("`DEPTHWISE_CONV_2D`"), "{md}");
    assert!(!piece_dir(&project, "mobilenet", "feature-vector").join("model.tflite").exists());

    let features = piece_dir(&project, "mobilenet", "feature-vector");
    assert_sound_package(&features);
    let md = std::fs::read_to_string(features.join("model.md")).unwrap();
    assert!(md.contains("| output | `global_average_pooling2d` | float32 | `[-1, 1, 1, 576]` |"), "{md}");
    assert!(md.contains("<!-- task: image-feature-vector -->"), "{md}");
    assert_publishable(&project, &["mobilenet/classification", "mobilenet/feature-vector"]);
}

#[test]
fn quickstart_packages_are_used_and_published_as_consumers_would() {
    let (project, _) = build_twice("quickstart", 11);
    assert_sound_package(&piece_dir(&project, "classifier", "classifier"));
    assert_sound_package(&piece_dir(&project, "classifier", "encoder"));
    assert_publishable(&project, &["classifier/classifier", "classifier/encoder"]);
}

/// A model trained under Keras 3's JAX backend builds like any other: no JAX at build time,
/// and the package computes what JAX computed.
#[test]
fn jax_trained_model_exports_under_tensorflow() {
    let keras_file = crate::support::repo().join("examples/jax-trained/models/classifier.keras");
    assert!(std::fs::metadata(&keras_file).unwrap().len() < 1 << 20, "the committed .keras stays under 1 MB");
    // The user's shell selects JAX, which the runtime does not have: the worker ignores it.
    runtime();
    let project = Project::example("jax-trained");
    let (out, events) = project.build_json_with_env(&[], &[("KERAS_BACKEND", "jax")]);
    assert!(out.status.success(), "building examples/jax-trained failed:\n{}", stderr(&out));
    assert_eq!(finished(&events)["ran"], 5, "{events:#?}");
    let dir = piece_dir(&project, "classifier", "classifier");
    let build = assert_sound_package(&dir);
    assert_eq!(
        build["validation"]["keras3"]["trainable_weights"], 6,
        "Dense (L2), BatchNormalization, logits: kernel and bias/gamma/beta each"
    );
    assert_eq!(build["validation"]["keras3"]["moved"], 6, "a small model: one fit step moves every weight");
    assert_eq!(build["validation"]["regularization_loss_values"].as_array().unwrap().len(), 1, "the L2 regularizer");

    // What JAX computed (data/jax-logits.npz, written by train.py) against the package run by TensorFlow.
    let check = "import sys, numpy as np, tensorflow as tf\n\
        obj = tf.saved_model.load(sys.argv[1])\n\
        x = np.load(sys.argv[2])\n\
        jax = np.load(sys.argv[3])\n\
        got = obj.signatures['serving_default'](**{k: tf.constant(x[k]) for k in x.files})['logits'].numpy()\n\
        ref = jax['logits']\n\
        print(float(np.max(np.abs(got - ref))), got.shape == ref.shape)\n";
    let out = std::process::Command::new(&runtime().python)
        .arg("-c")
        .arg(check)
        .arg(dir.join("saved_model"))
        .arg(project.path().join("data/samples.npz"))
        .arg(project.path().join("data/jax-logits.npz"))
        .env("TF_CPP_MIN_LOG_LEVEL", "3")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let printed = crate::support::stdout(&out);
    let (diff, same_shape) = printed.trim().split_once(' ').unwrap();
    assert_eq!(same_shape, "True", "{printed}");
    let diff: f64 = diff.parse().unwrap();
    assert!(diff <= 1e-5, "the package's logits differ from JAX's by {diff}");

    // The Kaggle model card carries the manifest's model card fields.
    let card = read_json(&project.path().join("dist/classifier/model-metadata.json"));
    let description = card["description"].as_str().unwrap();
    for section in
        ["# Data Overview\n\n512 random vectors", "# Evaluation Results\n\nTraining accuracy", "# Limitations\n\nTrained on random data"]
    {
        assert!(description.contains(section), "{section}:\n{description}");
    }
    let sent = assert_publishable(&project, &["classifier/classifier"]);
    let instance = sent.iter().find(|e| e["request"] == "create_model_instance").unwrap();
    assert_eq!(
        instance["body"]["body"]["trainingData"][0],
        "512 random vectors of 8 measurements, labelled by the largest of the first three (train.py)."
    );
}
