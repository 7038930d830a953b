//! The shared remote cache against a real nginx (WebDAV, Bazel's HTTP cache layout): what one
//! clone builds, another downloads; what the wire damages is a miss; a server that fails is one
//! warning; shards meet in the cache and a `--locked` job assembles `dist/` from it alone.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::nginx::{Nginx, TOKEN};
use crate::support::{exportctl, finished, repo, runtime, stderr, steps_with, target_tmp, Project};

const URL: &str = "EXPORTCTL_REMOTE_CACHE";
const KEY: &str = "EXPORTCTL_REMOTE_CACHE_KEY";
const SIGNING_KEY: &str = "a team secret for the tests";

/// The quickstart built by clone A, which uploaded every step (signed) to a server that
/// lives as long as the test run.
struct Warm {
    server: Nginx,
    a: Project,
}

fn warm() -> &'static Warm {
    static WARM: std::sync::OnceLock<Warm> = std::sync::OnceLock::new();
    WARM.get_or_init(|| {
        runtime();
        let server = Nginx::start(&target_tmp());
        let a = Project::example("quickstart");
        let url = server.url("cache");
        let (out, events) = a.build_json_with_env(&[], &[(URL, &url), (KEY, SIGNING_KEY)]);
        assert!(out.status.success(), "{}\nnginx: {}", stderr(&out), server.error_log());
        assert_eq!(finished(&events)["ran"], 11);
        assert!(remote_warnings(&events).is_empty(), "{:?}", remote_warnings(&events));
        // Eleven entries (the classifier is also converted to LiteRT), each with its blobs, are on the server.
        let entries = std::fs::read_dir(server.storage().join("ac")).unwrap().count();
        assert_eq!(entries, 11);
        Warm { server, a }
    })
}

/// Every file under `dist/`, by path, with its bytes.
fn dist(project: &Project) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, files: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, files);
            } else {
                files.insert(path.strip_prefix(root).unwrap().to_path_buf(), std::fs::read(&path).unwrap());
            }
        }
    }
    let mut files = BTreeMap::new();
    walk(&project.path().join("dist"), &project.path().join("dist"), &mut files);
    assert!(!files.is_empty(), "dist/ is empty");
    files
}

fn assert_same_dist(a: &Project, b: &Project) {
    let (a, b) = (dist(a), dist(b));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (path, bytes) in &a {
        if b[path] != *bytes {
            let (x, y) = (String::from_utf8_lossy(bytes), String::from_utf8_lossy(&b[path]));
            let first = x.lines().zip(y.lines()).find(|(l, r)| l != r);
            panic!("dist/{} differs ({} and {} bytes); first different line: {first:?}", path.display(), bytes.len(), b[path].len());
        }
    }
}

/// Build-level warnings (no step): what the remote cache says when it fails.
fn remote_warnings(events: &[serde_json::Value]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["event"] == "warning" && e["step"].is_null())
        .map(|e| format!("{}: {}", e["diagnostics"][0]["code"].as_str().unwrap(), e["diagnostics"][0]["message"].as_str().unwrap()))
        .collect()
}

/// Each step's key in the project's Export.lock.
fn lock_keys(project: &Project) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(project.path().join("Export.lock")).unwrap();
    let lock: toml::Value = toml::from_str(&text).unwrap();
    lock["step"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["id"].as_str().unwrap().to_string(), s["key"].as_str().unwrap().to_string()))
        .collect()
}

/// A copy of clone A without the local cache entries of its package steps, nor the files only
/// they have (the archive, model.md, build.json): its build asks the remote cache for those
/// two steps and downloads their files, or runs them (no Python: packaging is exportctl's own).
fn a_without_local_packages() -> Project {
    let project = Project::copy_of(warm().a.path());
    let cache = project.path().join(".exportctl/cache/v2");
    for (id, key) in lock_keys(&project) {
        if id.ends_with(":package") {
            let entry: serde_json::Value =
                serde_json::from_slice(&std::fs::read(cache.join("entries").join(&key).join("entry.json")).unwrap()).unwrap();
            for (file, digest) in entry["files"].as_object().unwrap() {
                if !file.starts_with("saved_model/") {
                    let digest = digest.as_str().unwrap();
                    // The pieces of one model share their model-metadata.json blob: gone already.
                    match std::fs::remove_file(cache.join("blobs").join(&digest[..2]).join(digest)) {
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        other => other.unwrap(),
                    }
                }
            }
            std::fs::remove_dir_all(cache.join("entries").join(&key)).unwrap();
        }
    }
    project
}

