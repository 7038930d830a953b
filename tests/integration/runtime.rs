//! The managed runtime and the persistent worker, for real: a real virtualenv, a real Python.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use exportctl::error::help_text;
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
            assert!(traceback.iter().any(|f| f.starts_with("worker/debug.py:") && f.ends_with(" in m_debug_raise")), "{traceback:?}");
        }
        other => panic!("expected a Python error, got {other:?}"),
    }
    assert!(help_text(&err).unwrap().contains("Python traceback"));
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
    assert!(help_text(&err).unwrap().contains("runtime.timeout"));
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
    assert!(text.contains("(backend tensorflow: the worker sets KERAS_BACKEND whatever your shell or ~/.keras/keras.json say)"), "{text}");
    // The LiteRT extra, installed on demand (the quickstart's LiteRT piece installs it).
    let litert = text.lines().find(|l| l.starts_with("ai_edge_litert:")).unwrap_or_else(|| panic!("no ai_edge_litert line:\n{text}"));
    assert!(
        litert == "ai_edge_litert:  2.3.0  (for pieces with formats = [.., \"litert\"])"
            || litert.contains("not installed  (installed into this runtime by the first build"),
        "{litert}"
    );

    // $EXPORTCTL_PYTHON wins over the managed runtime, and the status says why.
    let out = exportctl().args(["runtime", "status", "--format", "json"]).env("EXPORTCTL_PYTHON", &runtime().python).output().unwrap();
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["keras_backend"], "tensorflow");
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
    let status = exportctl()
        .args(["runtime", "status"])
        .env("EXPORTCTL_HOME", home.path())
        .env_remove("VIRTUAL_ENV")
        .env_remove("EXPORTCTL_PYTHON")
        .output()
        .unwrap();
    assert!(stderr(&status).contains("is not installed"));
    assert_eq!(status.status.code(), Some(1));
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
    let status = exportctl()
        .args(["runtime", "status"])
        .env("EXPORTCTL_HOME", home.path())
        .env_remove("VIRTUAL_ENV")
        .env_remove("EXPORTCTL_PYTHON")
        .output()
        .unwrap();
    assert!(stderr(&status).contains("is not installed"), "a killed install must not look installed: {}", stderr(&status));

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
        .filter(|n| !n.starts_with('.'))
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert!(home.path().join("runtimes").join(&entries[0]).join("runtime.json").is_file());
    assert!(entries[0].starts_with("tf-2.21.0-py"), "{entries:?}");
    // The runtime works from where it was renamed to.
    let venv = home.path().join("runtimes").join(&entries[0]).join("venv");
    let ok = Command::new(venv.join("bin/python"))
        .args(["-c", "import tensorflow_hub, tf_keras"])
        .env("TF_CPP_MIN_LOG_LEVEL", "3")
        .status()
        .unwrap();
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

/// A managed runtime's folder as an install leaves it (without the 2 GB): its record, a
/// python, and optionally the usage builds write.
fn fake_runtime(home: &std::path::Path, name: &str, tensorflow: &str, requirements: &[&str], last_used_days_ago: Option<u64>) {
    let folder = home.join("runtimes").join(name);
    std::fs::create_dir_all(folder.join("venv/bin")).unwrap();
    std::fs::write(folder.join("venv/bin/python"), vec![0u8; 4096]).unwrap();
    // Installed from the lock this exportctl installs from, for its TensorFlow version.
    let lock = exportctl::runtime::managed::Pins::for_tensorflow(tensorflow).lock_digest();
    let record = serde_json::json!({
        "lock": lock,
        "requirements": requirements, "base_python": "/usr/bin/python3",
        "versions": { "python": "3.11.7", "tensorflow": tensorflow, "keras": "3.10.0", "tf_keras": null, "tensorflow_hub": null, "numpy": "2.1.0" },
        "tensorflow_dir": null, "installer": "uv", "install_seconds": 30.0, "bytecode": true,
    });
    std::fs::write(folder.join("runtime.json"), serde_json::to_vec(&record).unwrap()).unwrap();
    if let Some(days) = last_used_days_ago {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let when = now - days * 86_400;
        let usage = serde_json::json!({ "last_used": when, "projects": { "/work/vision": when } });
        std::fs::write(folder.join("usage.json"), serde_json::to_vec(&usage).unwrap()).unwrap();
    }
}

