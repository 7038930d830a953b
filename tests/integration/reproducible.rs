//! Reproducible packages (issue 7): two clean builds of every example write
//! bit-identical archives, docs, build.json and SavedModels, whatever order the steps ran in
//! and whatever the Python worker traced before; `--locked` passes on a clean rebuild, fails
//! naming the file and the part of `saved_model.pb` that changed, and CI runs it against the
//! committed `examples/quickstart/Export.lock`.
//!
//! The second build of each example runs in new processes, after `dist/` and `.exportctl/`
//! were wiped, with another `-j` and with the last piece built first on its own: every trace
//! then runs in a worker whose TensorFlow function counter is at another value than in the
//! first build, which is what used to change `saved_model.pb`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::support::{repo, runtime, stderr, stdout, Project};

/// Digests of every file under `dist/` (archives, docs, build.json, the unpacked SavedModels).
fn dist_digests(project: &Project) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let relative = path.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/");
                out.insert(relative, exportctl::hash::digest_file(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(&project.path().join("dist"), &project.path().join("dist"), &mut out);
    out
}

/// `model/piece` of every piece, in plan order.
fn pieces(project: &Project) -> Vec<String> {
    let out = project.run(&["plan", "--format", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let plan: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let mut pieces: Vec<String> = Vec::new();
    for step in plan["steps"].as_array().unwrap() {
        if let (Some(model), Some(piece)) = (step["model"].as_str(), step["piece"].as_str()) {
            let id = format!("{model}/{piece}");
            if !pieces.contains(&id) {
                pieces.push(id);
            }
        }
    }
    pieces
}

/// Runs one build; returns the steps in the order they started.
fn build(project: &Project, args: &[&str]) -> Vec<String> {
    let (out, events) = project.build_json(args);
    assert!(out.status.success(), "exportctl build {} failed in {}:\n{}", args.join(" "), project.path().display(), stderr(&out));
    events.iter().filter(|e| e["event"] == "step-started").map(|e| e["step"].as_str().unwrap().to_string()).collect()
}

fn wipe(project: &Project) {
    for dir in ["dist", ".exportctl"] {
        std::fs::remove_dir_all(project.path().join(dir)).unwrap();
    }
}

fn traces(started: &[String]) -> Vec<&String> {
    started.iter().filter(|s| s.ends_with(":trace")).collect()
}

/// Builds `examples/<name>` twice from clean, in two different orders, and compares.
fn assert_reproducible(name: &str) {
    runtime();
    let project = Project::example(name);
    let first_order = build(&project, &["-j", "1"]);
    let lock = std::fs::read_to_string(project.path().join("Export.lock")).unwrap();
    let first = dist_digests(&project);
    assert!(first.keys().any(|f| f.ends_with("/model.tar.gz")), "{first:#?}");

    wipe(&project);
    // New processes, another -j, the last piece first and alone; --locked checks every digest
    // against the first build's lock (and would name the file that differs).
    let pieces = pieces(&project);
    let last = pieces.last().unwrap().as_str();
    let mut second_order = build(&project, &["--locked", "-j", "4", last]);
    second_order.extend(build(&project, &["--locked", "-j", "4"]));
    if pieces.len() > 1 {
        assert_ne!(traces(&first_order), traces(&second_order), "the two builds traced in the same order");
    }

    assert_eq!(std::fs::read_to_string(project.path().join("Export.lock")).unwrap(), lock, "Export.lock changed");
    let second = dist_digests(&project);
    let differ: Vec<&String> = first.keys().filter(|f| second.get(*f) != first.get(*f)).collect();
    assert!(differ.is_empty() && first.len() == second.len(), "examples/{name}: two clean builds differ in {differ:?}");
}

#[test]
fn quickstart_builds_are_bit_identical() {
    assert_reproducible("quickstart");
}

#[test]
fn low_level_builds_are_bit_identical() {
    assert_reproducible("low-level");
}

#[test]
fn legacy_keras_builds_are_bit_identical() {
    assert_reproducible("legacy-keras");
}

#[test]
fn bert_style_builds_are_bit_identical() {
    assert_reproducible("bert-style");
}

#[test]
fn mobilenet_builds_are_bit_identical() {
    assert_reproducible("mobilenet");
}

/// Rewrites the quickstart's model with another activation in its hidden layer (same weights):
/// a change that reaches the traced functions, not only the variables.
fn change_model(project: &Project) {
    const SCRIPT: &str = r#"
import sys
import keras
path = sys.argv[1]
model = keras.models.load_model(path, compile=False)
config = model.get_config()
for layer in config["layers"]:
    if layer["config"]["name"] == "hidden":
        layer["config"]["activation"] = "tanh"
changed = keras.Model.from_config(config)
changed.set_weights(model.get_weights())
changed.save(path)
"#;
    let out = Command::new(&runtime().python)
        .arg("-c")
        .arg(SCRIPT)
        .arg(project.path().join("models/classifier.keras"))
        .env("TF_CPP_MIN_LOG_LEVEL", "3")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}

/// What CI does: a fresh checkout of the quickstart, with its committed Export.lock, built with
/// `--locked`. Then the model changes, and `--locked` says what differs.
#[test]
fn the_committed_quickstart_lock_holds_and_names_what_a_model_change_changed() {
    runtime();
    let project = Project::example("quickstart");
    let committed = std::fs::read_to_string(repo().join("examples/quickstart/Export.lock"))
        .expect("examples/quickstart/Export.lock is committed: CI checks builds against it");
    let lock_path = project.path().join("Export.lock");
    std::fs::write(&lock_path, &committed).unwrap();

    let out = project.run(&["build", "--locked"]);
    assert!(
        out.status.success(),
        "a clean build of examples/quickstart differs from its committed Export.lock (if the change is \
         intended, rebuild it with `exportctl -C examples/quickstart build` and commit it):\n{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read_to_string(&lock_path).unwrap(), committed);

    change_model(&project);
    let out = project.run(&["build", "--locked"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    // Every piece's trace names saved_model.pb and which part of it changed (the two traces of
    // __call__ and the serving function compute tanh now; the op list gained Tanh); the
    // package names the archive and the files inside it.
    let what = "function library: 3 functions renamed/changed (__inference_call_0, __inference_call_1, __inference_serve_4); \
                meta info (tags, op list, versions)";
    for piece in ["classifier", "encoder"] {
        let trace = format!("classifier/{piece}:trace: saved_model/saved_model.pb differs ({what})");
        assert!(err.contains(&trace), "no `{trace}` in:\n{err}");
        let package = format!("classifier/{piece}:package: model.tar.gz differs (inside it: fingerprint.pb, saved_model.pb: {what})");
        assert!(err.contains(&package), "no `{package}` in:\n{err}");
    }
    assert!(err.contains("classifier:export: output differs"), "{err}");
    assert_eq!(std::fs::read_to_string(&lock_path).unwrap(), committed, "--locked never rewrites the lock");
}
