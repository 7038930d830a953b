//! The cache and `dist/` under things that change behind exportctl's back: corrupt entries,
//! symbolic links, edits through `dist/` links, a size limit; and rebuilds that say why.
//! Each regression test is named after what it once let through.

use std::path::{Path, PathBuf};

use crate::build::built_quickstart;
use crate::support::{finished, runtime, stderr, stdout, steps_with, Project};

/// Every file under `dir`, relative, with its digest.
fn digests(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    fn walk(base: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(base, &path, out);
            } else {
                let rel = path.strip_prefix(base).unwrap().to_string_lossy().into_owned();
                out.push((rel, exportctl::hash::digest_file(&path).unwrap()));
            }
        }
    }
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// The cache file of `step`'s entry at `relative` (its key from a no-op build's events).
fn cached_file(project: &Project, step: &str, relative: &str) -> PathBuf {
    let (_, events) = project.build_json(&[]);
    let event = events.iter().find(|e| e["step"] == step && e["event"] == "step-cached").unwrap_or_else(|| panic!("{step} is not cached"));
    project.path().join(".exportctl/cache/v2/entries").join(event["key"].as_str().unwrap()).join("out").join(relative)
}

fn writable(path: &Path) {
    let mut permissions = std::fs::metadata(path).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    permissions.set_readonly(false);
    std::fs::set_permissions(path, permissions).unwrap();
}