#[test]
fn runtime_list_shows_pins_size_last_use_and_projects() {
    let home = tempfile::tempdir_in(target_tmp()).unwrap();
    let current = ["tensorflow-cpu==2.21.0", "tf-keras==2.21.0", "tensorflow-hub==0.16.1"];
    fake_runtime(home.path(), "tf-2.21.0-py3.11.7-aaaaaaaa", "2.21.0", &current, Some(2));
    fake_runtime(home.path(), "tf-2.20.0-py3.11.7-bbbbbbbb", "2.20.0", &["tensorflow-cpu==2.20.0", "tensorflow-hub==0.16.0"], None);
    let list = |args: &[&str]| exportctl().args(args).env("EXPORTCTL_HOME", home.path()).output().unwrap();
    let out = list(&["runtime", "list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("tf-2.21.0-py3.11.7-aaaaaaaa\n  pins:      tensorflow-cpu==2.21.0, tf-keras==2.21.0, tensorflow-hub==0.16.1"),
        "{text}"
    );
    assert!(text.contains("tf-2.20.0-py3.11.7-bbbbbbbb  (stale: not the pins this exportctl installs)"), "{text}");
    assert!(text.contains("  projects:  /work/vision"), "{text}");
    assert!(text.contains("  projects:  none recorded"), "{text}");
    assert!(text.contains("  size:      "), "{text}");

    let out = list(&["runtime", "list", "--format", "json"]);
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let runtimes = value["runtimes"].as_array().unwrap();
    assert_eq!(runtimes.len(), 2);
    assert_eq!(runtimes[1]["name"], "tf-2.21.0-py3.11.7-aaaaaaaa");
    assert_eq!(runtimes[1]["current"], true);
    assert_eq!(runtimes[0]["current"], false);
    assert!(runtimes[1]["bytes"].as_u64().unwrap() >= 4096);
    assert_eq!(runtimes[1]["projects"][0], "/work/vision");
}

#[test]
fn runtime_prune_removes_unused_and_stale_runtimes_but_not_one_in_use() {
    let home = tempfile::tempdir_in(target_tmp()).unwrap();
    let current = ["tensorflow-cpu==2.21.0", "tf-keras==2.21.0", "tensorflow-hub==0.16.1"];
    fake_runtime(home.path(), "tf-2.21.0-py3.11.7-recent", "2.21.0", &current, Some(1));
    fake_runtime(home.path(), "tf-2.21.0-py3.11.7-old", "2.21.0", &current, Some(90));
    fake_runtime(home.path(), "tf-2.20.0-py3.11.7-stale", "2.20.0", &["tensorflow-cpu==2.20.0"], Some(1));
    fake_runtime(home.path(), "tf-2.21.0-py3.11.7-busy", "2.21.0", &current, Some(200));
    let exists = |name: &str| home.path().join("runtimes").join(name).exists();
    let prune = |args: &[&str]| exportctl().args(["runtime", "prune"]).args(args).env("EXPORTCTL_HOME", home.path()).output().unwrap();

    // Another process uses `busy`: it holds the runtime's use lock shared, as every process
    // that loads a runtime does.
    let lock = std::fs::File::create(home.path().join("runtimes/.use-tf-2.21.0-py3.11.7-busy.lock")).unwrap();
    lock.lock_shared().unwrap();

    let out = prune(&["--dry-run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("kept tf-2.21.0-py3.11.7-old ("), "{}", stdout(&out));
    assert!(exists("tf-2.21.0-py3.11.7-old"), "--dry-run removes nothing");

    let out = prune(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("removed tf-2.21.0-py3.11.7-old (") && text.contains("): unused for 90 days"), "{text}");
    assert!(text.contains("kept tf-2.21.0-py3.11.7-busy (") && text.contains("another exportctl process is using it"), "{text}");
    assert!(!exists("tf-2.21.0-py3.11.7-old"));
    assert!(exists("tf-2.21.0-py3.11.7-busy") && exists("tf-2.21.0-py3.11.7-recent") && exists("tf-2.20.0-py3.11.7-stale"));

    let out = prune(&["--stale"]);
    assert!(stdout(&out).contains("removed tf-2.20.0-py3.11.7-stale ("), "{}", stdout(&out));
    assert!(!exists("tf-2.20.0-py3.11.7-stale"));
    assert!(exists("tf-2.21.0-py3.11.7-recent"), "current pins, used yesterday: kept");

    drop(lock);
    let out = prune(&["--older-than", "100"]);
    assert!(stdout(&out).contains("removed tf-2.21.0-py3.11.7-busy ("), "{}", stdout(&out));
    let left: Vec<String> = std::fs::read_dir(home.path().join("runtimes"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| !n.starts_with('.'))
        .collect();
    assert_eq!(left, ["tf-2.21.0-py3.11.7-recent"]);
}

/// A build notes which project used the managed runtime, for `runtime list`.
#[test]
fn a_build_records_its_project_with_the_runtime() {
    let runtime = runtime();
    let folder = exportctl::runtime::managed::folder_of(runtime).expect("the tests use the managed runtime");
    let project = crate::build::built_quickstart();
    let usage: serde_json::Value = serde_json::from_slice(&std::fs::read(folder.join("usage.json")).unwrap()).unwrap();
    let _ = project;
    assert!(usage["projects"].as_object().unwrap().keys().any(|p| p.contains("exportctl-test-")), "{usage}");
}
