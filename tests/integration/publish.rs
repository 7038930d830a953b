//! `exportctl publish`: the `kaggle` commands for the built packages, checked before any runs,
//! as docs/publishing.md shows them (its dry-run blocks are compared with the real output).

use crate::consumers::publish_offline;
use crate::support::{repo, runtime, stderr, stdout, Project};

/// The output docs/publishing.md shows after `$ exportctl -C examples/jax-trained publish
/// --dry-run`, in the order it shows them.
fn documented_dry_runs() -> Vec<String> {
    let doc = std::fs::read_to_string(repo().join("docs/publishing.md")).unwrap();
    let prompt = "```console\n$ exportctl -C examples/jax-trained publish --dry-run\n";
    doc.split(prompt).skip(1).map(|rest| rest.split_once("```").unwrap().0.to_string()).collect()
}

/// `publish --dry-run` in `project`, with its paths as they are from the repository's root.
fn dry_run(project: &Project) -> String {
    let out = project.run(&["publish", "--dry-run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out).replace(&project.path().display().to_string(), "examples/jax-trained")
}

#[test]
fn publishing_before_building_names_the_missing_files() {
    let project = Project::example("jax-trained");
    let out = project.run(&["publish", "--dry-run", "--color", "never"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("cannot publish:"), "{err}");
    assert!(err.contains("dist/classifier/model-metadata.json does not exist"), "{err}");
    assert!(err.contains("dist/classifier/classifier/1/kaggle/model-instance-metadata.json does not exist"), "{err}");
    assert!(err.contains("run `exportctl build` first: it writes these files for version 1"), "{err}");
    assert!(stdout(&out).is_empty(), "no command is printed when one cannot run");

    let out = project.run(&["publish", "--dry-run", "--color", "never", "clasifier"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no model `clasifier` in the manifest") && stderr(&out).contains("did you mean `classifier`?"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_bad_kaggle_owner_is_a_manifest_error() {
    let manifest = std::fs::read_to_string(repo().join("examples/jax-trained/Export.toml")).unwrap();
    let project = Project::new().file("Export.toml", &format!("{manifest}\n[kaggle]\nowner = \"My Team\"\n"));
    let out = project.run(&["check", "--color", "never"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("`My Team` is not a Kaggle owner slug"), "{err}");
    assert!(err.contains("owner = \"my-team\""), "the help shows the slug: {err}");
}

#[test]
fn dry_run_prints_the_commands_docs_publishing_md_shows_for_each_version() {
    runtime();
    let project = Project::example("jax-trained");
    let (out, _) = project.build_json(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let documented = documented_dry_runs();
    assert_eq!(documented.len(), 2, "docs/publishing.md shows version 1, then version 2");
    assert_eq!(dry_run(&project), documented[0]);

    // Without the tool or credentials nothing runs, and both are named.
    let home = tempfile::tempdir().unwrap();
    let mut command = crate::support::exportctl();
    command.arg("-C").arg(project.path()).args(["publish", "--color", "never"]);
    command.env("PATH", "/nonexistent").env("HOME", home.path());
    for name in ["KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN", "KAGGLE_CONFIG_DIR"] {
        command.env_remove(name);
    }
    let out = command.output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("the `kaggle` command is not on PATH: install it with `pip install kaggle`"), "{err}");
    assert!(err.contains("no Kaggle credentials"), "{err}");
    assert!(err.contains("`exportctl publish --dry-run` prints the commands"), "{err}");

    // Version 2, as the guide changes the manifest.
    let doc = std::fs::read_to_string(repo().join("docs/publishing.md")).unwrap();
    let notes = "[kaggle]\nversion-notes = \"Retrained with twice the data; it's better\"\n";
    assert!(doc.contains(&format!("[project]\nversion = 2\n\n{notes}")), "the guide shows this change");
    let manifest = std::fs::read_to_string(project.path().join("Export.toml")).unwrap();
    std::fs::write(project.path().join("Export.toml"), manifest.replace("version = 1", "version = 2") + "\n" + notes).unwrap();
    let (out, _) = project.build_json(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(dry_run(&project), documented[1]);

    // The real kaggle tool reads every file and command of version 2.
    let (out, sent) = publish_offline(&project, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let requests: Vec<&str> = sent.iter().filter_map(|e| e["request"].as_str()).collect();
    assert_eq!(requests, ["update_model", "update_model_instance", "create_model_instance_version"]);
    let version = sent.iter().find(|e| e["request"] == "create_model_instance_version").unwrap();
    assert_eq!(version["body"]["body"]["versionNotes"], "Retrained with twice the data; it's better");
    assert_eq!(version["body"]["framework"], "MODEL_FRAMEWORK_TENSOR_FLOW_2");
    assert!(stderr(&out).contains("published version 2 of 1 variation(s)"), "{}", stderr(&out));
}
