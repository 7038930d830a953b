//! Why a step runs: the difference between its key and the key of its last entry.
//!
//! cargo's `DirtyReason` and ninja's `-d explain` turn "it rebuilt" into "this changed". Every
//! entry keeps its full key (`Entry::full_key`) and the project remembers, per step, the key
//! of its last entry (`.exportctl/last-keys.json`); when a step misses, the two keys are
//! compared part by part: the settings (down to the changed field, with both values), the
//! source files, the dependencies' outputs, exportctl itself, the runtime.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// Why a step runs.
#[derive(Debug, Clone, PartialEq)]
pub enum Reason {
    /// The project never built this step (or forgot it).
    NotBuiltBefore,
    /// The step's last entry is gone (evicted, cleaned, or found corrupted).
    EntryRemoved,
    /// A manifest setting the step reads changed.
    Setting { name: String, old: Option<Value>, new: Option<Value> },
    /// A source file changed, appeared or disappeared.
    File { path: String, change: &'static str },
    /// A step it depends on produced a different output.
    Dependency { name: String },
    /// exportctl or its worker changed.
    Tool { old: String, new: String },
    /// The Python runtime changed.
    Runtime { changes: Vec<String> },
    /// The cache format changed.
    Format,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::NotBuiltBefore => f.write_str("not built before"),
            Reason::EntryRemoved => f.write_str("its cache entry was removed"),
            Reason::Setting { name, old, new } => {
                let show = |v: &Option<Value>| match v {
                    None => "unset".to_string(),
                    Some(Value::Number(n)) if n.is_f64() => crate::steps::short_float(n.as_f64().unwrap_or_default()),
                    Some(v) => v.to_string(),
                };
                write!(f, "setting {name} changed {} → {}", show(old), show(new))
            }
            Reason::File { path, change } => write!(f, "file {path} {change}"),
            Reason::Dependency { name } => write!(f, "dependency {name} changed"),
            Reason::Tool { old, new } => write!(f, "exportctl changed ({old} → {new})"),
            Reason::Runtime { changes } => write!(f, "runtime changed ({})", changes.join(", ")),
            Reason::Format => f.write_str("the cache format changed"),
        }
    }
}

/// The reasons `new` differs from `old` (full keys as JSON), most specific first. Empty when
/// they are equal.
pub fn differences(old: &Value, new: &Value) -> Vec<Reason> {
    let mut reasons = Vec::new();
    if old.get("format") != new.get("format") {
        reasons.push(Reason::Format);
        return reasons;
    }
    let mut settings = Vec::new();
    diff_settings("", old.get("settings"), new.get("settings"), &mut settings);
    reasons.extend(settings);

    let files = |key: &Value| -> BTreeMap<String, String> {
        key.get("files").and_then(Value::as_array).map(|a| a.iter().filter_map(pair).collect()).unwrap_or_default()
    };
    let (old_files, new_files) = (files(old), files(new));
    for (path, digest) in &new_files {
        match old_files.get(path) {
            None => reasons.push(Reason::File { path: path.clone(), change: "is new" }),
            Some(before) if before != digest => reasons.push(Reason::File { path: path.clone(), change: "changed" }),
            _ => {}
        }
    }
    for path in old_files.keys().filter(|p| !new_files.contains_key(*p)) {
        reasons.push(Reason::File { path: path.clone(), change: "is no longer read" });
    }

    let deps = |key: &Value| -> Vec<(String, String)> {
        key.get("deps").and_then(Value::as_array).map(|a| a.iter().filter_map(pair).collect()).unwrap_or_default()
    };
    let old_deps = deps(old);
    for (name, digest) in deps(new) {
        if !old_deps.iter().any(|(n, d)| *n == name && *d == digest) {
            reasons.push(Reason::Dependency { name });
        }
    }

    let text = |key: &Value, part: &str| key.get(part).and_then(Value::as_str).unwrap_or("").to_string();
    let (old_tool, new_tool) = (text(old, "tool"), text(new, "tool"));
    if old_tool != new_tool {
        reasons.push(Reason::Tool { old: old_tool, new: new_tool });
    }
    let (old_runtime, new_runtime) = (text(old, "runtime"), text(new, "runtime"));
    if old_runtime != new_runtime {
        reasons.push(Reason::Runtime { changes: runtime_changes(&old_runtime, &new_runtime) });
    }
    if old.get("kind") != new.get("kind") && reasons.is_empty() {
        reasons.push(Reason::Format);
    }
    reasons
}

fn pair(item: &Value) -> Option<(String, String)> {
    let a = item.as_array()?;
    Some((a.first()?.as_str()?.to_string(), a.get(1)?.as_str()?.to_string()))
}