/// The `ac` entry of `step` on the server: its path and the entry's JSON.
fn server_entry(server: &Nginx, step: &str) -> (PathBuf, serde_json::Value) {
    for file in std::fs::read_dir(server.storage().join("ac")).unwrap() {
        let path = file.unwrap().path();
        let envelope: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let entry: serde_json::Value = serde_json::from_str(envelope["entry"].as_str().unwrap()).unwrap();
        if entry["entry"]["step"] == step {
            return (path, entry);
        }
    }
    panic!("no entry for {step} on the server");
}

/// The blob of `file` in `step`'s entry, on the server's disk.
fn server_blob(server: &Nginx, step: &str, file: &str) -> PathBuf {
    let (_, entry) = server_entry(server, step);
    let sha = entry["blobs"][file]["sha256"].as_str().unwrap_or_else(|| panic!("{step} has no {file}"));
    server.storage().join("cas").join(sha)
}

#[test]
fn a_clean_clone_builds_everything_from_the_remote_cache_without_python_or_a_runtime() {
    let warm = warm();
    let b = Project::example("quickstart");
    // An empty exportctl home: nothing installed, so nothing can start.
    let home = tempfile::tempdir_in(target_tmp()).unwrap();
    let url = warm.server.url("cache");
    let env = [(URL, url.as_str()), (KEY, SIGNING_KEY), ("EXPORTCTL_HOME", home.path().to_str().unwrap())];
    let (out, events) = b.build_json_with_env(&[], &env);
    assert!(out.status.success(), "{}", stderr(&out));
    let done = finished(&events);
    assert_eq!((done["ran"].as_u64(), done["cached"].as_u64()), (Some(0), Some(11)));
    assert_eq!(done["python_started"], false);
    assert_eq!(done["native_loaded"], false);
    assert!(
        events.iter().filter(|e| e["event"] == "step-cached").all(|e| e["source"] == "remote"),
        "every step came from the remote cache"
    );
    assert_eq!(done["remote"]["hits"], 11, "{done}");
    assert!(done["remote"]["downloaded_bytes"].as_u64().unwrap() > 0, "{done}");
    assert_eq!(done["remote"]["uploaded_entries"], 0, "nothing ran, so nothing is uploaded: {done}");
    assert!(std::fs::read_dir(home.path()).unwrap().next().is_none(), "the runtime home was written");
    assert_same_dist(&warm.a, &b);
    assert_eq!(
        std::fs::read_to_string(b.path().join("Export.lock")).unwrap(),
        std::fs::read_to_string(warm.a.path().join("Export.lock")).unwrap()
    );

    // Now in the local cache: the next build asks nobody.
    let (out, events) = b.build_json_with_env(&[], &env);
    assert!(out.status.success());
    assert!(events.iter().filter(|e| e["event"] == "step-cached").all(|e| e["source"] == "local"));
}

