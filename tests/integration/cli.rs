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

/// Every command's `--help`, as a snapshot: the text people read is reviewed like code.
#[test]
fn help_texts() {
    fn walk(command: &clap::Command, path: Vec<String>, out: &mut Vec<Vec<String>>) {
        out.push(path.clone());
        for sub in command.get_subcommands() {
            let mut next = path.clone();
            next.push(sub.get_name().to_string());
            walk(sub, next, out);
        }
    }
    let mut commands = Vec::new();
    walk(&<exportctl::cli::Cli as clap::CommandFactory>::command(), vec![], &mut commands);
    assert!(commands.len() > 15, "{commands:?}");
    for path in commands {
        let mut args = path.clone();
        args.push("--help".into());
        let out = exportctl().args(&args).env("COLUMNS", "100").output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        let name = if path.is_empty() { "help".to_string() } else { format!("help_{}", path.join("_")) };
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
fn init_with_a_model_it_cannot_read_says_so_and_writes_nothing() {
    // init reads the model: an empty .h5 is none.
    let project = Project::new().file("trained/Sentiment_Classifier.h5", "");
    let out = project.run(&["init", "trained/Sentiment_Classifier.h5"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("cannot read"), "{}", stderr(&out));
    assert!(!project.path().join("Export.toml").exists());

    // A SavedModel without Keras metadata has no layers: a model entry, the pieces left to you.
    let project = Project::new().file("trained/Sentiment_Classifier/saved_model.pb", "");
    let out = project.run(&["init", "trained/Sentiment_Classifier"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(project.path().join("Export.toml")).unwrap();
    assert!(text.contains("[models.sentiment-classifier]"), "{text}");
    assert!(text.contains("source = \"trained/Sentiment_Classifier\""));
    let out = project.run(&["check"]);
    assert!(out.status.success(), "{}", stderr(&out));

    let out = Project::new().run(&["init", "missing.keras"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("`missing.keras` does not exist"));
}

fn broken_project() -> Project {
    Project::new()
        .file(
            "Export.toml",
            "[project]\nname = \"p\"\n[models.m]\nsource = \"m.keras\"\ndropuot = 0.1\n[[models.m.pieces]]\nname = \"full\"\n",
        )
        .file("m.keras", "")
}

#[test]
fn completions_for_every_shell() {
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let out = exportctl().args(["completions", shell]).output().unwrap();
        assert!(out.status.success(), "{shell}: {}", stderr(&out));
        let script = stdout(&out);
        for command in ["build", "check", "inspect", "report", "runtime"] {
            assert!(script.contains(command), "{shell} completion lacks `{command}`");
        }
    }
    // The bash script is valid bash.
    let out = exportctl().args(["completions", "bash"]).output().unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("exportctl.bash"), &out.stdout).unwrap();
    let check = std::process::Command::new("bash").arg("-n").arg(dir.path().join("exportctl.bash")).output().unwrap();
    assert!(check.status.success(), "{}", stderr(&check));
    assert_eq!(exportctl().args(["completions", "tcsh"]).output().unwrap().status.code(), Some(2));
}

#[test]
fn man_pages() {
    let out = exportctl().arg("man").output().unwrap();
    assert!(out.status.success());
    let page = stdout(&out);
    assert!(page.contains(".TH exportctl 1"), "{}", &page[..page.len().min(300)]);
    assert!(page.contains("completions") && page.contains("report"), "the page lists every command");
    let out = exportctl().args(["man", "build"]).output().unwrap();
    assert!(stdout(&out).contains(".TH exportctl-build 1"));
    assert!(stdout(&out).contains("\\-\\-locked"));
    let out = exportctl().args(["man", "frobnicate"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn color_follows_the_flag_then_no_color_then_clicolor_force() {
    let project = broken_project();
    let colored = |out: &std::process::Output| stderr(out).contains('\u{1b}');
    // Not a terminal, nothing set: plain, in the file:line:col form.
    let out = project.run_with_env(&["check"], &[]);
    assert!(!colored(&out));
    assert!(stderr(&out).contains("Export.toml:5:1: error[unknown-key]: unknown key `dropuot` in `models.m`"), "{}", stderr(&out));
    // CLICOLOR_FORCE colours even into a pipe; NO_COLOR wins over it; the flag wins over both.
    let out = project.run_with_env(&["check"], &[("CLICOLOR_FORCE", "1")]);
    assert!(colored(&out), "{}", stderr(&out));
    assert!(!stderr(&out).contains("Export.toml:5:1: error"), "the graphical form, not the plain one");
    let out = project.run_with_env(&["check"], &[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")]);
    assert!(!colored(&out));
    let out = project.run_with_env(&["--color", "never", "check"], &[("CLICOLOR_FORCE", "1")]);
    assert!(!colored(&out));
    assert!(stderr(&out).contains("Export.toml:5:1: error[unknown-key]"));
    let out = project.run_with_env(&["check", "--color=always"], &[("NO_COLOR", "1")]);
    assert!(colored(&out));
    assert_eq!(out.status.code(), Some(2), "colour changes nothing but the colour");
    // clap's own messages too.
    let out = exportctl().args(["--color", "always", "frobnicate"]).output().unwrap();
    assert!(colored(&out));
    let out = exportctl().args(["--color", "never", "frobnicate"]).env("CLICOLOR_FORCE", "1").output().unwrap();
    assert!(!colored(&out));
}

#[test]
fn quiet_prints_only_errors_and_data() {
    let valid = Project::new()
        .file("Export.toml", "[project]\nname = \"p\"\n[models.m]\nsource = \"m.keras\"\n[[models.m.pieces]]\nname = \"full\"\n")
        .file("m.keras", "");
    let out = valid.run(&["-q", "check"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!((stdout(&out).as_str(), stderr(&out).as_str()), ("", ""));
    // Data asked for is printed.
    let out = valid.run(&["--quiet", "plan"]);
    assert!(stdout(&out).contains("m/full:package"));
    // Errors are printed.
    let out = broken_project().run(&["-q", "check"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("error[unknown-key]"));
    // -q and -v contradict each other.
    let out = valid.run(&["-q", "-v", "check"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("cannot be used with"), "{}", stderr(&out));
}

fn json_of(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_str(stdout(out).trim()).unwrap_or_else(|e| panic!("not one JSON object ({e}): {}", stdout(out)))
}

#[test]
fn check_prints_json_and_its_errors_as_json() {
    let valid = Project::new()
        .file("Export.toml", "[project]\nname = \"p\"\n[models.m]\nsource = \"m.keras\"\n[[models.m.pieces]]\nname = \"full\"\n")
        .file("m.keras", "");
    let out = valid.run(&["check", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0));
    let value = json_of(&out);
    assert_eq!(
        (value["ok"].as_bool(), value["models"].as_u64(), value["pieces"].as_u64(), value["steps"].as_u64()),
        (Some(true), Some(1), Some(1), Some(5))
    );

    let out = broken_project().run(&["check", "--format", "json"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stderr(&out), "", "in JSON mode errors go to stdout");
    let error = json_of(&out);
    assert_eq!(error["event"], "error");
    assert_eq!(error["code"], "invalid-manifest");
    assert_eq!(error["exit_code"], 2);
    assert!(error["file"].as_str().unwrap().ends_with("Export.toml"), "{error}");
    assert_eq!((error["line"].as_u64(), error["col"].as_u64()), (Some(5), Some(1)));
    let first = &error["diagnostics"][0];
    assert_eq!(first["code"], "unknown-key");
    assert_eq!(first["help"], "did you mean `dropout`?");
}

#[test]
fn every_data_command_prints_its_errors_as_json() {
    let project = Project::new()
        .file("Export.toml", "[project]\nname = \"p\"\n[models.m]\nsource = \"m.keras\"\n[[models.m.pieces]]\nname = \"full\"\n")
        .file("m.keras", "");
    let cases: [(&[&str], &str, i32); 6] = [
        (&["plan", "--format", "json", "nosuch"], "unknown-target", 2),
        (&["build", "--format", "json", "nosuch"], "unknown-target", 2),
        (&["build", "--message-format", "json", "nosuch"], "unknown-target", 2),
        (&["inspect", "--format", "json", "missing.tar.gz"], "usage", 2),
        (&["validate", "--format", "json", "missing.tar.gz"], "usage", 2),
        (&["check", "--format=json", "--frobnicate"], "usage", 2),
    ];
    for (args, code, exit) in cases {
        let out = project.run(args);
        assert_eq!(out.status.code(), Some(exit), "{args:?}: {}", stderr(&out));
        let error = json_of(&out);
        assert_eq!(error["code"], code, "{args:?}: {error}");
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()), "{error}");
        assert!(error.get("help").is_some(), "{error}");
    }
    let empty = Project::new();
    let out = empty.run(&["plan", "--format", "json"]);
    assert_eq!(json_of(&out)["code"], "no-manifest");
}

#[test]
fn runtime_status_without_a_runtime_fails_the_same_way_in_text_and_json() {
    let home = tempfile::tempdir().unwrap();
    let env = [("EXPORTCTL_HOME", home.path().to_str().unwrap()), ("EXPORTCTL_PYTHON", ""), ("VIRTUAL_ENV", "")];
    let project = Project::new();
    let text = project.run_with_env(&["runtime", "status"], &env);
    let json = project.run_with_env(&["runtime", "status", "--format", "json"], &env);
    assert_eq!(text.status.code(), Some(1), "{}", stderr(&text));
    assert_eq!(json.status.code(), Some(1));
    assert!(stderr(&text).contains("is not installed"), "{}", stderr(&text));
    assert!(stderr(&text).contains("exportctl runtime install"));
    let error = json_of(&json);
    assert_eq!(error["code"], "runtime-unusable");
    assert!(error["help"].as_str().unwrap().contains("exportctl runtime install"));
}

/// The exit codes are one table, the same in the README, docs/cli.md and `--help`.
#[test]
fn exit_codes_are_documented_once_everywhere() {
    let help = stdout(&exportctl().arg("--help").output().unwrap());
    let readme = std::fs::read_to_string(crate::support::repo().join("README.md")).unwrap();
    let docs = std::fs::read_to_string(crate::support::repo().join("docs/cli.md")).unwrap();
    for (code, meaning) in [
        ("0", "success"),
        ("1", "a step failed, or --locked found an output that differs from Export.lock"),
        ("2", "bad usage, or an invalid or missing manifest (nothing was run)"),
        ("130", "interrupted (Ctrl-C), also in --watch"),
    ] {
        assert!(help.lines().any(|l| l.trim_start().starts_with(code) && l.ends_with(meaning)), "--help lacks `{code} {meaning}`:\n{help}");
        let row = format!("| {code} | {meaning} |");
        assert!(readme.contains(&row), "README.md lacks `{row}`");
        assert!(docs.contains(&row), "docs/cli.md lacks `{row}`");
    }
}

#[test]
fn report_says_where_the_last_report_is() {
    let project = Project::new()
        .file("Export.toml", "[project]\nname = \"p\"\n[models.m]\nsource = \"m.keras\"\n[[models.m.pieces]]\nname = \"full\"\n")
        .file("m.keras", "");
    let out = project.run(&["report"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no build report in"), "{}", stderr(&out));
    assert!(stderr(&out).contains("exportctl build"));
    std::fs::create_dir_all(project.path().join(".exportctl/reports")).unwrap();
    std::fs::write(project.path().join(".exportctl/reports/latest.html"), "<html></html>").unwrap();
    // Not a terminal: the path, and nothing is opened.
    let out = project.run(&["report"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).trim_end().ends_with(".exportctl/reports/latest.html"), "{}", stdout(&out));
    let out = project.run(&["report", "--print"]);
    assert!(stdout(&out).trim_end().ends_with(".exportctl/reports/latest.html"));
}

/// The repository stands on its own: no file points readers to a planning document that is not
/// in it (module docs, help texts and docs once cited its sections).
#[test]
fn no_file_cites_a_document_outside_the_repository() {
    let needles = [concat!("SPEC", ".md"), concat!("SPEC", " §"), concat!("(SPEC", ")")];
    let mut offenders = Vec::new();
    let mut stack: Vec<std::path::PathBuf> = ["src", "docs", "tests", "examples", "schemas", "benches", "README.md", "Export.toml.example"]
        .iter()
        .map(|p| crate::support::repo().join(p))
        .collect();
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n == "dist" || n == ".exportctl" || n == "target" || n == "__pycache__") {
                continue;
            }
            stack.extend(std::fs::read_dir(&path).unwrap().flatten().map(|e| e.path()));
        } else if let Ok(text) = std::fs::read_to_string(&path) {
            for (n, line) in text.lines().enumerate() {
                if needles.iter().any(|needle| line.contains(needle)) {
                    offenders.push(format!("{}:{}: {line}", path.display(), n + 1));
                }
            }
        }
    }
    assert!(offenders.is_empty(), "cite docs/ or the code instead:\n{}", offenders.join("\n"));
}
