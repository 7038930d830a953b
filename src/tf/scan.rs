//! Ops that reach outside the model, found before anything runs.
//!
//! A SavedModel is a program: loading it runs its restore and init functions, validating it
//! runs its signatures. Every meta graph is scanned, whatever its tags: a loader called without
//! tags (`tf.saved_model.load(path)`, as the worker does) loads a lone meta graph tagged
//! `train` as readily as one tagged `serve`. TensorFlow's `saved_model_cli scan` refuses three ops from a denylist
//! (`ReadFile`, `WriteFile`, `PrintV2`); this scan starts there and adds the ops that read or
//! write files, talk to other hosts or run Python that it misses ([`DENIED`]).
//!
//! Checkpoint ops (`SaveV2`, `RestoreV2`, …) are in every SavedModel: the loader restores the
//! variables with them, through the functions the `SaverDef` names. So they are refused only
//! where the model's own code can run them: in the graph nodes a signature's outputs depend
//! on, and in every function reachable from a signature or from the functions the object graph
//! exposes (`__call__` and friends). Everything is read natively from `saved_model.pb`.
//!
//! ```text
//! MetaGraphDef  2: graph_def   3: saver_def { 2: save_tensor_name  3: restore_op_name }
//!               5: signature_def   7: object_graph_def { 2: concrete_functions (map: name -> …) }
//! GraphDef      1: node (NodeDef)   2: library { 1: function (FunctionDef) }
//! NodeDef       1: name   2: op   3: input   5: attr (map: name -> AttrValue)
//! AttrValue     1: list { 9: func (NameAttrList) }   10: func (NameAttrList { 1: name })
//! FunctionDef   1: signature (OpDef { 1: name })   3: node_def (NodeDef)
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use super::proto::{self, fields, ProtoError};

/// Ops refused wherever they are: files, processes, the network, Python.
pub const DENIED: &[(&str, &str)] = &[
    // saved_model_cli scan's own denylist
    ("ReadFile", "reads a file"),
    ("WriteFile", "writes a file"),
    ("PrintV2", "prints to a stream or file"),
    // files it misses
    ("Print", "prints to stderr"),
    ("MatchingFiles", "lists files"),
    ("WholeFileReader", "reads files"),
    ("WholeFileReaderV2", "reads files"),
    ("TextLineReader", "reads files"),
    ("TextLineReaderV2", "reads files"),
    ("TFRecordReader", "reads files"),
    ("TFRecordReaderV2", "reads files"),
    ("FixedLengthRecordReader", "reads files"),
    ("FixedLengthRecordReaderV2", "reads files"),
    ("LMDBReader", "reads files"),
    ("TextLineDataset", "reads files"),
    ("TFRecordDataset", "reads files"),
    ("TFRecordDatasetV2", "reads files"),
    ("FixedLengthRecordDataset", "reads files"),
    ("FixedLengthRecordDatasetV2", "reads files"),
    ("CSVDataset", "reads files"),
    ("CSVDatasetV2", "reads files"),
    ("ExperimentalCSVDataset", "reads files"),
    ("LMDBDataset", "reads files"),
    ("ExperimentalLMDBDataset", "reads files"),
    ("SqlDataset", "opens a database"),
    ("ExperimentalSqlDataset", "opens a database"),
    ("LoadDataset", "reads files"),
    ("SaveDataset", "writes files"),
    ("SaveDatasetV2", "writes files"),
    ("DatasetToTFRecord", "writes files"),
    ("ExperimentalDatasetToTFRecord", "writes files"),
    ("SnapshotDataset", "writes files"),
    ("SnapshotDatasetV2", "writes files"),
    ("CacheDataset", "writes files"),
    ("CacheDatasetV2", "writes files"),
    ("LoadAndRemapMatrix", "reads a checkpoint file"),
    ("GenerateVocabRemapping", "reads files"),
    ("CreateSummaryFileWriter", "writes files"),
    ("CreateSummaryDbWriter", "writes a database"),
    ("WriteSummary", "writes files"),
    ("WriteScalarSummary", "writes files"),
    ("WriteHistogramSummary", "writes files"),
    ("WriteImageSummary", "writes files"),
    ("WriteAudioSummary", "writes files"),
    ("WriteGraphSummary", "writes files"),
    ("WriteRawProtoSummary", "writes files"),
    ("ImportEvent", "writes files"),
    ("DebugIdentityV2", "writes debug dumps"),
    ("DebugIdentityV3", "writes debug dumps"),
    ("InitializeTableFromTextFile", "reads a file into a lookup table"),
    ("InitializeTableFromTextFileV2", "reads a file into a lookup table"),
    ("ImmutableConst", "maps a file into memory"),
    ("DecodeProtoV2", "reads a descriptor file"),
    ("EncodeProto", "reads a descriptor file"),
    ("MatchingFilesDataset", "lists files"),
    ("ExperimentalMatchingFilesDataset", "lists files"),
    ("RecordInput", "reads files"),
    ("SnapshotDatasetReader", "reads files"),
    ("SnapshotChunkDataset", "reads files"),
    ("ListSnapshotChunksDataset", "lists files"),
    ("DistributedSave", "writes files"),
    ("CalibrationStatisticsSaver", "writes files"),
    ("FileSystemSetConfiguration", "configures a file system"),
    // other hosts
    ("RemoteCall", "runs a function on another host"),
    ("Rpc", "calls another host"),
    ("TryRpc", "calls another host"),
    ("RpcClient", "connects to another host"),
    ("RpcCall", "calls another host"),
    ("RpcServer", "serves other hosts"),
    ("RpcServerStart", "serves other hosts"),
    ("RpcServerRegister", "serves other hosts"),
    ("DataServiceDataset", "talks to a tf.data service"),
    ("DataServiceDatasetV2", "talks to a tf.data service"),
    ("DataServiceDatasetV3", "talks to a tf.data service"),
    ("DataServiceDatasetV4", "talks to a tf.data service"),
    ("RegisterDataset", "talks to a tf.data service"),
    ("RegisterDatasetV2", "talks to a tf.data service"),
    ("GcsConfigureCredentials", "configures cloud credentials"),
    ("GcsConfigureBlockCache", "configures cloud storage"),
    // Python
    ("PyFunc", "runs Python code"),
    ("PyFuncStateless", "runs Python code"),
    ("EagerPyFunc", "runs Python code"),
];

