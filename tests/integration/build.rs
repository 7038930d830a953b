//! `exportctl build` end to end on the quickstart example, with the real worker and the
//! real native library: incremental rebuilds, cache consistency, locking, `--locked`.

use std::time::{Duration, Instant};

use crate::support::{finished, runtime, stderr, steps_with, Project};

/// A built copy of the quickstart. It is built once per test run; each test gets its own
/// copy of the result (sources, cache, dist/ and Export.lock): a copied cache is a valid cache.
pub fn built_quickstart() -> Project {
    static TEMPLATE: std::sync::OnceLock<Project> = std::sync::OnceLock::new();
    let template = TEMPLATE.get_or_init(|| {
        runtime();
        let project = Project::example("quickstart");
        let (out, events) = project.build_json(&[]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(finished(&events)["ran"], 11);
        assert_eq!(finished(&events)["python_started"], true);
        project
    });
    Project::copy_of(template.path())
}

#[test]
fn a_second_build_is_all_cached_and_fast() {
    let project = built_quickstart();
    for piece in ["classifier", "encoder"] {
        let dir = project.path().join(format!("dist/classifier/{piece}/1"));
        for file in ["model.tar.gz", "model.md", "build.json", "saved_model/saved_model.pb"] {
            assert!(dir.join(file).is_file(), "dist lacks {piece}/{file}");
        }
    }
    let lock = std::fs::read_to_string(project.path().join("Export.lock")).unwrap();
    assert_eq!(lock.matches("[[step]]").count(), 11);

    // The copy's first build re-reads the copied sources (new paths); then a true no-op.
    let (out, _) = project.build_json(&[]);
    assert!(out.status.success());
    let (out, events) = project.build_json(&[]);
    assert!(out.status.success());
    assert_eq!((finished(&events)["ran"].as_u64(), finished(&events)["cached"].as_u64()), (Some(0), Some(11)));
    assert_eq!(finished(&events)["python_started"], false);
    assert_eq!(finished(&events)["native_loaded"], false);
    // Every line of stdout is an event.
    assert!(events.iter().all(|e| e["event"].is_string()));
    // Export.lock did not change.
    assert_eq!(std::fs::read_to_string(project.path().join("Export.lock")).unwrap(), lock);
}

#[test]
fn editing_the_docs_body_reruns_only_package() {
    let project = built_quickstart();
    let body = project.path().join("docs/classifier.md");
    let mut text = std::fs::read_to_string(&body).unwrap();
    text.push_str("\n## Changelog\n\nA new paragraph.\n");
    std::fs::write(&body, text).unwrap();
    let (out, events) = project.build_json(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(steps_with(&events, "step-finished"), ["classifier/classifier:package", "classifier/encoder:package"]);
    let md = std::fs::read_to_string(project.path().join("dist/classifier/encoder/1/model.md")).unwrap();
    assert!(md.contains("A new paragraph."));
}

#[test]
fn a_deleted_cache_entry_reruns_just_that_step() {
    let project = built_quickstart();
    let (_, events) = project.build_json(&[]);
    let validate = events.iter().find(|e| e["event"] == "step-cached" && e["step"] == "classifier/encoder:validate").unwrap();
    let key = validate["key"].as_str().unwrap();
    std::fs::remove_dir_all(project.path().join(".exportctl/cache/v2/entries").join(key)).unwrap();
    let (out, events) = project.build_json(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    // The validate report came out the same, so package stays cached (early cut-off).
    assert_eq!(steps_with(&events, "step-finished"), ["classifier/encoder:validate"]);
}

#[test]
fn a_target_builds_only_what_it_needs() {
    runtime();
    let project = Project::example("quickstart");
    let (out, events) = project.build_json(&["classifier/encoder:trace"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(steps_with(&events, "step-finished"), ["classifier/encoder:slice", "classifier/encoder:trace", "classifier:export"]);
    assert!(!project.path().join("dist").exists(), "no package was built, so dist/ is untouched");
}

#[test]
fn locked_passes_on_a_rebuild_and_names_what_differs() {
    let project = built_quickstart();
    let out = project.run(&["build", "--locked"]);
    assert!(out.status.success(), "{}", stderr(&out));

    // Pretend the committed lock recorded another archive.
    let lock_path = project.path().join("Export.lock");
    let lock = std::fs::read_to_string(&lock_path).unwrap();
    let mut edited = String::new();
    let mut in_package = false;
    for line in lock.lines() {
        if line.starts_with("id = ") {
            in_package = line == "id = \"classifier/encoder:package\"";
        }
        if in_package && (line.starts_with("digest = ") || line.starts_with("\"model.tar.gz\" = ")) {
            let (k, _) = line.split_once(" = ").unwrap();
            edited.push_str(&format!("{k} = \"{}\"\n", "0".repeat(64)));
        } else {
            edited.push_str(line);
            edited.push('\n');
        }
    }
    std::fs::write(&lock_path, &edited).unwrap();
    let out = project.run(&["build", "--locked"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("--locked: 1 output differ"), "{err}");
    assert!(err.contains("classifier/encoder:package: model.tar.gz differs"), "{err}");

    // build-finished says how the build ended: the lock check failed it.
    let (out, events) = project.build_json(&["--locked"]);
    assert_eq!(out.status.code(), Some(1));
    let end = finished(&events);
    assert_eq!(end["success"], false, "{end}");
    assert_eq!(end["error"]["code"], "lock-mismatch", "{end}");
    assert_eq!(end["error"]["exit_code"], 1, "{end}");
    assert_eq!(events.last().unwrap()["event"], "error", "the error is the last JSON object on stdout");
    // --locked never rewrites the lock.
    assert_eq!(std::fs::read_to_string(&lock_path).unwrap(), edited);

    std::fs::remove_file(&lock_path).unwrap();
    let out = project.run(&["build", "--locked"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("Export.lock does not exist"));
}

#[test]
fn concurrent_builds_serialize() {
    runtime();
    let project = Project::example("quickstart");
    let mut first = crate::support::exportctl()
        .arg("-C")
        .arg(project.path())
        .args(["build", "--message-format", "json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the first build holds the lock.
    let lock = project.path().join(".exportctl/build.lock");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::read_to_string(&lock).map_or(true, |s| s.trim().is_empty()) {
        assert!(Instant::now() < deadline, "the first build never took the lock");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = project.run(&["build", "--no-wait"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains(&format!("another exportctl build is running in this project (pid {})", first.id())), "{}", stderr(&out));

    let (out, events) = project.build_json(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(events.iter().any(|e| e["event"] == "note" && e["message"].as_str().unwrap().contains("waiting for another exportctl build")));
    assert_eq!(finished(&events)["cached"], 11, "the waiting build found everything built");
    assert!(first.wait().unwrap().success());
}

#[test]
fn a_build_killed_halfway_leaves_nothing_trusted() {
    use std::io::BufRead as _;
    runtime();
    let project = Project::example("quickstart");
    let mut child = crate::support::exportctl()
        .arg("-C")
        .arg(project.path())
        .args(["build", "--message-format", "json", "-j", "1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill it (SIGKILL) while the first trace is running.
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut killed_key = None;
    for line in stdout.lines() {
        let event: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
        if event["event"] == "step-started" && event["kind"] == "trace" {
            std::thread::sleep(Duration::from_millis(300));
            child.kill().unwrap();
            killed_key = Some(event["key"].as_str().unwrap().to_string());
            break;
        }
    }
    child.wait().unwrap();
    let key = killed_key.expect("a trace started");
    let entries = project.path().join(".exportctl/cache/v2/entries");
    assert!(!entries.join(&key).exists(), "the killed step left an entry");
    assert!(!project.path().join("dist").exists());

    // The next build finishes the job, cleaning what the killed one left.
    let (out, events) = project.build_json(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(finished(&events)["failed"], 0);
    assert!(steps_with(&events, "step-finished").contains(&"classifier/classifier:trace".to_string()));
    assert_eq!(std::fs::read_dir(project.path().join(".exportctl/cache/v2/tmp")).unwrap().count(), 0);
}

/// A first Ctrl-C starts no new step (a running one finishes, or stops early where it can)
/// and ends the build with exit 130, as for any interrupted command; `build-finished` says so.
#[test]
fn ctrl_c_stops_the_build_with_exit_130() {
    use std::io::BufRead as _;
    runtime();
    let project = Project::example("quickstart");
    let mut child = crate::support::exportctl()
        .arg("-C")
        .arg(project.path())
        .args(["build", "--format", "json", "-j", "1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut events = Vec::new();
    for line in stdout.lines() {
        let event: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
        if event["event"] == "step-started" && events.iter().all(|e: &serde_json::Value| e["event"] != "step-started") {
            // SAFETY: kill(2) on our own child's pid.
            assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
        }
        events.push(event);
    }
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    let end = finished(&events);
    assert_eq!((end["success"].as_bool(), end["cancelled"].as_bool()), (Some(false), Some(true)), "{end}");
    assert_eq!(end["error"]["code"], "interrupted", "{end}");
    assert_eq!(steps_with(&events, "step-started"), ["classifier:export"], "no step starts after Ctrl-C: {events:#?}");
    assert_eq!(events.last().unwrap()["code"], "interrupted");
}

#[test]
fn inspect_reads_a_built_package_natively() {
    let project = built_quickstart();
    let archive = project.path().join("dist/classifier/encoder/1/model.tar.gz");
    let out = project.run(&["inspect", archive.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = crate::support::stdout(&out);
    for expected in [
        "native load: ok (TensorFlow C API, tag serve)",
        "serving_default  (tensorflow/serving/predict)",
        "in features    float32  [-1, 16]",
        "out embedding  float32  [-1, 32]",
        "hidden/kernel",
        "Optimizer state: none",
    ] {
        assert!(text.contains(expected), "missing `{expected}` in:\n{text}");
    }

    let out = project.run(&["inspect", "--format", "json", archive.to_str().unwrap()]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["signatures"][0]["key"], "serving_default");
    assert_eq!(json["signatures"][0]["outputs"][0]["shape"], serde_json::json!([-1, 32]));
}

/// The children of process `pid` (Linux: every thread's `children` list).
fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for task in tasks.flatten() {
            if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
                out.extend(text.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
            }
        }
    }
    out
}

fn alive(pid: u32) -> bool {
    // A zombie has no memory left; it only waits for its parent to read its status.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

#[test]
fn a_worker_dies_with_a_killed_build_and_leaves_no_temporary_files() {
    use std::io::BufRead as _;
    runtime();
    let project = Project::example("quickstart");
    let mut child = crate::support::exportctl()
        .arg("-C")
        .arg(project.path())
        .args(["build", "--message-format", "json", "-j", "1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    for line in stdout.lines() {
        let event: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
        if event["event"] == "step-started" && event["kind"] == "trace" {
            break;
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    let workers = children_of(child.id());
    assert!(!workers.is_empty(), "a worker runs the trace");
    child.kill().unwrap();
    child.wait().unwrap();
    let killed = Instant::now();
    // Bounded wait, not a timing assertion: the latency is printed for the record.
    while workers.iter().any(|&w| alive(w)) && killed.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(workers.iter().all(|&w| !alive(w)), "the worker outlived the build");
    eprintln!("worker gone {:?} after exportctl was killed", killed.elapsed());
    // Its scratch folder (autograph's generated files) goes with the next run.
    let (out, _) = project.build_json(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let scratch = exportctl::runtime::home().join("scratch").join(child.id().to_string());
    assert!(!scratch.exists(), "{} was left behind", scratch.display());
}
