//! `exportctl plan`: the DAG of steps, target selection, and its three formats.

use std::collections::{BTreeMap, BTreeSet};

use crate::support::{stderr, stdout, Project};

const TWO_MODELS: &str = r#"
[project]
name = "vision"

[models.mobilenet]
source = "models/mobilenet.keras"

[[models.mobilenet.pieces]]
name = "classification"
to = "logits"

[[models.mobilenet.pieces]]
name = "feature-vector"
to = "global_average_pooling2d"

[models.tiny]
source = "models/tiny.h5"

[[models.tiny.pieces]]
name = "full"
"#;

fn project() -> Project {
    Project::new().file("Export.toml", TWO_MODELS).file("models/mobilenet.keras", "").file("models/tiny.h5", "")
}

#[test]
fn text_lists_steps_in_dependency_order() {
    let out = project().run(&["plan"]);
    assert!(out.status.success(), "{}", stderr(&out));
    insta::assert_snapshot!(stdout(&out));
}

/// Nodes and edges of the DOT output, read with a small parser of the subset we emit; the
/// output also goes through Graphviz when `dot` is installed.
fn parse_dot(text: &str) -> (BTreeSet<String>, Vec<(String, String)>) {
    let mut lines = text.lines();
    assert!(lines.next().unwrap().starts_with("digraph exportctl {"));
    assert_eq!(text.trim_end().lines().last(), Some("}"));
    let quoted = |s: &str| -> String {
        let s = s.trim();
        assert!(s.starts_with('"') && s.ends_with('"'), "not a quoted id: {s}");
        s[1..s.len() - 1].to_string()
    };
    let (mut nodes, mut edges) = (BTreeSet::new(), Vec::new());
    for line in lines {
        let line = line.trim();
        if line == "}" || line.starts_with("rankdir") || line.starts_with("node [") {
            continue;
        }
        let statement = line.strip_suffix(';').unwrap_or_else(|| panic!("statement without `;`: {line}"));
        if let Some((a, b)) = statement.split_once(" -> ") {
            edges.push((quoted(a), quoted(b)));
        } else {
            let (id, attrs) = statement.split_once(" [").expect("a node declaration with attributes");
            assert!(attrs.ends_with(']'));
            nodes.insert(quoted(id));
        }
    }
    (nodes, edges)
}

#[test]
fn dot_is_a_valid_graph_with_the_spec_edges() {
    let out = project().run(&["plan", "--format", "dot"]);
    assert!(out.status.success());
    let dot = stdout(&out);
    let (nodes, edges) = parse_dot(&dot);
    assert_eq!(nodes.len(), 1 + 4 * 2 + 1 + 4);
    for (a, b) in &edges {
        assert!(nodes.contains(a) && nodes.contains(b), "edge {a} -> {b} names an undeclared node");
    }
    for edge in [
        ("mobilenet:export", "mobilenet/classification:slice"),
        ("mobilenet/classification:slice", "mobilenet/classification:trace"),
        ("mobilenet/classification:trace", "mobilenet/classification:validate"),
        ("mobilenet/classification:validate", "mobilenet/classification:package"),
        ("mobilenet/classification:trace", "mobilenet/classification:package"),
        ("tiny:export", "tiny/full:slice"),
    ] {
        assert!(edges.contains(&(edge.0.to_string(), edge.1.to_string())), "missing edge {edge:?}");
    }
    // Graphviz, when present, must render it.
    if let Ok(mut child) =
        std::process::Command::new("dot").arg("-Tsvg").stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).spawn()
    {
        use std::io::Write as _;
        child.stdin.take().unwrap().write_all(dot.as_bytes()).unwrap();
        let rendered = child.wait_with_output().unwrap();
        assert!(rendered.status.success());
        assert!(String::from_utf8_lossy(&rendered.stdout).contains("<svg"));
    }
}

fn json_plan(args: &[&str]) -> BTreeMap<String, Vec<String>> {
    let mut full = vec!["plan", "--format", "json"];
    full.extend_from_slice(args);
    let out = project().run(&full);
    assert!(out.status.success(), "{}", stderr(&out));
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    value["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let deps = s["depends_on"].as_array().unwrap().iter().map(|d| d.as_str().unwrap().to_string()).collect();
            (s["id"].as_str().unwrap().to_string(), deps)
        })
        .collect()
}

#[test]
fn json_lists_every_step_with_its_dependencies() {
    let plan = json_plan(&[]);
    assert_eq!(plan.len(), 14);
    assert_eq!(plan["mobilenet:export"], Vec::<String>::new());
    assert_eq!(plan["tiny/full:package"], vec!["tiny/full:trace".to_string(), "tiny/full:validate".to_string()]);
}

#[test]
fn a_target_selects_itself_and_what_it_depends_on() {
    let keys = |args: &[&str]| json_plan(args).into_keys().collect::<Vec<_>>();
    assert_eq!(
        keys(&["mobilenet/feature-vector:trace"]),
        ["mobilenet/feature-vector:slice", "mobilenet/feature-vector:trace", "mobilenet:export"]
    );
    assert_eq!(keys(&["tiny"]).len(), 5);
    assert_eq!(keys(&["mobilenet/classification"]).len(), 5);
    assert_eq!(keys(&["mobilenet:export"]), ["mobilenet:export"]);
    assert_eq!(keys(&["tiny", "mobilenet:export"]).len(), 6);
}

#[test]
fn an_unknown_target_is_a_usage_error_with_a_suggestion() {
    let out = project().run(&["plan", "mobilenet/feature-vectr"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("unknown target `mobilenet/feature-vectr`"), "{err}");
    assert!(err.contains("did you mean `mobilenet/feature-vector`?"), "{err}");

    let out = project().run(&["plan", "tiny/full:packge"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("did you mean `package`?"));
}
