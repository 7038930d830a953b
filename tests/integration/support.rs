//! Shared test support: temporary projects and running the real binary.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The exportctl binary built for these tests.
pub fn exportctl() -> Command {
    Command::new(env!("CARGO_BIN_EXE_exportctl"))
}

/// The crate's root directory.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A temporary project directory: `Project::new().file("Export.toml", "...")`.
pub struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    pub fn new() -> Project {
        Project { dir: tempfile::Builder::new().prefix("exportctl-test-").tempdir_in(target_tmp()).expect("temp dir") }
    }

    pub fn file(self, path: &str, contents: &str) -> Project {
        let full = self.dir.path().join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, contents).unwrap();
        self
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Runs exportctl with `args` in the project.
    pub fn run(&self, args: &[&str]) -> Output {
        exportctl().arg("-C").arg(self.path()).args(args).output().expect("exportctl runs")
    }

    /// Runs exportctl with `args` and extra environment variables.
    pub fn run_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut command = exportctl();
        command.arg("-C").arg(self.path()).args(args);
        for (name, value) in env {
            command.env(name, value);
        }
        command.output().expect("exportctl runs")
    }
}

/// Tests write only inside the project: temporary projects live under target/.
pub fn target_tmp() -> PathBuf {
    let dir = repo().join("target").join("test-tmp");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The runtime the tests use: the managed runtime, installed on first use (once per machine:
/// parallel test processes wait on its lock). Fails — never skips — when it cannot be had.
pub fn runtime() -> &'static exportctl::runtime::Runtime {
    static RUNTIME: std::sync::OnceLock<exportctl::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME.get_or_init(|| {
        let settings = exportctl::manifest::RuntimeSettings {
            python: None,
            tensorflow: "2.21.0".into(),
            keras: exportctl::manifest::KerasFlavour::Auto,
            timeout_secs: 900,
        };
        let options = exportctl::runtime::Discovery { install: true, progress: true };
        match exportctl::runtime::discover(&settings, &repo(), &options) {
            Ok(runtime) => runtime,
            Err(e) => panic!(
                "the TensorFlow runtime is required by this test and could not be had: {e}\n{}",
                exportctl::error::help_text(&e).unwrap_or_default()
            ),
        }
    })
}

impl Project {
    /// A copy of `examples/<name>` (without its build outputs).
    pub fn example(name: &str) -> Project {
        let project = Project::new();
        copy_dir(&repo().join("examples").join(name), project.path());
        for generated in ["dist", ".exportctl", "Export.lock"] {
            let path = project.path().join(generated);
            if path.is_dir() {
                std::fs::remove_dir_all(&path).unwrap();
            } else if path.exists() {
                std::fs::remove_file(&path).unwrap();
            }
        }
        project
    }

    /// A copy of the directory `dir`, everything included.
    pub fn copy_of(dir: &Path) -> Project {
        let project = Project::new();
        copy_dir(dir, project.path());
        project
    }

    /// Runs `exportctl build --message-format json ARGS` and returns the events.
    pub fn build_json(&self, args: &[&str]) -> (Output, Vec<serde_json::Value>) {
        self.build_json_with_env(args, &[])
    }

    /// `build_json` with extra environment variables.
    pub fn build_json_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> (Output, Vec<serde_json::Value>) {
        let mut full = vec!["build", "--message-format", "json"];
        full.extend_from_slice(args);
        let out = self.run_with_env(&full, env);
        let events =
            stdout(&out).lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON event ({e}): {l}"))).collect();
        (out, events)
    }
}

/// Copies `from` into `to`, keeping hard links (files linked together in `from` are linked
/// together in `to`), as `cp -a` does: a copied cache is the same cache.
pub fn copy_dir(from: &Path, to: &Path) {
    fn walk(from: &Path, to: &Path, linked: &mut std::collections::HashMap<(u64, u64), PathBuf>) {
        use std::os::unix::fs::MetadataExt as _;
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let target = to.join(entry.file_name());
            let meta = std::fs::symlink_metadata(entry.path()).unwrap();
            if meta.is_dir() {
                walk(&entry.path(), &target, linked);
            } else if meta.file_type().is_symlink() {
                std::os::unix::fs::symlink(std::fs::read_link(entry.path()).unwrap(), &target).unwrap();
            } else if meta.nlink() > 1 {
                match linked.get(&(meta.dev(), meta.ino())) {
                    Some(first) => std::fs::hard_link(first, &target).unwrap(),
                    None => {
                        std::fs::copy(entry.path(), &target).unwrap();
                        linked.insert((meta.dev(), meta.ino()), target);
                    }
                }
            } else {
                std::fs::copy(entry.path(), &target).unwrap();
            }
        }
    }
    walk(from, to, &mut std::collections::HashMap::new());
}

/// The steps that have an event of `kind` (`step-finished`, `step-cached`, …), sorted.
pub fn steps_with(events: &[serde_json::Value], kind: &str) -> Vec<String> {
    let mut steps: Vec<String> = events.iter().filter(|e| e["event"] == kind).map(|e| e["step"].as_str().unwrap().to_string()).collect();
    steps.sort();
    steps
}

/// The `build-finished` event.
pub fn finished(events: &[serde_json::Value]) -> &serde_json::Value {
    events.iter().find(|e| e["event"] == "build-finished").expect("a build-finished event")
}
