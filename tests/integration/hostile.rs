//! Hostile inputs: SavedModels that touch files, and the corpus of `tests/hostile/generate.py`
//! (archives with symlinks, `..`, devices, a second gzip stream, bombs; SavedModels with file,
//! Python and network ops, damaged graphs). Each must be refused with an error that names the
//! member or the op, before anything it holds runs; nothing may be written outside exportctl's
//! scratch folder, and that folder must be empty once exportctl has exited.
//!
//! The generator runs with the managed runtime's Python into `target/test-tmp/hostile/`, once
//! per version of the script.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use crate::support::{exportctl, repo, runtime, stderr, stdout, target_tmp, Project};

const GENERATOR: &str = include_str!("../hostile/generate.py");

fn generate(args: &[&Path]) {
    let output = Command::new(&runtime().python)
        .arg(repo().join("tests/hostile/generate.py"))
        .args(args)
        .env("TF_CPP_MIN_LOG_LEVEL", "3")
        .env_remove("TF_USE_LEGACY_KERAS")
        .output()
        .expect("python runs");
    assert!(output.status.success(), "the hostile generator failed:\n{}", String::from_utf8_lossy(&output.stderr));
}

/// The corpus (made on first use): `(dir, touched)`, where `touched` is the folder its models
/// try to write into.
fn corpus() -> &'static (PathBuf, PathBuf) {
    static CORPUS: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let root = target_tmp().join("hostile");
        let (dir, touched) = (root.join("corpus"), root.join("touched"));
        let stamp = root.join("made-by.py");
        if std::fs::read_to_string(&stamp).ok().as_deref() != Some(GENERATOR) {
            let _ = std::fs::remove_dir_all(&root);
            generate(&[&dir, &touched]);
            std::fs::write(&stamp, GENERATOR).unwrap();
        }
        (dir, touched)
    })
}

/// A SavedModel whose `serving_default` (and `__call__`) writes `target` and reads it back;
/// its meta graph tagged `tag` instead of `serve` when one is given.
fn file_toucher(dir: &Path, target: &Path, tag: Option<&str>) {
    let mut args = vec![Path::new("--toucher"), dir, target];
    args.extend(tag.map(Path::new));
    generate(&args);
    assert!(dir.join("saved_model.pb").is_file());
    assert!(!target.exists(), "saving the model ran it");
}

fn combined(out: &Output) -> String {
    format!("{}{}", stdout(out), stderr(out))
}

