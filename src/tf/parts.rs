//! The parts of `saved_model.pb`, each with its own digest.
//!
//! `Export.lock` records these next to the file's digest so that `exportctl build --locked`
//! can say *what* in a SavedModel changed — "function library: 2 functions renamed/changed",
//! "object graph" — on a fresh CI machine that has only the new bytes and the committed lock.
//!
//! | part | what it hashes (field numbers of TensorFlow's `.proto` files) |
//! |---|---|
//! | `functions` | each `FunctionDef` of the library (`GraphDef.library.function`), by its name |
//! | `graph` | the graph's nodes and versions (`GraphDef` 1, 3, 4), the library's gradients (`FunctionDefLibrary` 2, 3) |
//! | `object-graph` | `MetaGraphDef.object_graph_def`: the trackable objects, variables, concrete-function specs |
//! | `signatures` | `MetaGraphDef.signature_def` |
//! | `meta-info` | `MetaGraphDef.meta_info_def`: tags, the stripped op list, TensorFlow's version |
//! | `other` | everything else: schema version, saver, collections, assets, unknown fields |
//!
//! Every field is hashed with its number and length, in file order, so that moving bytes
//! between fields changes the digest. With several meta graphs, function names are prefixed
//! by the meta graph's index (`1/…`) from the second on.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::proto::{fields, ProtoError, Value};

/// Digests of the parts of one `saved_model.pb`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SavedModelParts {
    pub graph: String,
    pub object_graph: String,
    pub signatures: String,
    pub meta_info: String,
    pub other: String,
    #[serde(default)]
    pub functions: BTreeMap<String, String>,
}

#[derive(Default)]
struct Hashers {
    graph: blake3::Hasher,
    object_graph: blake3::Hasher,
    signatures: blake3::Hasher,
    meta_info: blake3::Hasher,
    other: blake3::Hasher,
}

/// Adds one field (number, then a length-prefixed or fixed-width value) to a hasher.
fn hash_field(hasher: &mut blake3::Hasher, number: u32, value: Value<'_>) {
    hasher.update(&number.to_le_bytes());
    match value {
        Value::Bytes(b) => {
            hasher.update(&(b.len() as u64).to_le_bytes());
            hasher.update(b);
        }
        Value::Varint(v) | Value::Fixed64(v) => {
            hasher.update(&[0]);
            hasher.update(&v.to_le_bytes());
        }
        Value::Fixed32(v) => {
            hasher.update(&[1]);
            hasher.update(&v.to_le_bytes());
        }
    }
}

impl SavedModelParts {
    /// The parts of the `saved_model.pb` in `bytes`.
    pub fn of(bytes: &[u8]) -> Result<SavedModelParts, ProtoError> {
        let mut h = Hashers::default();
        let mut functions = BTreeMap::new();
        let mut meta_graphs = 0usize;
        for field in fields(bytes) {
            match field? {
                (2, value) => {
                    read_meta_graph(value.bytes()?, meta_graphs, &mut h, &mut functions)?;
                    meta_graphs += 1;
                }
                (number, value) => hash_field(&mut h.other, number, value),
            }
        }
        let hex = |h: blake3::Hasher| h.finalize().to_hex().to_string();
        Ok(SavedModelParts {
            graph: hex(h.graph),
            object_graph: hex(h.object_graph),
            signatures: hex(h.signatures),
            meta_info: hex(h.meta_info),
            other: hex(h.other),
            functions,
        })
    }

    /// What differs from `before`, in a few words per part; empty when nothing does.
    pub fn differences(&self, before: &SavedModelParts) -> Vec<String> {
        let mut out = Vec::new();
        let changed: Vec<&str> = self
            .functions
            .iter()
            .filter(|(name, digest)| before.functions.get(*name) != Some(digest))
            .map(|(name, _)| name.as_str())
            .collect();
        let gone = before.functions.keys().filter(|name| !self.functions.contains_key(*name)).count();
        if !changed.is_empty() || gone > 0 {
            let n = changed.len().max(gone);
            let mut text = format!("function library: {n} function{} renamed/changed", if n == 1 { "" } else { "s" });
            if !changed.is_empty() {
                let shown: Vec<&str> = changed.iter().take(3).copied().collect();
                let more = if changed.len() > shown.len() { ", …" } else { "" };
                text.push_str(&format!(" ({}{more})", shown.join(", ")));
            }
            if self.functions.len() != before.functions.len() {
                text.push_str(&format!(", {} functions before, {} now", before.functions.len(), self.functions.len()));
            }
            out.push(text);
        }
        for (now, then, name) in [
            (&self.graph, &before.graph, "graph"),
            (&self.object_graph, &before.object_graph, "object graph"),
            (&self.signatures, &before.signatures, "signatures"),
            (&self.meta_info, &before.meta_info, "meta info (tags, op list, versions)"),
            (&self.other, &before.other, "saver, assets or other fields"),
        ] {
            if now != then {
                out.push(name.to_string());
            }
        }
        out
    }
}

