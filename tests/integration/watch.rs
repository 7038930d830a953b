//! `exportctl build --watch` on a copy of the quickstart: real files, real notify, a real
//! worker that stays warm, bounded in time.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use crate::support::{exportctl, runtime, Project};

struct Watch {
    child: Child,
    events: Receiver<serde_json::Value>,
}

impl Watch {
    fn start(project: &Project) -> Watch {
        let mut child = exportctl()
            .arg("-C")
            .arg(project.path())
            .args(["build", "--watch", "--message-format", "json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let (tx, events) = mpsc::channel();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                let event: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
                if tx.send(event).is_err() {
                    break;
                }
            }
        });
        Watch { child, events }
    }

    /// The events up to and including the next `watch`/`watching` event.
    fn until_watching(&self, timeout: Duration) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let event = self.events.recv_timeout(left).unwrap_or_else(|_| panic!("no `watching` event within {timeout:?}; saw {seen:#?}"));
            let done = event["event"] == "watch" && event["state"] == "watching";
            seen.push(event);
            if done {
                return seen;
            }
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn finished(events: &[serde_json::Value]) -> &serde_json::Value {
    events.iter().rev().find(|e| e["event"] == "build-finished").expect("a build-finished event")
}

fn ran(events: &[serde_json::Value]) -> Vec<String> {
    crate::support::steps_with(events, "step-finished")
}

#[test]
fn watch_rebuilds_what_changed_with_a_warm_worker_and_stops_cleanly() {
    let python = runtime().python.clone();
    let project = Project::example("quickstart");
    let watch = Watch::start(&project);

    let first = watch.until_watching(Duration::from_secs(240));
    assert_eq!(finished(&first)["ran"], 11);
    let worker_pid = finished(&first)["worker_pid"].as_u64().expect("the first build ran Python");
    let watching = first.last().unwrap();
    assert!(watching["paths"].as_array().unwrap().iter().any(|p| p.as_str().unwrap().ends_with("models/classifier.keras")));

    // 1. The docs body: only the packages run again, and fast.
    let body = project.path().join("docs/classifier.md");
    let saved = Instant::now();
    std::fs::write(&body, std::fs::read_to_string(&body).unwrap() + "\nEdited while watching.\n").unwrap();
    let events = watch.until_watching(Duration::from_secs(60));
    let took = saved.elapsed();
    assert_eq!(ran(&events), ["classifier/classifier:package", "classifier/encoder:package"]);
    let rebuilding = events.iter().find(|e| e["state"] == "rebuilding").unwrap();
    assert!(rebuilding["paths"][0].as_str().unwrap().ends_with("docs/classifier.md"));
    let md = std::fs::read_to_string(project.path().join("dist/classifier/encoder/1/model.md")).unwrap();
    assert!(md.contains("Edited while watching."));
    eprintln!("docs save -> rebuilt model.md: {took:?}");

    // 2. A new model file (written the way an editor or a training script does: temp + rename):
    //    its export and everything downstream run, in the same warm worker.
    let model = project.path().join("models/classifier.keras");
    let tmp = project.path().join("models/.classifier.keras.tmp");
    let status = Command::new(&python)
        .arg("-c")
        .arg(
            "import sys, keras, numpy as np\n\
             m = keras.saving.load_model(sys.argv[1])\n\
             w = m.get_layer('logits').get_weights(); w[1] = w[1] + 0.5\n\
             m.get_layer('logits').set_weights(w)\n\
             m.save(sys.argv[2] + '.keras')\n",
        )
        .arg(&model)
        .arg(&tmp)
        .env("TF_CPP_MIN_LOG_LEVEL", "3")
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::rename(tmp.with_extension("tmp.keras"), &model).unwrap();
    let events = watch.until_watching(Duration::from_secs(180));
    assert_eq!(finished(&events)["ran"], 11, "{:#?}", ran(&events));
    assert_eq!(finished(&events)["worker_pid"].as_u64(), Some(worker_pid), "the worker stayed warm");
    assert_eq!(finished(&events)["python_started"], false);

    // 3. A broken manifest: a diagnostic, and the process keeps watching.
    let manifest = project.path().join("Export.toml");
    let good = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, good.replace("to = \"embedding\"", "to = \"embedding\"\ndropuot = 0.2")).unwrap();
    let events = watch.until_watching(Duration::from_secs(30));
    let error = events.iter().find(|e| e["event"] == "error").expect("an error event");
    assert_eq!(error["code"], "invalid-manifest", "{error}");
    assert!(error["diagnostics"][0]["message"].as_str().unwrap().contains("unknown key `dropuot`"), "{error}");
    assert!(error["line"].as_u64().is_some(), "{error}");
    assert!(project.path().join("dist/classifier/encoder/1/model.md").is_file(), "the last good outputs stay");

    // 4. Fixed: it builds again (the manifest did not change what the steps read).
    std::fs::write(&manifest, &good).unwrap();
    let events = watch.until_watching(Duration::from_secs(60));
    assert_eq!(finished(&events)["success"], true);

    // 5. Ctrl-C: exit 130 (interrupted, as for any command), and no worker left behind.
    let mut watch = watch;
    let pid = watch.child.id() as i32;
    assert_eq!(unsafe { libc_kill(pid, 2) }, 0);
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = watch.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "--watch did not stop on Ctrl-C");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(130));
    std::thread::sleep(Duration::from_millis(500));
    assert!(!std::path::Path::new(&format!("/proc/{worker_pid}")).exists(), "the worker outlived --watch");
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}