#[test]
fn validate_refuses_a_saved_model_that_writes_files_and_writes_nothing() {
    let project = Project::new();
    let model = project.path().join("toucher");
    let touched = tempfile::tempdir_in(target_tmp()).unwrap();
    let target = touched.path().join("written-by-the-model.txt");
    file_toucher(&model, &target, None);

    let out = project.run(&["validate", "toucher"]);
    assert_eq!(out.status.code(), Some(1), "{}", combined(&out));
    let text = stderr(&out);
    for expected in [
        "error: the SavedModel ",
        "runs ops that reach outside the model, so nothing was run",
        "ReadFile (reads a file) in function __inference___call___",
        "WriteFile (writes a file) in function __inference___call___",
        "allow-ops = [\"ReadFile\", \"WriteFile\"]",
        "--allow-op",
    ] {
        assert!(text.contains(expected), "missing `{expected}` in:\n{text}");
    }
    assert_eq!(std::fs::read_dir(touched.path()).unwrap().count(), 0, "the refused model wrote a file");

    // inspect reads it without running it, and says what the scan found.
    let out = project.run(&["inspect", "toucher"]);
    assert!(out.status.success(), "{}", combined(&out));
    let text = stdout(&out);
    for expected in [
        "op scan: REFUSED: ReadFile (reads a file) in function __inference___call___",
        "WriteFile (writes a file)",
        "native load: not tried: loading runs the model's own functions",
    ] {
        assert!(text.contains(expected), "missing `{expected}` in:\n{text}");
    }
    let out = project.run(&["inspect", "--format", "json", "toucher"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut ops: Vec<&str> = json["op_scan"]["findings"].as_array().unwrap().iter().map(|f| f["op"].as_str().unwrap()).collect();
    ops.sort_unstable();
    ops.dedup();
    assert_eq!(ops, ["ReadFile", "WriteFile"]);
    assert_eq!(std::fs::read_dir(touched.path()).unwrap().count(), 0, "inspect ran the model");

    // Allowed, it runs: the file appears (so the checks above could have failed).
    let out = project.run(&["validate", "toucher", "--allow-op", "WriteFile", "--allow-op", "ReadFile"]);
    assert!(out.status.success(), "{}", combined(&out));
    assert!(stdout(&out).contains("valid: every check passed"), "{}", stdout(&out));
    assert!(target.is_file(), "the allowed model ran and wrote {}", target.display());
}

/// A project whose one model is the SavedModel `toucher`, its table ending with `allow`.
fn toucher_manifest(allow: &str) -> String {
    format!(
        "[project]\nname = \"hostile\"\nversion = 1\npublisher = \"exportctl-tests\"\n\n\
         [models.toucher]\nsource = \"toucher\"\n{allow}\n\
         [models.toucher.docs]\ndescription = \"Writes a file.\"\ntask = \"text-embedding\"\nlicense = \"Apache-2.0\"\n\n\
         [[models.toucher.pieces]]\nname = \"whole\"\n"
    )
}

#[test]
fn a_saved_model_source_that_writes_files_is_refused_by_the_build_until_allow_ops_lets_it() {
    runtime();
    let touched = tempfile::tempdir_in(target_tmp()).unwrap();
    let target = touched.path().join("written-by-the-model.txt");
    let project = Project::new().file("Export.toml", &toucher_manifest(""));
    file_toucher(&project.path().join("toucher"), &target, None);

    let out = project.run(&["build"]);
    assert_eq!(out.status.code(), Some(1), "{}", combined(&out));
    let text = stderr(&out);
    for expected in [
        "error: toucher:export failed: the source of model `toucher` runs ops that reach outside the model, so nothing was run",
        "ReadFile (reads a file) in function __inference___call___",
        "WriteFile (writes a file) in function __inference___call___",
        "let them through with `allow-ops = [\"ReadFile\", \"WriteFile\"]` in the model's table",
    ] {
        assert!(text.contains(expected), "missing `{expected}` in:\n{text}");
    }
    assert_eq!(std::fs::read_dir(touched.path()).unwrap().count(), 0, "the refused model wrote a file");
    assert!(!project.path().join("dist").exists(), "nothing shipped");

    std::fs::write(project.path().join("Export.toml"), toucher_manifest("allow-ops = [\"WriteFile\", \"ReadFile\"]\n")).unwrap();
    let out = project.run(&["build"]);
    assert!(out.status.success(), "{}", combined(&out));
    assert!(project.path().join("dist/toucher/whole/1/model.tar.gz").is_file());
    assert!(target.is_file(), "the allowed model ran and wrote {}", target.display());

    // The package built from it carries the same ops: validate PATH refuses it too.
    let out = project.run(&["validate", "dist/toucher/whole/1/model.tar.gz"]);
    assert_eq!(out.status.code(), Some(1), "{}", combined(&out));
    assert!(stderr(&out).contains("dist/toucher/whole/1/model.tar.gz runs ops that reach outside the model"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("scratch"), "{}", stderr(&out));
}

#[test]
fn a_saved_model_tagged_train_instead_of_serve_was_loaded_and_run_unscanned() {
    // `tf.saved_model.load(path)` loads a lone meta graph whatever its tags: the scan once
    // looked only at one tagged `serve`, so the export step ran this model's code.
    runtime();
    let touched = tempfile::tempdir_in(target_tmp()).unwrap();
    let target = touched.path().join("written-by-the-model.txt");
    let project = Project::new().file("Export.toml", &toucher_manifest(""));
    file_toucher(&project.path().join("toucher"), &target, Some("train"));

    let out = project.run(&["build"]);
    assert_eq!(out.status.code(), Some(1), "{}", combined(&out));
    let text = stderr(&out);
    for expected in [
        "error: toucher:export failed: the source of model `toucher` runs ops that reach outside the model, so nothing was run",
        "WriteFile (writes a file) in function __inference___call___",
        " (meta graph tagged train)",
    ] {
        assert!(text.contains(expected), "missing `{expected}` in:\n{text}");
    }
    let out = project.run(&["validate", "toucher"]);
    assert_eq!(out.status.code(), Some(1), "{}", combined(&out));
    assert!(stderr(&out).contains("runs ops that reach outside the model, so nothing was run"), "{}", combined(&out));
    assert_eq!(std::fs::read_dir(touched.path()).unwrap().count(), 0, "the refused model wrote a file");
}

/// Every file and folder under `dir`, relative, with its size: what the corpus run may not change.
fn listing(dir: &Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    fn walk(base: &Path, dir: &Path, out: &mut Vec<(String, u64)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            out.push((path.strip_prefix(base).unwrap().to_string_lossy().into_owned(), if meta.is_dir() { 0 } else { meta.len() }));
            if meta.is_dir() {
                walk(base, &path, out);
            }
        }
    }
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[test]
fn every_hostile_input_is_refused_naming_what_and_nothing_escapes_the_scratch_folder() {
    let (dir, touched) = corpus();
    let corpus_json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("corpus.json")).unwrap()).unwrap();
    let items = corpus_json["items"].as_array().unwrap();
    assert!(items.len() >= 60, "the corpus holds {} items", items.len());
    // Its own home, so that its scratch folder is this test's alone.
    let home = tempfile::Builder::new().prefix("hostile-home-").tempdir_in(target_tmp()).unwrap();
    let scratch = home.path().join("scratch");
    let project = Project::new();
    let before = listing(dir);
    let run = |args: &[&str]| -> Output {
        exportctl()
            .arg("-C")
            .arg(project.path())
            .args(args)
            .env("EXPORTCTL_HOME", home.path())
            .env("EXPORTCTL_PYTHON", &runtime().python)
            .env_remove("VIRTUAL_ENV")
            .output()
            .expect("exportctl runs")
    };
    let mut failures = Vec::new();
    let mut tried = 0;
    for item in items {
        let name = item["name"].as_str().unwrap();
        let kind = item["kind"].as_str().unwrap();
        let expect: Vec<&str> = item["expect"].as_array().unwrap().iter().map(|e| e.as_str().unwrap()).collect();
        let path = dir.join(name);
        let path = path.to_str().unwrap();
        tried += 1;
        for command in ["validate", "inspect"] {
            let out = run(&[command, path]);
            let text = combined(&out);
            let mut fail = |why: String| failures.push(format!("{command} {name} ({kind}): {why}\n{text}"));
            if text.contains("panicked") {
                fail("panicked".into());
            }
            if text.contains(&scratch.display().to_string()) || text.contains("/archive-") {
                fail("names a scratch path".into());
            }
            // inspect reads a SavedModel without running it: it reports the scan's verdict.
            let reports_scan = command == "inspect" && (kind == "saved-model" || name == "archive_of_a_model_that_writes_files.tar.gz");
            if reports_scan {
                if out.status.code() != Some(0)
                    || !stdout(&out).contains("op scan: REFUSED: ")
                    || !stdout(&out).contains("native load: not tried")
                {
                    fail(format!("exit {:?}: no REFUSED verdict", out.status.code()));
                }
            } else if out.status.code() != Some(1) {
                // A mutated graph inspect can parse is shown (exit 0), with what failed.
                let shown = command == "inspect" && kind == "mutated-saved-model" && out.status.code() == Some(0);
                if !shown {
                    fail(format!("exit {:?}, expected 1", out.status.code()));
                }
            }
            for expected in &expect {
                if !text.contains(expected) {
                    fail(format!("does not say `{expected}`"));
                }
            }
            let left: Vec<String> = std::fs::read_dir(&scratch)
                .map(|entries| entries.map(|e| e.unwrap().path().display().to_string()).collect())
                .unwrap_or_default();
            if !left.is_empty() {
                fail(format!("left in the scratch folder: {left:?}"));
            }
            let touched_now = std::fs::read_dir(touched).map(|e| e.count()).unwrap_or(0);
            if touched_now != 0 {
                fail(format!("{touched_now} file(s) written into {}", touched.display()));
            }
        }
    }
    assert_eq!(listing(dir), before, "the corpus itself changed");
    assert_eq!(std::fs::read_dir(project.path()).unwrap().count(), 0, "nothing written into the project");
    eprintln!("hostile inputs tried: {tried} (each with validate and inspect); failures: {}", failures.len());
    assert!(failures.is_empty(), "{} failure(s):\n\n{}", failures.len(), failures.join("\n\n"));
}