/// Settings that differ, named by their path (`batch-norm.momentum`).
fn diff_settings(prefix: &str, old: Option<&Value>, new: Option<&Value>, out: &mut Vec<Reason>) {
    match (old, new) {
        (Some(Value::Object(a)), Some(Value::Object(b))) => {
            let mut names: Vec<&String> = a.keys().chain(b.keys()).collect();
            names.sort();
            names.dedup();
            for name in names {
                let path = if prefix.is_empty() { name.clone() } else { format!("{prefix}.{name}") };
                diff_settings(&path, a.get(name), b.get(name), out);
            }
        }
        (a, b) if a != b => {
            let present = |v: Option<&Value>| v.filter(|v| !v.is_null()).cloned();
            out.push(Reason::Setting { name: prefix.to_string(), old: present(a), new: present(b) })
        }
        _ => {}
    }
}

/// `python=3.11.7 tensorflow=2.20.0 …` twice → `tensorflow 2.20.0 → 2.21.0`.
fn runtime_changes(old: &str, new: &str) -> Vec<String> {
    let parse = |s: &str| -> BTreeMap<String, String> {
        s.split_whitespace().filter_map(|p| p.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
    };
    let (a, b) = (parse(old), parse(new));
    let mut names: Vec<&String> = a.keys().chain(b.keys()).collect();
    names.sort();
    names.dedup();
    let changes: Vec<String> = names
        .into_iter()
        .filter(|n| a.get(*n) != b.get(*n))
        .map(|n| format!("{n} {} → {}", a.get(n).map_or("none", String::as_str), b.get(n).map_or("none", String::as_str)))
        .collect();
    if changes.is_empty() {
        vec![format!("{old} → {new}")]
    } else {
        changes
    }
}

/// The key of each step's last entry in a project: `.exportctl/last-keys.json`.
#[derive(Debug, Default)]
pub struct LastKeys {
    path: PathBuf,
    pub keys: BTreeMap<String, String>,
}

impl LastKeys {
    pub fn load(cache_dir: &Path) -> LastKeys {
        let path = cache_dir.join("last-keys.json");
        let keys = std::fs::read(&path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
        LastKeys { path, keys }
    }

    /// Records `step`'s key; returns whether anything changed.
    pub fn set(&mut self, step: String, key: String) -> bool {
        self.keys.insert(step, key.clone()).as_deref() != Some(key.as_str())
    }

    pub fn save(&self) -> std::io::Result<()> {
        crate::atomic::write_file(&self.path, &serde_json::to_vec_pretty(&self.keys).expect("keys serialise"))
    }
}

/// Joins reasons as one line: the first three, then how many more.
pub fn describe(reasons: &[Reason]) -> String {
    let mut shown: Vec<String> = reasons.iter().take(3).map(ToString::to_string).collect();
    if reasons.len() > 3 {
        shown.push(format!("and {} more", reasons.len() - 3));
    }
    shown.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(settings: Value, files: Value, deps: Value, runtime: &str) -> Value {
        json!({"format": 2, "tool": "exportctl 0.1.0 worker abc", "runtime": runtime, "kind": "trace",
               "settings": settings, "files": files, "deps": deps})
    }

    #[test]
    fn each_part_of_a_key_is_named_when_it_changes() {
        let rt = "python=3.11.7 tensorflow=2.20.0 keras=3.15.1";
        let base = key(
            json!({"dropout": 0.1, "batch-norm": {"momentum": 0.99}}),
            json!([["models/net.keras", "aa"]]),
            json!([["classifier:export", "d1"]]),
            rt,
        );
        let changed = key(
            json!({"dropout": 0.2, "batch-norm": {"momentum": 0.99, "epsilon": 0.001}}),
            json!([["models/net.keras", "bb"], ["data/samples.npz", "cc"]]),
            json!([["classifier:export", "d2"]]),
            "python=3.11.7 tensorflow=2.21.0 keras=3.15.1",
        );
        let reasons: Vec<String> = differences(&base, &changed).iter().map(ToString::to_string).collect();
        assert_eq!(
            reasons,
            vec![
                "setting batch-norm.epsilon changed unset → 0.001",
                "setting dropout changed 0.1 → 0.2",
                "file data/samples.npz is new",
                "file models/net.keras changed",
                "dependency classifier:export changed",
                "runtime changed (tensorflow 2.20.0 → 2.21.0)",
            ]
        );
        assert!(differences(&base, &base).is_empty());
    }

    #[test]
    fn a_new_format_says_only_that() {
        let a = key(json!({}), json!([]), json!([]), "r");
        let mut b = a.clone();
        b["format"] = json!(3);
        b["settings"] = json!({"x": 1});
        assert_eq!(differences(&a, &b), vec![Reason::Format]);
    }
}
