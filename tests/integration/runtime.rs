//! The managed runtime and the persistent worker, for real: a real virtualenv, a real Python.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use exportctl::runtime::worker::WorkerOptions;
use exportctl::runtime::{Worker, WorkerError};
use serde_json::json;

use crate::support::{exportctl, runtime, stderr, stdout, target_tmp};

fn debug_worker(timeout: Duration) -> Worker {
    // The debug methods exist only when the worker is started with this variable.
    std::env::set_var("EXPORTCTL_WORKER_DEBUG", "1");
    Worker::new(runtime(), WorkerOptions { timeout, verbose: 0 })
}

#[test]
fn hello_reports_the_runtime_versions() {
    let rt = runtime();
    assert_eq!(rt.versions.tensorflow.as_deref(), Some("2.21.0"));
    let mut worker = Worker::new(rt, WorkerOptions::default());
    let hello = worker.call("hello", json!({}), "hello").unwrap();
    assert_eq!(hello["tensorflow"], "2.21.0");
    assert_eq!(hello["python"], rt.versions.python.as_deref().unwrap());
    assert_eq!(hello["keras"], rt.versions.keras.as_deref().unwrap());
    assert_eq!(hello["pid"], worker.pid().unwrap());
    // The same process answers the next request: TensorFlow is imported once.
    let pid = worker.pid();
    worker.call("hello", json!({}), "hello").unwrap();
    assert_eq!(worker.pid(), pid);
    assert_eq!(worker.starts, 1);
}

#[test]
fn a_python_exception_is_reported_and_the_worker_lives_on() {
    let mut worker = debug_worker(Duration::from_secs(120));
    worker.call("hello", json!({}), "hello").unwrap();
    let pid = worker.pid();
    let err = worker.call("debug.raise", json!({ "message": "shapes (2, 3) and (4,) do not match" }), "m/p:trace").unwrap_err();
    match &err {
        WorkerError::Python { kind, message, traceback, .. } => {
            assert_eq!(kind, "ValueError");
            assert_eq!(message, "shapes (2, 3) and (4,) do not match");
            // The frame of the worker's own file that raised, labelled with its short name.
            assert!(
                traceback.iter().any(|f| f.starts_with("worker/debug.py:") && f.ends_with(" in m_debug_raise")),
                "{traceback:?}"
            );
        }
        other => panic!("expected a Python error, got {other:?}"),
    }
    assert!(err.help().unwrap().contains("Python traceback"));
    assert_eq!(worker.call("debug.sleep", json!({ "seconds": 0 }), "x").unwrap()["slept"], 0.0);
    assert_eq!(worker.pid(), pid, "an exception does not cost a worker");
}

#[test]
fn a_worker_that_dies_is_named_and_replaced() {
    let mut worker = debug_worker(Duration::from_secs(120));
    worker.call("hello", json!({}), "hello").unwrap();
    let first = worker.pid();

    let err = worker.call("debug.exit", json!({ "code": 3 }), "m:export").unwrap_err();
    assert!(matches!(err, WorkerError::Died { .. }), "{err:?}");
    assert_eq!(err.to_string(), "the Python worker exited with status 3 while running m:export");

    worker.call("debug.sleep", json!({ "seconds": 0 }), "x").unwrap();
    let second = worker.pid();
    assert_ne!(first, second, "a fresh worker serves the next request");

    let err = worker.call("debug.segfault", json!({}), "m/p:slice").unwrap_err();
    assert_eq!(err.to_string(), "the Python worker crashed (segmentation fault) while running m/p:slice");
    worker.call("debug.sleep", json!({ "seconds": 0 }), "x").unwrap();
    assert_eq!(worker.starts, 3);
}

#[test]
fn a_request_past_its_timeout_stops_the_worker() {
    let mut worker = debug_worker(Duration::from_secs(3));
    worker.call("debug.sleep", json!({ "seconds": 0 }), "warm-up").unwrap();
    let first = worker.pid().unwrap();
    let err = worker.call("debug.sleep", json!({ "seconds": 60 }), "m/p:trace").unwrap_err();
    assert!(matches!(err, WorkerError::Timeout { .. }), "{err:?}");
    assert_eq!(err.to_string(), "the Python worker did not answer within 3s while running m/p:trace");
    assert!(err.help().unwrap().contains("runtime.timeout"));
    // The hung process is gone, and the next request gets a new one.
    assert!(!Path::new(&format!("/proc/{first}")).exists(), "the timed-out worker was killed");
    worker.call("debug.sleep", json!({ "seconds": 0 }), "x").unwrap();
    assert_ne!(worker.pid(), Some(first));
}

#[test]
fn runtime_status_names_the_choice_and_versions() {
    runtime();
    let out = exportctl().args(["runtime", "status"]).env_remove("VIRTUAL_ENV").env_remove("EXPORTCTL_PYTHON").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("runtime:         managed"), "{text}");
    assert!(text.contains("tensorflow:      2.21.0"), "{text}");
    assert!(text.contains("tf_keras:        2.21.0"), "{text}");

    // $EXPORTCTL_PYTHON wins over the managed runtime, and the status says why.
    let out = exportctl()
        .args(["runtime", "status", "--format", "json"])
        .env("EXPORTCTL_PYTHON", &runtime().python)
        .output()
        .unwrap();
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["choice"], "environment");
    assert_eq!(status["reason"], "$EXPORTCTL_PYTHON is set");
}

