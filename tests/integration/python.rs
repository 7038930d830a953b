//! The worker's Python unit tests (`src/runtime/worker/tests/`), run with the managed runtime's
//! Python against the worker's files as exportctl writes them.

use std::process::Command;

use crate::support::{repo, runtime, target_tmp};

#[test]
fn the_workers_python_unit_tests_pass() {
    // The runtime is required: `runtime()` fails the test, never skips it, when it cannot be had.
    let python = &runtime().python;
    let dir = tempfile::Builder::new().prefix("exportctl-worker-").tempdir_in(target_tmp()).unwrap();
    let entry = exportctl::runtime::worker::write_sources(dir.path()).unwrap();
    assert!(entry.is_file(), "{}", entry.display());
    let tests = repo().join("src").join("runtime").join("worker").join("tests");
    // Run from the written folder: `python -m` puts it first on sys.path, so the tests import the
    // written `exportctl_worker` package, not the one in the source tree.
    let out = Command::new(python)
        .current_dir(dir.path())
        .args(["-m", "unittest", "discover", "--start-directory"])
        .arg(&tests)
        .args(["--pattern", "test_*.py", "-v"])
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("TF_CPP_MIN_LOG_LEVEL", "3")
        .env_remove("TF_USE_LEGACY_KERAS")
        .env_remove("PYTHONPATH")
        .output()
        .expect("the runtime's Python runs");
    let report = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the worker's Python unit tests failed:\n{report}");
    let ran: u32 = report
        .lines()
        .find_map(|l| l.strip_prefix("Ran ").and_then(|rest| rest.split_whitespace().next()).and_then(|n| n.parse().ok()))
        .unwrap_or_else(|| panic!("no unittest summary:\n{report}"));
    assert!(ran >= 40, "only {ran} Python tests ran:\n{report}");
    assert!(report.lines().any(|l| l == "OK"), "{report}");
}