#[test]
fn damaged_blobs_and_unsigned_entries_are_misses_the_step_runs_and_the_cache_heals() {
    let warm = warm();
    let server = Nginx::start_copy(&target_tmp(), &warm.server);
    // A corrupted blob (same size, other bytes) and a truncated one.
    let corrupted = server_blob(&server, "classifier/classifier:package", "model.tar.gz");
    let mut bytes = std::fs::read(&corrupted).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&corrupted, &bytes).unwrap();
    let truncated = server_blob(&server, "classifier/encoder:package", "model.md");
    let bytes = std::fs::read(&truncated).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();

    let url = server.url("cache");
    let env = [(URL, url.as_str()), (KEY, SIGNING_KEY)];
    let c = Project::example("quickstart");
    let (out, events) = c.build_json_with_env(&[], &env);
    assert!(out.status.success(), "{}", stderr(&out));
    let warnings = remote_warnings(&events);
    assert_eq!(steps_with(&events, "step-finished"), ["classifier/classifier:package", "classifier/encoder:package"], "{warnings:?}");
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings.iter().all(|w| w.starts_with("remote-cache-untrusted")), "{warnings:?}");
    assert!(warnings.iter().any(|w| w.contains("do not match its digest")), "{warnings:?}");
    assert!(warnings.iter().any(|w| w.contains("truncated")), "{warnings:?}");
    assert_same_dist(&warm.a, &c);

    // The build that ran them uploaded the right bytes over the damaged ones.
    let d = Project::example("quickstart");
    let (out, events) = d.build_json_with_env(&[], &env);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(finished(&events)["ran"], 0, "{:?}", remote_warnings(&events));
    assert_same_dist(&warm.a, &d);

    // An entry whose signature does not match what it says (here: a summary rewritten by
    // whoever can write to the server) is ignored.
    let (path, mut entry) = server_entry(&server, "classifier/classifier:package");
    let mut envelope: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    entry["entry"]["outcome"]["summary"] = "poisoned".into();
    envelope["entry"] = entry.to_string().into();
    std::fs::write(&path, envelope.to_string()).unwrap();
    // And one without any signature, as a client without the key would write it.
    let (path, entry) = server_entry(&server, "classifier/encoder:package");
    std::fs::write(&path, serde_json::json!({ "format": 1, "entry": entry.to_string() }).to_string()).unwrap();
    let e = Project::example("quickstart");
    let (out, events) = e.build_json_with_env(&[], &[(URL, url.as_str()), (KEY, SIGNING_KEY), ("EXPORTCTL_REMOTE_UPLOAD", "0")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let warnings = remote_warnings(&events);
    assert_eq!(
        steps_with(&events, "step-finished"),
        ["classifier/classifier:package", "classifier/encoder:package"],
        "warnings: {warnings:?}\nstarted: {:?}",
        events.iter().filter(|e| e["event"] == "step-started").map(|e| (&e["step"], &e["reason"])).collect::<Vec<_>>()
    );
    assert_eq!(warnings.iter().filter(|w| w.contains("without a valid signature")).count(), 2, "{warnings:?}");
    assert_same_dist(&warm.a, &e);
    assert!(!std::fs::read_to_string(e.path().join("dist/classifier/classifier/1/build.json")).unwrap().contains("poisoned"));
}

#[test]
fn a_server_that_answers_500_is_one_warning_and_the_build_goes_on() {
    let warm = warm();
    let project = a_without_local_packages();
    let url = warm.server.url("error");
    let (out, events) = project.build_json_with_env(&[], &[(URL, &url)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(steps_with(&events, "step-finished"), ["classifier/classifier:package", "classifier/encoder:package"]);
    let warnings = remote_warnings(&events);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].starts_with("remote-cache-error") && warnings[0].contains("HTTP 500"), "{warnings:?}");
    assert_same_dist(&warm.a, &project);
}

#[test]
fn a_slow_server_times_out_once_and_the_build_goes_on() {
    let warm = warm();
    let project = a_without_local_packages();
    let url = warm.server.url("slow");
    let env = [(URL, url.as_str()), ("EXPORTCTL_REMOTE_CACHE_TIMEOUT", "1"), ("EXPORTCTL_REMOTE_UPLOAD", "0")];
    let (out, events) = project.build_json_with_env(&[], &env);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(steps_with(&events, "step-finished"), ["classifier/classifier:package", "classifier/encoder:package"]);
    let warnings = remote_warnings(&events);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].starts_with("remote-cache-unreachable") && warnings[0].contains("timed out"), "{warnings:?}");
    assert_same_dist(&warm.a, &project);
}