fn variables_file(dir: &Path) -> PathBuf {
    std::fs::read_dir(dir.join("saved_model/variables"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("variables.data"))
        .unwrap()
}

#[test]
fn corrupt_cache_entries_are_never_shipped_and_locked_hashes_what_ships() {
    let project = built_quickstart();
    let shipped = digests(&project.path().join("dist"));
    let trace_out = cached_file(&project, "classifier/encoder:trace", "");
    let data = variables_file(&trace_out);
    for damage in ["flip a byte", "truncate", "delete"] {
        writable(&data);
        match damage {
            "flip a byte" => {
                let mut bytes = std::fs::read(&data).unwrap();
                bytes[100] ^= 1;
                std::fs::write(&data, bytes).unwrap();
            }
            "truncate" => std::fs::File::options().write(true).open(&data).unwrap().set_len(10).unwrap(),
            _ => std::fs::remove_file(&data).unwrap(),
        }
        std::fs::remove_dir_all(project.path().join("dist")).unwrap();
        let (out, events) = project.build_json(&["--locked"]);
        assert!(out.status.success(), "{damage}: {}", stderr(&out));
        let warned: Vec<&serde_json::Value> =
            events.iter().filter(|e| e["event"] == "warning" && e["diagnostics"][0]["code"] == "corrupt-cache-entry").collect();
        assert_eq!(warned.len(), 1, "{damage}: {events:?}");
        assert_eq!(warned[0]["step"], "classifier/encoder:trace");
        assert!(steps_with(&events, "step-finished").contains(&"classifier/encoder:trace".to_string()), "{damage}: the step ran again");
        assert_eq!(digests(&project.path().join("dist")), shipped, "{damage}: dist/ holds the bytes that were built");
        // The rebuilt entry has its own (correct) file now.
        let rebuilt = cached_file(&project, "classifier/encoder:trace", "");
        assert_eq!(rebuilt, trace_out, "the same key");
    }
}

#[test]
fn a_same_size_edit_in_dist_with_its_mtime_restored_is_repaired() {
    let project = built_quickstart();
    // dist/ files are links to the cache: editing one (as root, read-only or not) edits both.
    let shipped = digests(&project.path().join("dist"));
    let md = project.path().join("dist/classifier/encoder/1/model.md");
    let mtime = std::fs::metadata(&md).unwrap().modified().unwrap();
    writable(&md);
    let text = std::fs::read_to_string(&md).unwrap();
    std::fs::write(&md, text.replacen("# Module", "# Modulo", 1)).unwrap();
    std::fs::File::options().write(true).open(&md).unwrap().set_modified(mtime).unwrap();
    let (out, events) = project.build_json(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(events.iter().any(|e| e["diagnostics"][0]["code"] == "corrupt-cache-entry"), "{events:?}");
    assert_eq!(digests(&project.path().join("dist")), shipped);
}

#[test]
fn dist_files_are_read_only_links_to_the_cache_not_copies() {
    use std::os::unix::fs::MetadataExt as _;
    let project = built_quickstart();
    let shipped = project.path().join("dist/classifier/encoder/1/model.tar.gz");
    let meta = std::fs::metadata(&shipped).unwrap();
    assert!(meta.permissions().readonly());
    let cached = cached_file(&project, "classifier/encoder:package", "model.tar.gz");
    // The test harness copied the project; the first build of the copy linked dist/ again.
    assert_eq!(std::fs::metadata(cached).unwrap().ino(), std::fs::metadata(&shipped).unwrap().ino());
}

#[test]
fn a_symlinked_model_folder_in_dist_is_replaced_never_followed() {
    let project = built_quickstart();
    let outside = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(outside.path().join("classifier/encoder/1")).unwrap();
    std::fs::write(outside.path().join("classifier/encoder/1/precious.txt"), "keep me").unwrap();
    std::fs::remove_dir_all(project.path().join("dist/classifier")).unwrap();
    std::os::unix::fs::symlink(outside.path().join("classifier"), project.path().join("dist/classifier")).unwrap();
    let out = project.run(&["build"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(outside.path().join("classifier/encoder/1/precious.txt")).unwrap(), "keep me");
    assert_eq!(std::fs::read_dir(outside.path().join("classifier/encoder/1")).unwrap().count(), 1, "nothing written outside");
    assert!(!project.path().join("dist/classifier").is_symlink());
    assert!(project.path().join("dist/classifier/encoder/1/model.tar.gz").is_file());
}

#[test]
fn a_symlinked_dist_is_refused_by_check_and_build() {
    let project = built_quickstart();
    let outside = tempfile::tempdir().unwrap();
    std::fs::remove_dir_all(project.path().join("dist")).unwrap();
    std::os::unix::fs::symlink(outside.path(), project.path().join("dist")).unwrap();
    for command in [&["check"][..], &["build"][..]] {
        let out = project.run(command);
        assert_eq!(out.status.code(), Some(2), "{command:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("error[bad-out-dir]: `dist` is a symbolic link"), "{}", stderr(&out));
    }
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
}

#[test]
fn a_symlinked_exportctl_folder_is_never_cleaned_through() {
    let project = built_quickstart();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("precious.txt"), "keep me").unwrap();
    std::fs::remove_dir_all(project.path().join(".exportctl")).unwrap();
    std::os::unix::fs::symlink(outside.path(), project.path().join(".exportctl")).unwrap();
    let out = project.run(&["clean", "--cache"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains(".exportctl is a symbolic link"), "{}", stderr(&out));
    let out = project.run(&["build"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("is a symbolic link"), "{}", stderr(&out));
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 1);
}

/// An outside folder holding `sub/precious.txt`, for links to point at.
fn precious_outside() -> tempfile::TempDir {
    let outside = tempfile::tempdir().unwrap();
    std::fs::create_dir(outside.path().join("sub")).unwrap();
    std::fs::write(outside.path().join("sub/precious.txt"), "keep me").unwrap();
    outside
}

/// Replaces `.exportctl/<place>` of `project` by a link to `target`.
fn link_in_cache(project: &Project, place: &str, target: &Path) -> PathBuf {
    let path = project.path().join(".exportctl").join(place);
    exportctl::exec::dist::remove_any(&path).unwrap();
    std::os::unix::fs::symlink(target, &path).unwrap();
    path
}

/// The error of a command refused because `link` is a symbolic link.
fn assert_refused_for_link(out: &std::process::Output, link: &Path) {
    assert_eq!(out.status.code(), Some(1), "{}", stderr(out));
    let said = format!(
        "error: cannot open the cache: {} is a symbolic link; exportctl keeps its cache in real folders of the project and never writes or deletes through a link: remove the link",
        link.display()
    );
    assert!(stderr(out).contains(&said), "{}", stderr(out));
}

#[test]
fn a_symlinked_cache_tmp_folder_made_build_delete_the_folders_it_points_to() {
    let project = built_quickstart();
    let outside = precious_outside();
    let tmp = link_in_cache(&project, "cache/v2/tmp", outside.path());
    assert_refused_for_link(&project.run(&["build"]), &tmp);
    assert_eq!(std::fs::read_to_string(outside.path().join("sub/precious.txt")).unwrap(), "keep me");
    // Removing the link is the way out: the next build makes a real folder again.
    std::fs::remove_file(&tmp).unwrap();
    let out = project.run(&["build"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(std::fs::symlink_metadata(&tmp).unwrap().is_dir());
}

#[test]
fn a_symlinked_cache_blobs_folder_made_clean_gc_delete_the_files_it_points_to() {
    let project = built_quickstart();
    let outside = precious_outside();
    let blobs = link_in_cache(&project, "cache/v2/blobs", outside.path());
    assert_refused_for_link(&project.run_with_env(&["clean", "--gc"], &[("EXPORTCTL_CACHE_MAX_SIZE", "1")]), &blobs);
    assert_eq!(std::fs::read_to_string(outside.path().join("sub/precious.txt")).unwrap(), "keep me");
}

#[test]
fn no_folder_of_the_cache_is_written_or_deleted_through_a_link() {
    for place in ["cache", "cache/v2", "cache/v2/entries", "cache/v2/blobs", "cache/v2/tmp"] {
        let project = built_quickstart();
        let outside = precious_outside();
        let link = link_in_cache(&project, place, outside.path());
        for command in [&["build"][..], &["clean", "--gc"], &["cache", "verify"]] {
            let out = project.run_with_env(command, &[("EXPORTCTL_CACHE_MAX_SIZE", "1")]);
            assert_refused_for_link(&out, &link);
        }
        let left: Vec<_> = std::fs::read_dir(outside.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, ["sub"], "{place}: something was written behind the link");
        assert_eq!(std::fs::read_to_string(outside.path().join("sub/precious.txt")).unwrap(), "keep me", "{place}");
        // `clean --cache` removes the link itself, and a build starts afresh.
        let out = project.run(&["clean", "--cache"]);
        assert!(out.status.success(), "{place}: {}", stderr(&out));
        assert!(outside.path().join("sub/precious.txt").is_file(), "{place}");
    }
}

#[test]
fn a_symlinked_build_lock_had_the_build_overwrite_the_file_it_points_to() {
    let project = built_quickstart();
    let outside = precious_outside();
    let precious = outside.path().join("sub/precious.txt");
    let lock = project.path().join(".exportctl/build.lock");
    let _ = std::fs::remove_file(&lock);
    std::os::unix::fs::symlink(&precious, &lock).unwrap();
    for command in [&["build"][..], &["clean"]] {
        let out = project.run(command);
        assert_eq!(out.status.code(), Some(1), "{command:?}: {}", stderr(&out));
        let said = format!("{} is a symbolic link; exportctl never writes through a link: remove the link", lock.display());
        assert!(stderr(&out).contains(&said), "{command:?}: {}", stderr(&out));
    }
    assert_eq!(std::fs::read_to_string(&precious).unwrap(), "keep me");
}

#[test]
fn a_crafted_entry_json_made_clean_gc_delete_a_file_outside_the_cache() {
    let project = built_quickstart();
    let outside = precious_outside();
    let precious = outside.path().join("sub/precious.txt");
    let entries = project.path().join(".exportctl/cache/v2/entries");
    let real = std::fs::read_dir(&entries).unwrap().next().unwrap().unwrap().path();
    let mut entry: serde_json::Value = serde_json::from_slice(&std::fs::read(real.join("entry.json")).unwrap()).unwrap();
    // A "digest" that climbs out of blobs/ to the precious file, and a file outside out/.
    let climb = format!("{}{}", "../".repeat(precious.components().count() + 8), precious.display());
    let key = "0".repeat(64);
    entry["key"] = key.clone().into();
    entry["files"] = serde_json::json!({ "f": climb, "../../../escaped": "0".repeat(64) });
    let crafted = entries.join(&key);
    std::fs::create_dir_all(crafted.join("out")).unwrap();
    std::fs::write(crafted.join("entry.json"), serde_json::to_vec(&entry).unwrap()).unwrap();
    filetime::set_file_mtime(crafted.join("entry.json"), filetime::FileTime::from_unix_time(1_000_000_000, 0)).unwrap();
    for command in [&["clean", "--gc"][..], &["cache", "verify"]] {
        let out = project.run_with_env(command, &[("EXPORTCTL_CACHE_MAX_SIZE", "1")]);
        assert!(out.status.success(), "{command:?}: {}", stderr(&out));
    }
    assert_eq!(std::fs::read_to_string(&precious).unwrap(), "keep me");
}

#[test]
fn clean_removes_only_what_exportctl_created() {
    let project = built_quickstart();
    std::fs::write(project.path().join("dist/NOTES.md"), "mine").unwrap();
    std::fs::write(project.path().join(".exportctl/mine.txt"), "mine").unwrap();
    let out = project.run(&["clean", "--cache"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("removed 2 package folders from dist"), "{}", stdout(&out));
    assert_eq!(std::fs::read_to_string(project.path().join("dist/NOTES.md")).unwrap(), "mine");
    assert!(!project.path().join("dist/classifier").exists());
    assert!(project.path().join(".exportctl/mine.txt").is_file());
    assert!(!project.path().join(".exportctl/cache").exists());
}

/// The size of the cache's blobs (what the limit counts).
fn cache_size(project: &Project) -> u64 {
    let blobs = project.path().join(".exportctl/cache/v2/blobs");
    let mut total = 0;
    for prefix in std::fs::read_dir(blobs).unwrap() {
        for blob in std::fs::read_dir(prefix.unwrap().path()).unwrap() {
            total += blob.unwrap().metadata().unwrap().len();
        }
    }
    total
}

fn set_dropout(project: &Project, rate: &str) {
    let path = project.path().join("Export.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let line = text.lines().find(|l| l.starts_with("dropout = ")).unwrap().to_string();
    std::fs::write(&path, text.replace(&line, &format!("dropout = {rate}"))).unwrap();
}

fn keys(events: &[serde_json::Value]) -> Vec<String> {
    events.iter().filter(|e| e["key"].is_string() && e["event"] != "step-started").map(|e| e["key"].as_str().unwrap().to_string()).collect()
}

#[test]
fn eviction_removes_the_oldest_entries_first_never_what_dist_needs_and_a_later_build_restores_them() {
    runtime();
    let project = Project::example("quickstart");
    let (out, first) = project.build_json(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let one_build = cache_size(&project);
    let lock_first = std::fs::read_to_string(project.path().join("Export.lock")).unwrap();
    set_dropout(&project, "0.2");
    let (out, second) = project.build_json(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let two_builds = cache_size(&project);
    set_dropout(&project, "0.3");
    // Room for the two builds and a little more (files the builds share are stored once, so a
    // build adds what its setting changed): the third evicts the first's entries, never the
    // second's (newer), never the third's (needed).
    let limit = two_builds + (two_builds - one_build) * 6 / 10;
    let out = project.run_with_env(&["build", "--message-format", "json"], &[("EXPORTCTL_CACHE_MAX_SIZE", &limit.to_string())]);
    assert!(out.status.success(), "{}", stderr(&out));
    let third: Vec<serde_json::Value> = stdout(&out).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let note = third.iter().find(|e| e["event"] == "note").expect("a note says what was evicted");
    assert!(note["message"].as_str().unwrap().contains("least recently used"), "{note}");
    let entries = project.path().join(".exportctl/cache/v2/entries");
    let present = |k: &String| entries.join(k).is_dir();
    let first_evicted = keys(&first).iter().filter(|k| !present(k)).count();
    let second_evicted = keys(&second).iter().filter(|k| !present(k)).count();
    assert!(first_evicted > 0, "the first build's entries went first");
    assert!(second_evicted == 0 || first_evicted == keys(&first).len(), "a newer entry went before an older one");
    assert!(keys(&third).iter().all(present), "what the current build uses is never evicted");
    let shipped = digests(&project.path().join("dist"));
    let out = project.run(&["cache", "verify"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(digests(&project.path().join("dist")), shipped);

    // Back to the first settings: what was evicted is built again, the same bytes.
    set_dropout(&project, "0.1");
    let (out, again) = project.build_json(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(finished(&again)["ran"].as_u64().unwrap() > 0);
    assert_eq!(std::fs::read_to_string(project.path().join("Export.lock")).unwrap(), lock_first);
}

#[test]
fn clean_gc_trims_the_cache_now_and_keeps_what_export_lock_names() {
    let project = built_quickstart();
    set_dropout(&project, "0.2");
    let out = project.run(&["build"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let before = cache_size(&project);
    let out = project.run_with_env(&["clean", "--gc"], &[("EXPORTCTL_CACHE_MAX_SIZE", "1")]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("still over the limit"), "{}", stdout(&out));
    assert!(cache_size(&project) < before);
    let (out, events) = project.build_json(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(finished(&events)["ran"], 0, "everything Export.lock names stayed");
}

#[test]
fn a_rebuild_says_why_each_step_runs() {
    let project = built_quickstart();
    let reasons = |events: &[serde_json::Value]| -> Vec<(String, String)> {
        let mut r: Vec<(String, String)> = events
            .iter()
            .filter(|e| e["event"] == "step-started")
            .map(|e| (e["step"].as_str().unwrap().to_string(), e["reason"].as_str().unwrap().to_string()))
            .collect();
        r.sort();
        r
    };
    let body = project.path().join("docs/classifier.md");
    std::fs::write(&body, std::fs::read_to_string(&body).unwrap() + "\nMore.\n").unwrap();
    let (_, events) = project.build_json(&[]);
    assert_eq!(
        reasons(&events),
        [
            ("classifier/classifier:package".to_string(), "file docs/classifier.md changed".to_string()),
            ("classifier/encoder:package".to_string(), "file docs/classifier.md changed".to_string()),
        ]
    );
    let manifest = project.path().join("Export.toml");
    std::fs::write(&manifest, std::fs::read_to_string(&manifest).unwrap().replace("atol = 1e-5", "atol = 2e-5")).unwrap();
    let (_, events) = project.build_json(&["classifier/encoder:validate"]);
    assert_eq!(reasons(&events), [("classifier/encoder:validate".to_string(), "setting atol changed 1e-5 → 2e-5".to_string())]);
    let out = project.run(&["build", "--explain"]);
    assert!(stderr(&out).contains("running classifier/classifier:validate: setting atol changed 1e-5 → 2e-5"), "{}", stderr(&out));
    // A step whose entry was removed says so.
    std::fs::remove_dir_all(project.path().join(".exportctl/cache/v2/entries")).unwrap();
    std::fs::create_dir(project.path().join(".exportctl/cache/v2/entries")).unwrap();
    let (_, events) = project.build_json(&["classifier:export"]);
    assert_eq!(reasons(&events), [("classifier:export".to_string(), "its cache entry was removed".to_string())]);
}

#[test]
fn cache_verify_finds_and_evicts_a_changed_entry() {
    let project = built_quickstart();
    let out = project.run(&["cache", "verify"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("every file holds the bytes its entry records"));
    let report = cached_file(&project, "classifier/encoder:validate", "report.json");
    writable(&report);
    std::fs::write(&report, "{}").unwrap();
    let out = project.run(&["cache", "verify"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("classifier/encoder:validate"), "{}", stderr(&out));
    let (out, events) = project.build_json(&[]);
    assert!(out.status.success());
    assert_eq!(steps_with(&events, "step-finished"), ["classifier/encoder:validate"]);
}
