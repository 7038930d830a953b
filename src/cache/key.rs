//! A step's cache key: the digest of everything its output depends on (see the module docs
//! of `cache`). Serialised as canonical JSON (object keys sorted) before hashing, so the same
//! inputs give the same key on any machine and in any run.

use serde::Serialize;
use serde_json::Value;

/// The format of keys and entries; bump it when either changes meaning.
pub const CACHE_FORMAT: u32 = 2;

#[derive(Debug, Clone, Serialize)]
pub struct StepKey {
    pub format: u32,
    /// exportctl's version and the digest of the worker's source.
    pub tool: String,
    /// The runtime's fingerprint (versions).
    pub runtime: String,
    pub kind: String,
    /// The canonical settings the step reads.
    pub settings: Value,
    /// (path relative to the project, content digest) of every source file read.
    pub files: Vec<(String, String)>,
    /// (dependency, output digest) of every step depended on, directly or not.
    pub deps: Vec<(String, String)>,
}

impl StepKey {
    pub fn digest(&self) -> String {
        let value = canonical(serde_json::to_value(self).expect("keys serialise"));
        crate::hash::digest_str(&value.to_string())
    }
}

/// The same JSON value with every object's keys sorted.
pub fn canonical(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().map(|(k, v)| (k, canonical(v))).collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(canonical).collect()),
        other => other,
    }
}

/// exportctl's part of every key: its version, and the worker's source (which changes what
/// the Python steps produce even within one version during development).
pub fn tool_version() -> String {
    format!("exportctl {} worker {}", env!("CARGO_PKG_VERSION"), &crate::runtime::worker::source_digest()[..16])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(settings: Value) -> StepKey {
        StepKey {
            format: CACHE_FORMAT,
            tool: "t".into(),
            runtime: "r".into(),
            kind: "trace".into(),
            settings,
            files: vec![],
            deps: vec![("slice".into(), "abc".into())],
        }
    }

    #[test]
    fn object_key_order_does_not_matter() {
        let a = key(json!({ "trainable": true, "golden": { "batch": 2, "seed": 0 } }));
        let b = key(json!({ "golden": { "seed": 0, "batch": 2 }, "trainable": true }));
        assert_eq!(a.digest(), b.digest());
    }

    #[test]
    fn every_part_changes_the_key() {
        let base = key(json!({ "trainable": true }));
        let mut changed = vec![];
        let mut k = base.clone();
        k.settings = json!({ "trainable": false });
        changed.push(k);
        let mut k = base.clone();
        k.runtime = "r2".into();
        changed.push(k);
        let mut k = base.clone();
        k.deps[0].1 = "abd".into();
        changed.push(k);
        let mut k = base.clone();
        k.files.push(("samples.npz".into(), "f".into()));
        changed.push(k);
        let mut k = base.clone();
        k.tool = "t2".into();
        changed.push(k);
        for k in changed {
            assert_ne!(k.digest(), base.digest(), "{k:?}");
        }
    }
}
