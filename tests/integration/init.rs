//! From a model file to a manifest that builds clean: `inspect MODEL` lists where a model can
//! be cut, `init MODEL` proposes a manifest from it, and the build that follows warns about
//! nothing.

use std::process::Command;

use crate::support::{finished, repo, runtime, stderr, stdout, Project};

/// A project holding only `models/<name>` from the quickstart example.
fn project_with_the_quickstart_model() -> Project {
    project_with(&repo().join("examples/quickstart/models/classifier.keras"), "classifier.keras")
}

/// A project holding `models/<file>` copied from `from` (a file or a directory).
fn project_with(from: &std::path::Path, file: &str) -> Project {
    let project = Project::new();
    let to = project.path().join("models").join(file);
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    if from.is_dir() {
        crate::support::copy_dir(from, &to);
    } else {
        std::fs::copy(from, &to).unwrap();
    }
    project
}

/// `init MODEL`, then a JSON build that succeeds: its events, and the codes of its warnings.
fn init_then_build(project: &Project, model: &str) -> (Vec<serde_json::Value>, Vec<String>) {
    let out = project.run(&["init", model]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (out, events) = project.build_json(&[]);
    assert!(out.status.success(), "{}\n{}", stderr(&out), std::fs::read_to_string(project.path().join("Export.toml")).unwrap());
    assert_eq!(finished(&events)["success"], true);
    let warnings = events.iter().filter(|e| e["event"] == "warning");
    let codes = warnings.flat_map(|e| e["diagnostics"].as_array().unwrap()).map(|d| d["code"].as_str().unwrap().to_string()).collect();
    (events, codes)
}

/// `init MODEL`, then a JSON build: it succeeds and no step warns.
fn init_and_build(project: &Project, model: &str) -> Vec<serde_json::Value> {
    let (events, warnings) = init_then_build(project, model);
    assert!(warnings.is_empty(), "the proposed manifest builds with warnings: {warnings:?}");
    events
}

/// `init MODEL`, then a JSON build that succeeds; the codes of the warnings it gave.
fn init_and_build_warning(project: &Project, model: &str) -> Vec<String> {
    init_then_build(project, model).1
}

#[test]
fn inspect_lists_a_models_layers_and_where_to_cut() {
    runtime();
    let project = project_with_the_quickstart_model();
    let out = project.run(&["inspect", "models/classifier.keras"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for expected in [
        "models/classifier.keras: keras3 Functional `classifier`",
        "inputs:  features float32 [?, 16]",
        "outputs: probabilities float32 [?, 10] (softmax)",
        "final activation: softmax",
        "dropout (rate 0.3)",
        "batch-norm (momentum 0.99, epsilon 0.001)",
        "activation relu",
        "A piece ends at a layer's output with `to = \"<layer>\"`",
    ] {
        assert!(text.contains(expected), "`{expected}` missing from:\n{text}");
    }
    let logits = text.lines().find(|l| l.starts_with("logits ")).expect("a logits row");
    assert!(logits.contains("Dense") && logits.contains("[?, 10]") && logits.contains("330"), "{logits}");

    let out = project.run(&["inspect", "--format", "json", "models/classifier.keras"]);
    let outline: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = outline["layers"].as_array().unwrap().iter().map(|l| l["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["features", "hidden", "hidden_bn", "dropout", "embedding", "logits", "probabilities"]);
    assert_eq!(outline["final_activation"], "softmax");
    assert_eq!(
        outline["params"]["total"],
        outline["layers"].as_array().unwrap().iter().map(|l| l["parameters"].as_u64().unwrap()).sum::<u64>()
    );
}

#[test]
fn init_then_build_is_clean_on_the_quickstart_model() {
    runtime();
    let project = project_with_the_quickstart_model();
    init_and_build(&project, "models/classifier.keras");
    let manifest = std::fs::read_to_string(project.path().join("Export.toml")).unwrap();
    for expected in [
        "to = \"logits\"",
        "dropout = 0.3 ",
        "batch-norm = { momentum = 0.99, epsilon = 0.001 }",
        "features = { shape = [-1, 16], dtype = \"float32\" }",
    ] {
        assert!(manifest.contains(expected), "`{expected}` missing from:\n{manifest}");
    }
    assert!(project.path().join("dist/classifier/classification/1/model.md").is_file());
}

#[test]
fn init_then_build_is_clean_on_mobilenet() {
    let runtime = runtime();
    let project = Project::new();
    std::fs::create_dir_all(project.path().join("models")).unwrap();
    let made = Command::new(&runtime.python)
        .args([
            "-c",
            "import keras; keras.applications.MobileNetV3Small(input_shape=(96, 96, 3), classes=10, weights=None).save('models/mobilenet.keras')",
        ])
        .current_dir(project.path())
        .env("KERAS_BACKEND", "tensorflow")
        .env("TF_CPP_MIN_LOG_LEVEL", "3")
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", stderr(&made));
    let events = init_and_build(&project, "models/mobilenet.keras");
    let manifest = std::fs::read_to_string(project.path().join("Export.toml")).unwrap();
    for expected in [
        "name = \"classification\"\nto = \"flatten\"",
        "name = \"feature-vector\"\nto = \"global_average_pooling2d\"",
        "dropout = 0.2 ",
        "batch-norm = {",
        "image-classification",
        "image-feature-vector",
    ] {
        assert!(manifest.contains(expected), "`{expected}` missing from:\n{manifest}");
    }
    assert_eq!(finished(&events)["failed"], 0);
}

#[test]
fn init_on_a_tf_keras_h5_file_proposes_its_logits_and_warns_only_about_its_optimizer() {
    runtime();
    let project = project_with(&repo().join("examples/legacy-keras/models/iris.h5"), "iris.h5");
    let out = project.run(&["inspect", "models/iris.h5"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("models/iris.h5: tf-keras Functional `iris`"), "{}", stdout(&out));
    // The model was trained with Ftrl's L1 regularization, which no SavedModel can carry: the
    // one warning left is about the source, not about the proposed manifest.
    assert_eq!(init_and_build_warning(&project, "models/iris.h5"), ["lost-regularization"]);
    let manifest = std::fs::read_to_string(project.path().join("Export.toml")).unwrap();
    for expected in ["to = \"logits\"", "dropout = 0.25 ", "measurements = { shape = [-1, 4], dtype = \"float32\" }"] {
        assert!(manifest.contains(expected), "`{expected}` missing from:\n{manifest}");
    }
}

#[test]
fn init_then_build_is_clean_on_a_model_trained_under_jax() {
    runtime();
    let project = project_with(&repo().join("examples/jax-trained/models/classifier.keras"), "classifier.keras");
    let out = project.run(&["inspect", "models/classifier.keras"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("keras3 Functional `classifier`, 259 parameters (227 trainable)"), "{}", stdout(&out));
    init_and_build(&project, "models/classifier.keras");
    let manifest = std::fs::read_to_string(project.path().join("Export.toml")).unwrap();
    for expected in ["to = \"logits\"", "dropout = 0.2 ", "batch-norm = { momentum = 0.99, epsilon = 0.001 }"] {
        assert!(manifest.contains(expected), "`{expected}` missing from:\n{manifest}");
    }
}

#[test]
fn init_on_a_plain_saved_model_proposes_the_whole_model_and_asks_for_its_docs() {
    let project = crate::build::built_quickstart();
    let other = project_with(&project.path().join("dist/classifier/encoder/1/saved_model"), "encoder");
    // A SavedModel that is not a Keras model has no layers to cut at: one piece, the whole model.
    assert_eq!(init_and_build_warning(&other, "models/encoder"), ["missing-docs"]);
    let manifest = std::fs::read_to_string(other.path().join("Export.toml")).unwrap();
    assert!(manifest.contains("[[models.encoder.pieces]]\nname = \"full\"\n"), "{manifest}");
    assert!(other.path().join("dist/encoder/full/1/model.tar.gz").is_file());
}