#[test]
fn a_server_stopped_before_or_during_the_build_is_one_warning_and_the_build_goes_on() {
    let warm = warm();

    // Stopped before: connections are refused. In the people's output: one warning, with help.
    let mut server = Nginx::start_copy(&target_tmp(), &warm.server);
    let url = server.url("cache");
    server.stop();
    let project = a_without_local_packages();
    let out = project.run_with_env(&["build"], &[(URL, &url)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stderr(&out);
    assert_eq!(text.matches("warning[remote-cache-unreachable]").count(), 1, "{text}");
    assert!(text.contains("cannot be reached") && text.contains("help:"), "{text}");
    assert_same_dist(&warm.a, &project);

    // Stopped during a download: the server is slow, and goes away one second in.
    let mut server = Nginx::start_copy(&target_tmp(), &warm.server);
    let project = a_without_local_packages();
    let child = exportctl()
        .arg("-C")
        .arg(project.path())
        .args(["build", "--message-format", "json"])
        .env(URL, server.url("slow"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    server.stop();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(steps_with(&events, "step-finished"), ["classifier/classifier:package", "classifier/encoder:package"]);
    let warnings = remote_warnings(&events);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].starts_with("remote-cache-unreachable"), "{warnings:?}");
    assert_same_dist(&warm.a, &project);
}

#[test]
fn three_shards_fill_the_cache_and_a_locked_job_assembles_dist_without_running_anything() {
    let warm = warm();
    let server = Nginx::start(&target_tmp());
    let url = server.url("cache");
    let shards: Vec<(String, Vec<String>)> = std::thread::scope(|scope| {
        let jobs: Vec<_> = (1..=3)
            .map(|k| {
                let url = url.clone();
                scope.spawn(move || {
                    // Each shard checks its share against the committed Export.lock, as CI does.
                    let clone = Project::example("quickstart");
                    std::fs::copy(repo().join("examples/quickstart/Export.lock"), clone.path().join("Export.lock")).unwrap();
                    let shard = format!("{k}/3");
                    let (out, events) = clone.build_json_with_env(&["--shard", &shard, "--locked", "-j", "1"], &[(URL, &url)]);
                    assert!(out.status.success(), "shard {shard}: {}\n{}", crate::support::stdout(&out), stderr(&out));
                    let mut built: Vec<String> = steps_with(&events, "step-finished");
                    built.extend(steps_with(&events, "step-cached"));
                    built.sort();
                    (shard, built)
                })
            })
            .collect();
        jobs.into_iter().map(|j| j.join().unwrap()).collect()
    });
    // Two pieces over three shards: the first is empty, the others take one piece each, with
    // their model's export.
    assert_eq!(shards[0].1, Vec::<String>::new());
    assert!(shards[1].1.iter().all(|s| s == "classifier:export" || s.starts_with("classifier/classifier:")), "{:?}", shards[1]);
    assert!(shards[2].1.iter().all(|s| s == "classifier:export" || s.starts_with("classifier/encoder:")), "{:?}", shards[2]);
    assert_eq!(shards[1].1.len() + shards[2].1.len(), 12);

    // The assembling job: the committed Export.lock, an empty runtime home, --locked.
    let assemble = Project::example("quickstart");
    std::fs::copy(repo().join("examples/quickstart/Export.lock"), assemble.path().join("Export.lock")).unwrap();
    let home = tempfile::tempdir_in(target_tmp()).unwrap();
    let (out, events) = assemble.build_json_with_env(&["--locked"], &[(URL, &url), ("EXPORTCTL_HOME", home.path().to_str().unwrap())]);
    assert!(out.status.success(), "{}", stderr(&out));
    let done = finished(&events);
    assert_eq!((done["ran"].as_u64(), done["cached"].as_u64()), (Some(0), Some(11)));
    assert_eq!(done["python_started"], false);
    assert_eq!(done["native_loaded"], false);
    assert_same_dist(&warm.a, &assemble);
}

#[test]
fn the_token_is_sent_but_never_shown() {
    let warm = warm();
    let url = warm.server.url("private");
    // Without it: refused, one warning that points at the token.
    let project = a_without_local_packages();
    let (out, events) = project.build_json_with_env(&[], &[(URL, &url)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let warnings: Vec<&serde_json::Value> = events.iter().filter(|e| e["event"] == "warning" && e["step"].is_null()).collect();
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0]["diagnostics"][0]["message"].as_str().unwrap().contains("HTTP 401"));
    assert!(warnings[0]["diagnostics"][0]["help"].as_str().unwrap().contains("EXPORTCTL_REMOTE_CACHE_TOKEN"));
    // With it: both package steps come from the server, and the token is nowhere in the output.
    let project = a_without_local_packages();
    let out = project.run_with_env(
        &["-v", "build", "--message-format", "json"],
        &[(URL, &url), ("EXPORTCTL_REMOTE_CACHE_TOKEN", TOKEN), ("EXPORTCTL_REMOTE_UPLOAD", "0")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(r#""source":"remote""#), "{stdout}");
    assert!(!stdout.contains(TOKEN) && !stderr(&out).contains(TOKEN));
    assert_same_dist(&warm.a, &project);
}
