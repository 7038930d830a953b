//! What a user sees for a broken manifest: every case under `tests/bad-manifests/cases/` is
//! parsed against the fixture project `tests/bad-manifests/project/` and its plain rendering
//! (`file:line:col: error[code]: message`, the line with carets, the help) is snapshotted.
//!
//! Each case is one mistake a user could make (the file name says which), except the
//! `several-errors` cases, which check that one run reports everything. Reading the snapshots
//! is the review: is the span on the offending text, does the help say what to write?

use std::path::{Path, PathBuf};

use exportctl::manifest::{self, ManifestErrors, ManifestSource};

use crate::support::repo;

fn fixture_project() -> PathBuf {
    repo().join("tests/bad-manifests/project")
}

/// Parses a case with the fixture project as root; the file is called by its own name.
fn check_case(path: &Path) -> Result<manifest::Manifest, ManifestErrors> {
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let text = std::fs::read_to_string(path).unwrap();
    manifest::parse(ManifestSource::new(path.to_path_buf(), name, text), &fixture_project())
}

#[test]
fn bad_manifests() {
    insta::glob!("../bad-manifests/cases", "*.{toml,yaml}", |path| {
        let errors = match check_case(path) {
            Ok(_) => panic!("{} passed validation; every case must fail", path.display()),
            Err(errors) => errors,
        };
        assert!(!errors.errors.is_empty(), "{}: an Err without errors", path.display());
        for e in &errors.errors {
            let help = e.help.as_deref().unwrap_or("");
            assert!(!help.trim().is_empty(), "{}: error[{}] `{}` has no help", path.display(), e.code, e.message);
            assert!(
                e.span.start <= e.span.end && e.span.end <= errors.source.text.len(),
                "{}: span {:?} outside the text",
                path.display(),
                e.span
            );
        }
        let rendered = errors.render_plain();
        let repo_dir = repo().display().to_string();
        assert!(!rendered.contains(&repo_dir), "{}: the report shows an absolute path:\n{rendered}", path.display());
        insta::assert_snapshot!(rendered);
    });
}

/// The corpus is the review material: keep it large and in both formats.
#[test]
fn the_corpus_covers_both_formats() {
    let cases: Vec<PathBuf> = std::fs::read_dir(repo().join("tests/bad-manifests/cases")).unwrap().map(|e| e.unwrap().path()).collect();
    let count = |ext: &str| cases.iter().filter(|p| p.extension().is_some_and(|e| e == ext)).count();
    assert!(count("toml") >= 30, "{} TOML cases", count("toml"));
    assert!(count("yaml") >= 15, "{} YAML cases", count("yaml"));
    assert_eq!(count("toml") + count("yaml"), cases.len(), "cases are .toml or .yaml files only");
}

/// The fixture project itself is fine: a manifest using each of its files validates, so a
/// case fails for its own mistake and not because the fixture is incomplete.
#[test]
fn the_fixture_project_accepts_a_good_manifest() {
    let good = r#"
[project]
name = "fixture"
publisher = "acme"

[models.classifier]
source = "models/classifier.keras"
custom-objects = ["layers.py"]

[models.classifier.inputs]
image = { shape = [-1, 32, 32, 3], dtype = "float32" }

[[models.classifier.pieces]]
name = "logits"
to = "logits"

[models.classifier.validate]
samples = "data/samples.npz"

[models.classifier.docs]
body = "docs/body.md"

[models.saved]
source = "models/saved"

[[models.saved.pieces]]
name = "whole"

[models.encoder]
source = "build.py:build_encoder"
checkpoint = "ckpt/ckpt-1"
restore = "encoder"

[[models.encoder.pieces]]
name = "encoder"
"#;
    let source = ManifestSource::new(PathBuf::from("Export.toml"), "Export.toml".into(), good.into());
    if let Err(errors) = manifest::parse(source, &fixture_project()) {
        panic!("{}", errors.render_plain());
    }
}
