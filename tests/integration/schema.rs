//! The JSON Schema: generated from the key table, checked in, and true of every manifest we ship.

use std::path::{Path, PathBuf};

use crate::support::{exportctl, repo, stdout, Project};

fn schema() -> serde_json::Value {
    let text = std::fs::read_to_string(repo().join("schemas/export.schema.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// A manifest file as JSON, whatever its format.
fn manifest_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap();
    match path.extension().and_then(|e| e.to_str()) {
        Some("yaml" | "yml") => {
            let docs = yaml_rust2::YamlLoader::load_from_str(&text).unwrap();
            yaml_to_json(&docs[0])
        }
        _ => serde_json::to_value(toml::from_str::<toml::Table>(&text).unwrap()).unwrap(),
    }
}

fn yaml_to_json(y: &yaml_rust2::Yaml) -> serde_json::Value {
    use yaml_rust2::Yaml;
    match y {
        Yaml::Real(s) => serde_json::json!(s.parse::<f64>().unwrap()),
        Yaml::Integer(i) => serde_json::json!(i),
        Yaml::String(s) => serde_json::json!(s),
        Yaml::Boolean(b) => serde_json::json!(b),
        Yaml::Array(a) => serde_json::Value::Array(a.iter().map(yaml_to_json).collect()),
        Yaml::Hash(h) => serde_json::Value::Object(h.iter().map(|(k, v)| (k.as_str().unwrap().to_string(), yaml_to_json(v))).collect()),
        _ => serde_json::Value::Null,
    }
}

/// Every manifest we ship: the example and each example project's.
fn shipped_manifests() -> Vec<PathBuf> {
    let mut found = vec![repo().join("Export.toml.example")];
    if let Ok(entries) = std::fs::read_dir(repo().join("examples")) {
        for entry in entries.flatten() {
            for name in ["Export.toml", "export.yaml"] {
                let path = entry.path().join(name);
                if path.is_file() {
                    found.push(path);
                }
            }
        }
    }
    found
}

#[test]
fn checked_in_schema_matches_the_key_table() {
    let out = exportctl().arg("schema").output().unwrap();
    assert!(out.status.success());
    let checked_in = std::fs::read_to_string(repo().join("schemas/export.schema.json")).unwrap();
    assert!(
        stdout(&out) == checked_in,
        "schemas/export.schema.json is out of date: run `cargo run -- schema > schemas/export.schema.json`"
    );
}

#[test]
fn every_shipped_manifest_validates_against_the_schema() {
    let validator = jsonschema::validator_for(&schema()).unwrap();
    for path in shipped_manifests() {
        let instance = manifest_json(&path);
        let errors: Vec<String> = validator.iter_errors(&instance).map(|e| format!("{} at {}", e, e.instance_path())).collect();
        assert!(errors.is_empty(), "{} does not match the schema:\n{}", path.display(), errors.join("\n"));
    }
}

#[test]
fn the_schema_rejects_what_check_rejects() {
    let validator = jsonschema::validator_for(&schema()).unwrap();
    let bad = [
        r#"[project]
name = "x"
colour = "red"
[models.m]
source = "m.keras"
[[models.m.pieces]]
name = "p""#,
        r#"[project]
name = "Not_Valid"
[models.m]
source = "m.keras"
[[models.m.pieces]]
name = "p""#,
        r#"[project]
name = "x"
[models.m]
source = "m.keras"
[[models.m.pieces]]
name = "p"
[models.m.validate]
atol = 0"#,
        r#"[project]
name = "x"
[models.m]
source = "m.keras"
pieces = []"#,
    ];
    for text in bad {
        let instance = serde_json::to_value(toml::from_str::<toml::Table>(text).unwrap()).unwrap();
        assert!(!validator.is_valid(&instance), "the schema accepted:\n{text}");
        let project = Project::new().file("Export.toml", text).file("m.keras", "");
        assert_eq!(project.run(&["check"]).status.code(), Some(2), "check accepted:\n{text}");
    }
}

#[test]
fn the_example_manifest_is_valid_and_mentions_every_key() {
    let text = std::fs::read_to_string(repo().join("Export.toml.example")).unwrap();
    // Its paths exist in a project made for it: then `check` must accept it as it is.
    let project = Project::new()
        .file("Export.toml", &text)
        .file("models/mobilenet.keras", "")
        .file("layers.py", "")
        .file("docs/mobilenet.md", "")
        .file("data/samples.npz", "")
        .file("encoder.py", "def build_encoder():\n    ...\n")
        .file("ckpt/ckpt-7.index", "");
    let out = project.run(&["check"]);
    assert!(out.status.success(), "{}", crate::support::stderr(&out));
    for (path, field) in exportctl::manifest::schema::all_fields() {
        assert!(
            text.contains(&format!("{} ", field.key)) || text.contains(&format!("[{path}")) || text.contains(&format!("{} =", field.key)),
            "Export.toml.example does not show `{path}`"
        );
    }
}

#[test]
fn the_manifest_reference_documents_every_key() {
    let doc = std::fs::read_to_string(repo().join("docs/manifest.md")).unwrap();
    for (path, _) in exportctl::manifest::schema::all_fields() {
        // The tables that appear at several levels are documented once each.
        let shared = ["validate", "docs", "batch-norm", "litert"]
            .iter()
            .find_map(|t| path.split_once(&format!(".{t}.")).map(|(_, key)| format!("{t}.{key}")));
        let documented = shared.unwrap_or(path);
        let found = [format!("`{documented}`"), format!("`[{documented}]`"), format!("`[[{documented}]]`")]
            .iter()
            .any(|form| doc.contains(form.as_str()));
        assert!(found, "docs/manifest.md does not document `{documented}`");
    }
}