fn read_meta_graph(bytes: &[u8], index: usize, h: &mut Hashers, functions: &mut BTreeMap<String, String>) -> Result<(), ProtoError> {
    let index_bytes = (index as u64).to_le_bytes();
    for hasher in [&mut h.graph, &mut h.object_graph, &mut h.signatures, &mut h.meta_info, &mut h.other] {
        hasher.update(&index_bytes);
    }
    for field in fields(bytes) {
        match field? {
            (1, value) => hash_field(&mut h.meta_info, 1, value),
            (2, value) => read_graph(value.bytes()?, index, h, functions)?,
            (5, value) => hash_field(&mut h.signatures, 5, value),
            (7, value) => hash_field(&mut h.object_graph, 7, value),
            (number, value) => hash_field(&mut h.other, number, value),
        }
    }
    Ok(())
}

fn read_graph(bytes: &[u8], index: usize, h: &mut Hashers, functions: &mut BTreeMap<String, String>) -> Result<(), ProtoError> {
    for field in fields(bytes) {
        match field? {
            (2, library) => {
                for entry in fields(library.bytes()?) {
                    match entry? {
                        (1, function) => {
                            let function = function.bytes()?;
                            let name = function_name(function)?;
                            let key = if index == 0 { name } else { format!("{index}/{name}") };
                            functions.insert(key, crate::hash::digest_bytes(function));
                        }
                        (number, value) => hash_field(&mut h.graph, 100 + number, value),
                    }
                }
            }
            (number, value) => hash_field(&mut h.graph, number, value),
        }
    }
    Ok(())
}

/// `FunctionDef.signature.name`.
fn function_name(function: &[u8]) -> Result<String, ProtoError> {
    for field in fields(function) {
        if let (1, signature) = field? {
            for field in fields(signature.bytes()?) {
                if let (1, name) = field? {
                    return name.string();
                }
            }
        }
    }
    Ok(String::new())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tf::proto::tests::Encoder;

    fn function(name: &str, body: &str) -> Encoder {
        Encoder::default().msg(1, Encoder::default().str(1, name)).msg(3, Encoder::default().str(1, body))
    }

    fn saved_model(functions: Vec<Encoder>, object_graph: &str, signature: &str) -> Vec<u8> {
        let mut library = Encoder::default();
        for f in functions {
            library = library.msg(1, f);
        }
        let graph = Encoder::default().msg(1, Encoder::default().str(1, "StatefulPartitionedCall")).msg(2, library);
        let meta = Encoder::default()
            .msg(1, Encoder::default().str(4, "serve"))
            .msg(2, graph)
            .msg(5, Encoder::default().str(1, signature))
            .msg(7, Encoder::default().str(1, object_graph));
        Encoder::default().uint(1, 1).msg(2, meta).0
    }

    #[test]
    fn functions_are_hashed_by_name_and_parts_separately() {
        let a = SavedModelParts::of(&saved_model(vec![function("f_0", "x"), function("g_1", "y")], "objects", "sig")).unwrap();
        assert_eq!(a.functions.keys().collect::<Vec<_>>(), ["f_0", "g_1"]);
        assert!(a.differences(&a).is_empty());

        let body = SavedModelParts::of(&saved_model(vec![function("f_0", "x"), function("g_1", "z")], "objects", "sig")).unwrap();
        assert_eq!(body.differences(&a), ["function library: 1 function renamed/changed (g_1)"]);
        assert_eq!(body.graph, a.graph, "a function body is not the graph");

        let renamed = SavedModelParts::of(&saved_model(vec![function("f_7", "x"), function("g_8", "y")], "objects", "sig")).unwrap();
        assert_eq!(renamed.differences(&a), ["function library: 2 functions renamed/changed (f_7, g_8)"]);

        let objects = SavedModelParts::of(&saved_model(vec![function("f_0", "x"), function("g_1", "y")], "other", "sig")).unwrap();
        assert_eq!(objects.differences(&a), ["object graph"]);

        let fewer = SavedModelParts::of(&saved_model(vec![function("f_0", "x")], "objects", "sig2")).unwrap();
        assert_eq!(fewer.differences(&a), ["function library: 1 function renamed/changed, 2 functions before, 1 now", "signatures"]);
    }

    #[test]
    fn malformed_bytes_are_an_error() {
        let good = saved_model(vec![function("f_0", "x")], "o", "s");
        assert!(SavedModelParts::of(&good[..good.len() - 3]).is_err());
    }
}