#[test]
fn a_missing_python_is_explained() {
    let home = tempfile::tempdir_in(target_tmp()).unwrap();
    let empty_path = tempfile::tempdir_in(target_tmp()).unwrap();
    let out = exportctl()
        .args(["runtime", "install"])
        .env("EXPORTCTL_HOME", home.path())
        .env("PATH", empty_path.path())
        .env_remove("EXPORTCTL_BASE_PYTHON")
        .env_remove("VIRTUAL_ENV")
        .env_remove("EXPORTCTL_PYTHON")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("python3 was not found on PATH"), "{err}");
    assert!(err.contains("install Python 3.9+"), "{err}");
}

#[test]
fn an_unreachable_registry_is_explained_and_leaves_nothing_behind() {
    let home = tempfile::tempdir_in(target_tmp()).unwrap();
    let out = exportctl()
        .args(["runtime", "install"])
        .env("EXPORTCTL_HOME", home.path())
        .env("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
        .env("UV_INDEX_URL", "http://127.0.0.1:9/simple")
        .env("UV_DEFAULT_INDEX", "http://127.0.0.1:9/simple")
        .env("PIP_RETRIES", "0")
        .env("PIP_TIMEOUT", "2")
        .env("UV_OFFLINE", "0")
        .env("PATH", std::env::var("PATH").unwrap())
        .env_remove("VIRTUAL_ENV")
        .env_remove("EXPORTCTL_PYTHON")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("could not reach the Python package registry"), "{err}");
    let runtimes: Vec<String> = std::fs::read_dir(home.path().join("runtimes"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != ".lock" && n != "last-install-failure.log")
        .collect();
    assert!(runtimes.is_empty(), "a failed install left {runtimes:?}");
    let status = exportctl().args(["runtime", "status"]).env("EXPORTCTL_HOME", home.path()).env_remove("VIRTUAL_ENV").env_remove("EXPORTCTL_PYTHON").output().unwrap();
    assert!(stdout(&status).contains("is not installed"));
}

/// Two processes asking for the runtime at once install it once; a killed install leaves
/// nothing that a later one trusts.
#[test]
fn concurrent_installs_install_once_and_a_killed_install_is_redone() {
    runtime(); // the shared uv cache is warm: this install copies instead of downloading
    let home = tempfile::tempdir_in(target_tmp()).unwrap();
    let shared_uv_cache = exportctl::runtime::home().join("cache").join("uv");
    let install = || {
        let mut c = exportctl();
        c.args(["runtime", "install"])
            .env("EXPORTCTL_HOME", home.path())
            .env("UV_CACHE_DIR", &shared_uv_cache)
            .env_remove("VIRTUAL_ENV")
            .env_remove("EXPORTCTL_PYTHON")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    };
    // An install killed halfway.
    let mut killed = install().spawn().unwrap();
    std::thread::sleep(Duration::from_secs(4));
    killed.kill().unwrap();
    killed.wait().unwrap();
    let status = exportctl().args(["runtime", "status"]).env("EXPORTCTL_HOME", home.path()).env_remove("VIRTUAL_ENV").env_remove("EXPORTCTL_PYTHON").output().unwrap();
    assert!(stdout(&status).contains("is not installed"), "a killed install must not look installed: {}", stdout(&status));

    // Two at once.
    let a = install().spawn().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let b = install().spawn().unwrap();
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(a.status.success(), "{}", stderr(&a));
    assert!(b.status.success(), "{}", stderr(&b));
    let both = format!("{}{}", stderr(&a), stderr(&b));
    assert_eq!(both.matches("exportctl: installed ").count(), 1, "installed twice:\n{both}");
    assert!(both.contains("waiting for another exportctl"), "{both}");
    assert_eq!(stdout(&a), stdout(&b), "both report the same runtime");

    // A grandchild of the killed install (ensurepip runs pip in a subprocess) may still be
    // writing into its `.tmp-` folder: such folders are never trusted, and the next install
    // removes them under the lock. What must hold: exactly one runtime, and it is complete.
    let entries: Vec<String> = std::fs::read_dir(home.path().join("runtimes"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != ".lock" && !n.starts_with(".tmp-"))
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert!(home.path().join("runtimes").join(&entries[0]).join("runtime.json").is_file());
    assert!(entries[0].starts_with("tf-2.21.0-py"), "{entries:?}");
    // The runtime works from where it was renamed to.
    let venv = home.path().join("runtimes").join(&entries[0]).join("venv");
    let ok = Command::new(venv.join("bin/python")).args(["-c", "import tensorflow_hub, tf_keras"]).env("TF_CPP_MIN_LOG_LEVEL", "3").status().unwrap();
    assert!(ok.success());
    a_managed_runtime_is_relocated_to_its_final_folder(&venv);
}

/// Its scripts and `pyvenv.cfg` name the folder it lives in, not the `.tmp-` one it was
/// installed in: `pip` and TensorFlow's own command-line tools run.
fn a_managed_runtime_is_relocated_to_its_final_folder(venv: &std::path::Path) {
    let pip = Command::new(venv.join("bin/python")).args(["-m", "pip", "--version"]).output().unwrap();
    assert!(pip.status.success(), "{}", stderr(&pip));
    // absl's --help exits 1 after printing the usage: what matters is that the script starts.
    let cli = Command::new(venv.join("bin/saved_model_cli")).arg("--help").env("TF_CPP_MIN_LOG_LEVEL", "3").output().unwrap();
    let text = format!("{}{}", stdout(&cli), stderr(&cli));
    assert!(text.contains("USAGE") && text.contains("saved_model_cli"), "saved_model_cli did not start: {text}");
    let script = Command::new(venv.join("bin/pip")).arg("--version").output().unwrap();
    assert!(script.status.success(), "pip: {}", stderr(&script));
    let config = std::fs::read_to_string(venv.join("pyvenv.cfg")).unwrap();
    assert!(!config.contains(".tmp-"), "{config}");
}
