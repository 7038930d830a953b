//! The command line: exit codes, help texts, `check` and `init` as a user meets them.

use crate::support::{exportctl, stderr, stdout, Project};

#[test]
fn check_exit_codes() {
    let valid = Project::new()
        .file("Export.toml", "[project]\nname = \"p\"\n[models.m]\nsource = \"m.keras\"\n[[models.m.pieces]]\nname = \"full\"\n")
        .file("m.keras", "");
    let out = valid.run(&["check"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).ends_with("/Export.toml: ok (1 model, 1 piece, 5 steps)\n"), "{}", stdout(&out));

    let invalid = Project::new().file("Export.toml", "[project]\nname = \"p\"\n");
    let out = invalid.run(&["check"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("error[missing-key]: missing required key `models`"));
    assert!(stderr(&out).ends_with("has 1 error; nothing was run\n"), "{}", stderr(&out));

    let empty = Project::new();
    let out = empty.run(&["check"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no Export.toml or export.yaml in"));
    assert!(stderr(&out).contains("exportctl init"));
}

#[test]
fn check_reads_yaml_and_an_explicit_manifest() {
    let project = Project::new()
        .file("conf/models.yaml", "project:\n  name: p\nmodels:\n  m:\n    source: ../m.keras\n    pieces:\n      - name: full\n")
        .file("m.keras", "");
    // Paths are relative to the manifest's directory: conf/ is the project, ../ leaves it.
    let out = project.run(&["-m", "conf/models.yaml", "check"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("conf/models.yaml:5:13: error[path-outside-project]"), "{}", stderr(&out));

    let project = Project::new()
        .file("export.yaml", "project:\n  name: p\nmodels:\n  m:\n    source: m.keras\n    pieces:\n      - name: full\n")
        .file("m.keras", "");
    assert_eq!(project.run(&["check"]).status.code(), Some(0));
}

#[test]
fn usage_errors_exit_2() {
    let out = exportctl().arg("frobnicate").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = exportctl().args(["plan", "--format", "svg"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn help_texts() {
    for args in [&["--help"][..], &["check", "--help"], &["plan", "--help"], &["init", "--help"], &["schema", "--help"]] {
        let out = exportctl().args(args).env("COLUMNS", "100").output().unwrap();
        assert!(out.status.success());
        let name = format!("help_{}", args[0].trim_start_matches('-'));
        insta::assert_snapshot!(name, stdout(&out));
    }
}

#[test]
fn init_writes_a_manifest_that_checks_once_the_model_exists() {
    let project = Project::new();
    let out = project.run(&["init"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(project.path().join("Export.toml")).unwrap();
    assert!(text.contains("source = \"models/my-model.keras\""));
    // The model is not there yet: check says so, pointing at `source`.
    let out = project.run(&["check"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("error[not-found]: `models/my-model.keras` does not exist"), "{}", stderr(&out));
    std::fs::create_dir_all(project.path().join("models")).unwrap();
    std::fs::write(project.path().join("models/my-model.keras"), "").unwrap();
    let out = project.run(&["check"]);
    assert!(out.status.success(), "{}", stderr(&out));

    // A second init refuses to overwrite; --force does.
    let out = project.run(&["init"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("already exists"));
    assert!(project.run(&["init", "--force"]).status.success());
}

#[test]
fn init_with_a_model_file_fills_in_the_model() {
    let project = Project::new().file("trained/Sentiment_Classifier.h5", "");
    let out = project.run(&["init", "trained/Sentiment_Classifier.h5"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(project.path().join("Export.toml")).unwrap();
    assert!(text.contains("[models.sentiment-classifier]"), "{text}");
    assert!(text.contains("source = \"trained/Sentiment_Classifier.h5\""));
    let out = project.run(&["check"]);
    assert!(out.status.success(), "{}", stderr(&out));

    let out = Project::new().run(&["init", "missing.keras"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("`missing.keras` does not exist"));
}