/// Checkpoint I/O: the loader's own restore uses them; the model's code may not.
pub const CHECKPOINT_IO: &[&str] = &["SaveV2", "Save", "SaveSlices", "RestoreV2", "Restore", "RestoreSlice", "MergeV2Checkpoints"];

/// One op found where it may not be.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Finding {
    pub op: String,
    /// `function <name>` or `graph node <name>`.
    pub location: String,
    pub why: String,
}

/// What the scan found in a SavedModel's meta graphs.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Scan {
    /// Ops seen, with how often (for `inspect`).
    pub ops: usize,
    pub functions: usize,
    pub findings: Vec<Finding>,
}

impl Scan {
    /// The findings `allowed` does not let through.
    pub fn refused(&self, allowed: &[String]) -> Vec<&Finding> {
        self.findings.iter().filter(|f| !allowed.iter().any(|a| a == &f.op)).collect()
    }

    /// One line per refused op: `ReadFile (reads a file) in function __inference_serve_12`.
    pub fn describe(findings: &[&Finding]) -> String {
        let mut by_op: BTreeMap<(&str, &str), Vec<&str>> = BTreeMap::new();
        for f in findings {
            by_op.entry((&f.op, &f.why)).or_default().push(&f.location);
        }
        by_op
            .into_iter()
            .map(|((op, why), places)| {
                let shown: Vec<&str> = places.iter().take(3).copied().collect();
                let more = if places.len() > 3 { format!(" and {} more", places.len() - 3) } else { String::new() };
                format!("{op} ({why}) in {}{more}", shown.join(", "))
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

struct Node {
    name: String,
    op: String,
    inputs: Vec<String>,
    /// Functions named in its attributes (`f`, `then_branch`, `body`, …).
    calls: Vec<String>,
}

/// Scans every meta graph of `saved_model.pb`'s bytes, whatever its tags: the loaders pick
/// one by its tags, but `tf.saved_model.load(path)` without tags takes a lone meta graph
/// tagged anything, so no meta graph is safe to leave out. Findings outside a meta graph
/// tagged exactly `serve` name their meta graph's tags.
pub fn scan(saved_model_pb: &[u8]) -> Result<Scan, ProtoError> {
    let mut whole = Scan::default();
    let mut findings = BTreeSet::new();
    for field in fields(saved_model_pb) {
        let (2, meta) = field? else { continue };
        let meta = meta.bytes()?;
        let tags = meta_tags(meta)?;
        let scan = scan_meta_graph(meta)?;
        whole.ops += scan.ops;
        whole.functions += scan.functions;
        let served = tags.len() == 1 && tags[0] == super::model::SERVE;
        for mut finding in scan.findings {
            if !served {
                let shown = if tags.is_empty() { "without tags".to_string() } else { format!("tagged {}", tags.join(", ")) };
                finding.location = format!("{} (meta graph {shown})", finding.location);
            }
            findings.insert(finding);
        }
    }
    whole.findings = findings.into_iter().collect();
    Ok(whole)
}

fn meta_tags(meta: &[u8]) -> Result<Vec<String>, ProtoError> {
    let mut tags = Vec::new();
    for field in fields(meta) {
        if let (1, info) = field? {
            for part in fields(info.bytes()?) {
                if let (4, tag) = part? {
                    tags.push(tag.string()?);
                }
            }
        }
    }
    Ok(tags)
}

fn scan_meta_graph(meta: &[u8]) -> Result<Scan, ProtoError> {
    let mut graph = Vec::new();
    let mut functions: HashMap<String, Vec<Node>> = HashMap::new();
    let mut saver_nodes = Vec::new();
    let mut signature_nodes = Vec::new();
    let mut exposed_functions = Vec::new();
    for field in fields(meta) {
        match field? {
            (2, graph_def) => {
                for part in fields(graph_def.bytes()?) {
                    match part? {
                        (1, node) => graph.push(parse_node(node.bytes()?)?),
                        (2, library) => {
                            for item in fields(library.bytes()?) {
                                if let (1, function) = item? {
                                    let (name, nodes) = parse_function(function.bytes()?)?;
                                    functions.insert(name, nodes);
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
            (3, saver) => {
                for part in fields(saver.bytes()?) {
                    if let (2 | 3, name) = part? {
                        saver_nodes.push(node_of(&name.string()?));
                    }
                }
            }
            (5, signature) => {
                let (_, body) = proto::map_entry(signature.bytes()?)?;
                for part in fields(body) {
                    if let (1 | 2, entry) = part? {
                        let (_, info) = proto::map_entry(entry.bytes()?)?;
                        for piece in fields(info) {
                            if let (1, name) = piece? {
                                signature_nodes.push(node_of(&name.string()?));
                            }
                        }
                    }
                }
            }
            (7, object_graph) => {
                for part in fields(object_graph.bytes()?) {
                    if let (2, entry) = part? {
                        exposed_functions.push(proto::map_entry(entry.bytes()?)?.0);
                    }
                }
            }
            _ => {}
        }
    }
    let _ = saver_nodes; // the saver's nodes are roots of nothing the model's code runs

    let mut findings = BTreeSet::new();
    let denied: HashMap<&str, &str> = DENIED.iter().copied().collect();
    let mut ops = graph.len();
    for node in &graph {
        if let Some(why) = denied.get(node.op.as_str()) {
            findings.insert(Finding { op: node.op.clone(), location: format!("graph node {}", node.name), why: why.to_string() });
        }
    }
    for (name, nodes) in &functions {
        ops += nodes.len();
        for node in nodes {
            if let Some(why) = denied.get(node.op.as_str()) {
                findings.insert(Finding { op: node.op.clone(), location: format!("function {name}"), why: why.to_string() });
            }
        }
    }

    // What the model's own code can run: the graph nodes the signatures depend on, and the
    // functions they, or the object graph, reach.
    let by_name: HashMap<&str, &Node> = graph.iter().map(|n| (n.name.as_str(), n)).collect();
    let mut seen_nodes: HashSet<&str> = HashSet::new();
    let mut stack: Vec<&str> = signature_nodes.iter().map(String::as_str).collect();
    let mut reached_functions: Vec<&str> = exposed_functions.iter().map(String::as_str).collect();
    while let Some(name) = stack.pop() {
        if !seen_nodes.insert(name) {
            continue;
        }
        let Some(node) = by_name.get(name) else { continue };
        if CHECKPOINT_IO.contains(&node.op.as_str()) {
            findings.insert(Finding {
                op: node.op.clone(),
                location: format!("graph node {name}"),
                why: "checkpoint I/O outside the loader's restore".into(),
            });
        }
        reached_functions.extend(node.calls.iter().map(String::as_str));
        if functions.contains_key(node.op.as_str()) {
            reached_functions.push(node.op.as_str());
        }
        stack.extend(node.inputs.iter().map(String::as_str));
    }
    let mut seen_functions: HashSet<&str> = HashSet::new();
    while let Some(name) = reached_functions.pop() {
        if !seen_functions.insert(name) {
            continue;
        }
        let Some(nodes) = functions.get(name) else { continue };
        for node in nodes {
            if CHECKPOINT_IO.contains(&node.op.as_str()) {
                findings.insert(Finding {
                    op: node.op.clone(),
                    location: format!("function {name}"),
                    why: "checkpoint I/O outside the loader's restore".into(),
                });
            }
            reached_functions.extend(node.calls.iter().map(String::as_str));
            if functions.contains_key(node.op.as_str()) {
                reached_functions.push(node.op.as_str());
            }
        }
    }
    Ok(Scan { ops, functions: functions.len(), findings: findings.into_iter().collect() })
}

/// `StatefulPartitionedCall:0` / `^init` → the node's name.
fn node_of(tensor: &str) -> String {
    let name = tensor.trim_start_matches('^');
    name.split(':').next().unwrap_or(name).to_string()
}

fn parse_function(bytes: &[u8]) -> Result<(String, Vec<Node>), ProtoError> {
    let (mut name, mut nodes) = (String::new(), Vec::new());
    for field in fields(bytes) {
        match field? {
            (1, signature) => {
                for part in fields(signature.bytes()?) {
                    if let (1, n) = part? {
                        name = n.string()?;
                    }
                }
            }
            (3, node) => nodes.push(parse_node(node.bytes()?)?),
            _ => {}
        }
    }
    Ok((name, nodes))
}

fn parse_node(bytes: &[u8]) -> Result<Node, ProtoError> {
    let mut node = Node { name: String::new(), op: String::new(), inputs: Vec::new(), calls: Vec::new() };
    for field in fields(bytes) {
        match field? {
            (1, v) => node.name = v.string()?,
            (2, v) => node.op = v.string()?,
            (3, v) => node.inputs.push(node_of(&v.string()?)),
            (5, v) => {
                let (_, value) = proto::map_entry(v.bytes()?)?;
                attr_functions(value, &mut node.calls)?;
            }
            _ => {}
        }
    }
    Ok(node)
}

/// The function names in an `AttrValue` (`func`, or a list of them).
fn attr_functions(value: &[u8], out: &mut Vec<String>) -> Result<(), ProtoError> {
    for field in fields(value) {
        match field? {
            (10, func) => out.push(name_attr_list(func.bytes()?)?),
            (1, list) => {
                for item in fields(list.bytes()?) {
                    if let (9, func) = item? {
                        out.push(name_attr_list(func.bytes()?)?);
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn name_attr_list(bytes: &[u8]) -> Result<String, ProtoError> {
    for field in fields(bytes) {
        if let (1, name) = field? {
            return name.string();
        }
    }
    Ok(String::new())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tf::proto::tests::Encoder;

    /// A `saved_model.pb` of one meta graph per `(tags, function name, its ops)`.
    fn saved_model(meta_graphs: &[(&[&str], &str, &[&str])]) -> Vec<u8> {
        meta_graphs
            .iter()
            .fold(Encoder::default().uint(1, 1), |pb, (tags, function, ops)| {
                let info = tags.iter().fold(Encoder::default(), |info, tag| info.str(4, tag));
                let body = ops.iter().enumerate().fold(Encoder::default().msg(1, Encoder::default().str(1, function)), |f, (i, op)| {
                    f.msg(3, Encoder::default().str(1, &format!("node_{i}")).str(2, op))
                });
                let graph = Encoder::default().msg(2, Encoder::default().msg(1, body));
                pb.msg(2, Encoder::default().msg(1, info).msg(2, graph))
            })
            .0
    }

    #[test]
    fn a_meta_graph_tagged_other_than_serve_is_scanned_too() {
        let pb = saved_model(&[(&["train"], "__inference_step_7", &["MatMul", "WriteFile"])]);
        let scan = scan(&pb).unwrap();
        assert_eq!(
            scan.findings,
            vec![Finding {
                op: "WriteFile".into(),
                location: "function __inference_step_7 (meta graph tagged train)".into(),
                why: "writes a file".into()
            }]
        );
        assert_eq!((scan.ops, scan.functions), (2, 1));
    }

    #[test]
    fn every_meta_graph_is_scanned_and_only_others_than_serve_are_named() {
        let pb = saved_model(&[
            (&["serve"], "__inference_serve_1", &["ReadFile"]),
            (&["serve", "gpu"], "__inference_serve_2", &["RpcClient"]),
            (&[], "__inference_init_3", &["InitializeTableFromTextFileV2"]),
        ]);
        let locations: Vec<(String, String)> = scan(&pb).unwrap().findings.into_iter().map(|f| (f.op, f.location)).collect();
        assert_eq!(
            locations,
            [
                ("InitializeTableFromTextFileV2", "function __inference_init_3 (meta graph without tags)"),
                ("ReadFile", "function __inference_serve_1"),
                ("RpcClient", "function __inference_serve_2 (meta graph tagged serve, gpu)"),
            ]
            .map(|(op, at)| (op.to_string(), at.to_string()))
        );
        assert_eq!(scan(&Encoder::default().uint(1, 1).0).unwrap(), Scan::default(), "no meta graph, nothing found");
    }
}
