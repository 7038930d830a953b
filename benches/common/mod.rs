//! What the benchmarks share: where the repository is, and copying an example the way a user
//! clones it (without its build outputs).

use std::path::{Path, PathBuf};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Copies `from` into `to`, leaving out build outputs (`dist`, `.exportctl`, `Export.lock`) and
/// the entries named in `also_skip`, at any depth.
pub fn copy_dir(from: &Path, to: &Path, also_skip: &[&str]) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if matches!(name.as_str(), "dist" | ".exportctl" | "Export.lock") || also_skip.contains(&name.as_str()) {
            continue;
        }
        let target = to.join(&name);
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target, also_skip);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// `manifest` without its LiteRT settings (`formats = [.., "litert"]` and `litert = …` lines):
/// the example as a script that makes SavedModels only does it.
#[allow(dead_code)] // not every benchmark that shares this file uses it
pub fn without_litert(manifest: &str) -> String {
    let without: String = manifest
        .lines()
        .filter(|l| {
            let litert_setting = l.starts_with("litert = ") || (l.starts_with("formats = ") && l.contains("\"litert\""));
            !litert_setting
        })
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(without, manifest, "the example has a LiteRT variant");
    without
}
