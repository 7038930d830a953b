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
            Err(e) => panic!("the TensorFlow runtime is required by this test and could not be had: {e}\n{}", e.help().unwrap_or_default()),
        }
    })
}
