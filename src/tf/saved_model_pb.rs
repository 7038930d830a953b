//! The parts of `saved_model.pb` that inspection and the native check read.
//!
//! ```text
//! SavedModel        2: meta_graphs (MetaGraphDef, repeated)
//! MetaGraphDef      1: meta_info_def   2: graph_def   5: signature_def (map)   7: object_graph_def
//! MetaInfoDef       4: tags (repeated string)   5: tensorflow_version
//! SignatureDef      1: inputs (map)   2: outputs (map)   3: method_name
//! TensorInfo        1: name   2: dtype   3: tensor_shape   4: coo_sparse   5: composite_tensor
//! TensorShapeProto  2: dim { 1: size }   3: unknown_rank
//! GraphDef          1: node { 1: name   2: op   5: attr (map of AttrValue { 6: type   7: shape }) }
//! SavedObjectGraph  1: nodes (SavedObject, repeated; node 0 is the root)
//! SavedObject       1: children { 1: node_id   2: local_name }
//!                   3: slot_variables { 1: original_variable_node_id   2: slot_name   3: slot_variable_node_id }
//!                   4: user_object { 1: identifier }   7: variable (SavedVariable)
//! SavedVariable     1: dtype   2: shape   3: trainable   6: name
//! ```

use std::path::{Path, PathBuf};

use super::dtype::DType;
use super::proto::{self, fields, ProtoError};
use super::signature::{Encoding, Signature, TensorSpec};

/// The file TF2 and TF1 both write at the root of a SavedModel.
pub const SAVED_MODEL_PB: &str = "saved_model.pb";

/// What a SavedModel's `saved_model.pb` says, in the parts read here.
#[derive(Debug, Clone)]
pub struct SavedModelPb {
    pub meta_graphs: Vec<MetaGraph>,
}

#[derive(Debug, Clone)]
pub struct MetaGraph {
    pub tags: Vec<String>,
    pub tensorflow_version: String,
    /// Every signature including TF2's `__saved_model_init_op`, sorted by key.
    pub signatures: Vec<Signature>,
    /// TF2's object graph; absent in TF1 SavedModels.
    pub object_graph: Option<ObjectGraph>,
    /// Variable ops (`VarHandleOp`, `VariableV2`, `Variable`) of the top-level graph.
    pub graph_variables: Vec<GraphVariable>,
}

/// TF2's `SavedObjectGraph`: the Python objects that were saved and how they refer to each other.
#[derive(Debug, Clone, Default)]
pub struct ObjectGraph {
    pub nodes: Vec<ObjectNode>,
}

#[derive(Debug, Clone, Default)]
pub struct ObjectNode {
    /// `(attribute name, node id)`.
    pub children: Vec<(String, usize)>,
    pub slot_variables: Vec<SlotVariableRef>,
    pub kind: ObjectKind,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub enum ObjectKind {
    /// A Python object; `identifier` names its kind (`_tf_keras_layer`, `optimizer`, …).
    UserObject {
        identifier: String,
    },
    Variable(SavedVariable),
    /// Functions, constants, assets, resources: nothing inspection needs.
    #[default]
    Other,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SavedVariable {
    pub name: String,
    pub dtype: DType,
    pub shape: Option<Vec<i64>>,
    pub trainable: bool,
}

/// A legacy optimizer's reference to one of its slot variables.
#[derive(Debug, Clone, PartialEq)]
pub struct SlotVariableRef {
    pub original_variable: usize,
    pub slot_name: String,
    pub slot_variable: usize,
}

/// A variable op of a (TF1) graph.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphVariable {
    pub name: String,
    pub op: String,
    pub dtype: DType,
    pub shape: Option<Vec<i64>>,
}

impl SavedModelPb {
    /// Reads `<dir>/saved_model.pb`.
    pub fn read(dir: &Path) -> Result<SavedModelPb, SavedModelError> {
        let path = dir.join(SAVED_MODEL_PB);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Err(if !dir.is_dir() {
                    SavedModelError::NotADirectory { path: dir.to_owned() }
                } else if dir.join("saved_model.pbtxt").is_file() {
                    SavedModelError::TextFormat { dir: dir.to_owned() }
                } else {
                    SavedModelError::NoSavedModelPb { dir: dir.to_owned() }
                });
            }
            Err(source) => return Err(SavedModelError::Io { path, source }),
        };
        SavedModelPb::parse(&bytes).map_err(|source| SavedModelError::Malformed { path, source })
    }

    pub fn parse(bytes: &[u8]) -> Result<SavedModelPb, ProtoError> {
        let mut meta_graphs = Vec::new();
        for field in fields(bytes) {
            if let (2, value) = field? {
                meta_graphs.push(parse_meta_graph(value.bytes()?)?);
            }
        }
        Ok(SavedModelPb { meta_graphs })
    }

    /// The meta graph whose tag set is exactly `tags`, the way TensorFlow's loader picks it.
    pub fn meta_graph(&self, tags: &[&str]) -> Option<&MetaGraph> {
        self.meta_graphs.iter().find(|m| {
            let mut have: Vec<&str> = m.tags.iter().map(String::as_str).collect();
            let mut want = tags.to_vec();
            have.sort_unstable();
            have.dedup();
            want.sort_unstable();
            want.dedup();
            have == want
        })
    }
}

impl MetaGraph {
    /// The signatures a caller can run (without TF2's init op).
    pub fn callable_signatures(&self) -> impl Iterator<Item = &Signature> {
        self.signatures.iter().filter(|s| s.key != Signature::INIT_OP)
    }
}

fn parse_meta_graph(bytes: &[u8]) -> Result<MetaGraph, ProtoError> {
    let mut meta = MetaGraph {
        tags: Vec::new(),
        tensorflow_version: String::new(),
        signatures: Vec::new(),
        object_graph: None,
        graph_variables: Vec::new(),
    };
    for field in fields(bytes) {
        match field? {
            (1, v) => {
                for info in fields(v.bytes()?) {
                    match info? {
                        (4, tag) => meta.tags.push(tag.string()?),
                        (5, version) => meta.tensorflow_version = version.string()?,
                        _ => {}
                    }
                }
            }
            (2, v) => meta.graph_variables = parse_graph_variables(v.bytes()?)?,
            (5, v) => {
                let (key, signature) = proto::map_entry(v.bytes()?)?;
                meta.signatures.push(parse_signature(key, signature)?);
            }
            (7, v) => meta.object_graph = Some(parse_object_graph(v.bytes()?)?),
            _ => {}
        }
    }
    meta.signatures.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(meta)
}

fn parse_signature(key: String, bytes: &[u8]) -> Result<Signature, ProtoError> {
    let mut signature = Signature { key, method: String::new(), inputs: Vec::new(), outputs: Vec::new() };
    for field in fields(bytes) {
        match field? {
            (1, v) => {
                let (key, info) = proto::map_entry(v.bytes()?)?;
                signature.inputs.push(parse_tensor_info(key, info)?);
            }
            (2, v) => {
                let (key, info) = proto::map_entry(v.bytes()?)?;
                signature.outputs.push(parse_tensor_info(key, info)?);
            }
            (3, v) => signature.method = v.string()?,
            _ => {}
        }
    }
    signature.inputs.sort_by(|a, b| a.key.cmp(&b.key));
    signature.outputs.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(signature)
}

fn parse_tensor_info(key: String, bytes: &[u8]) -> Result<TensorSpec, ProtoError> {
    let mut spec = TensorSpec { key, tensor: String::new(), dtype: DType::Other(0), shape: None, encoding: Encoding::Dense };
    for field in fields(bytes) {
        match field? {
            (1, v) => spec.tensor = v.string()?,
            (2, v) => spec.dtype = DType::from_proto(v.int()? as i32),
            (3, v) => spec.shape = parse_shape(v.bytes()?)?,
            (4, _) => spec.encoding = Encoding::Sparse,
            (5, _) => spec.encoding = Encoding::Composite,
            _ => {}
        }
    }
    Ok(spec)
}

/// `None` for an unknown rank; `-1` for each unknown dimension.
fn parse_shape(bytes: &[u8]) -> Result<Option<Vec<i64>>, ProtoError> {
    let mut dims = Vec::new();
    let mut unknown_rank = false;
    for field in fields(bytes) {
        match field? {
            (2, v) => {
                let mut size = -1;
                for dim in fields(v.bytes()?) {
                    if let (1, s) = dim? {
                        size = s.int()?;
                    }
                }
                dims.push(size);
            }
            (3, v) => unknown_rank = v.boolean()?,
            _ => {}
        }
    }
    Ok(if unknown_rank { None } else { Some(dims) })
}

fn parse_object_graph(bytes: &[u8]) -> Result<ObjectGraph, ProtoError> {
    let mut graph = ObjectGraph::default();
    for field in fields(bytes) {
        if let (1, v) = field? {
            graph.nodes.push(parse_object(v.bytes()?)?);
        }
    }
    Ok(graph)
}

fn parse_object(bytes: &[u8]) -> Result<ObjectNode, ProtoError> {
    let mut node = ObjectNode::default();
    for field in fields(bytes) {
        match field? {
            (1, v) => {
                let (mut id, mut name) = (0usize, String::new());
                for reference in fields(v.bytes()?) {
                    match reference? {
                        (1, n) => id = n.uint()? as usize,
                        (2, n) => name = n.string()?,
                        _ => {}
                    }
                }
                node.children.push((name, id));
            }
            (3, v) => {
                let mut slot = SlotVariableRef { original_variable: 0, slot_name: String::new(), slot_variable: 0 };
                for part in fields(v.bytes()?) {
                    match part? {
                        (1, n) => slot.original_variable = n.uint()? as usize,
                        (2, n) => slot.slot_name = n.string()?,
                        (3, n) => slot.slot_variable = n.uint()? as usize,
                        _ => {}
                    }
                }
                node.slot_variables.push(slot);
            }
            (4, v) => {
                let mut identifier = String::new();
                for part in fields(v.bytes()?) {
                    if let (1, n) = part? {
                        identifier = n.string()?;
                    }
                }
                node.kind = ObjectKind::UserObject { identifier };
            }
            (7, v) => {
                let mut var = SavedVariable { name: String::new(), dtype: DType::Other(0), shape: None, trainable: false };
                for part in fields(v.bytes()?) {
                    match part? {
                        (1, n) => var.dtype = DType::from_proto(n.int()? as i32),
                        (2, n) => var.shape = parse_shape(n.bytes()?)?,
                        (3, n) => var.trainable = n.boolean()?,
                        (6, n) => var.name = n.string()?,
                        _ => {}
                    }
                }
                node.kind = ObjectKind::Variable(var);
            }
            _ => {}
        }
    }
    Ok(node)
}

const VARIABLE_OPS: &[&str] = &["VarHandleOp", "VariableV2", "Variable"];

fn parse_graph_variables(graph_def: &[u8]) -> Result<Vec<GraphVariable>, ProtoError> {
    let mut variables = Vec::new();
    for field in fields(graph_def) {
        let (1, node) = field? else { continue };
        let (mut name, mut op, mut attrs) = (String::new(), String::new(), Vec::new());
        for part in fields(node.bytes()?) {
            match part? {
                (1, v) => name = v.string()?,
                (2, v) => op = v.string()?,
                (5, v) => attrs.push(v.bytes()?),
                _ => {}
            }
        }
        if !VARIABLE_OPS.contains(&op.as_str()) {
            continue;
        }
        let mut variable = GraphVariable { name, op, dtype: DType::Other(0), shape: None };
        for attr in attrs {
            let (key, value) = proto::map_entry(attr)?;
            for part in fields(value) {
                match (key.as_str(), part?) {
                    ("dtype", (6, v)) => variable.dtype = DType::from_proto(v.int()? as i32),
                    ("shape", (7, v)) => variable.shape = parse_shape(v.bytes()?)?,
                    _ => {}
                }
            }
        }
        variables.push(variable);
    }
    Ok(variables)
}

/// A directory that is not a readable SavedModel.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum SavedModelError {
    #[error("{} is not a SavedModel directory", .path.display())]
    #[diagnostic(help("pass the directory that holds saved_model.pb and variables/ (or a .tar.gz of it)"))]
    NotADirectory { path: PathBuf },
    #[error("{} is not a SavedModel: it has no {SAVED_MODEL_PB}", .dir.display())]
    #[diagnostic(help("pass the directory that holds saved_model.pb and variables/ (or a .tar.gz of it)"))]
    NoSavedModelPb { dir: PathBuf },
    /// Only `saved_model.pbtxt`: the text format, which TensorFlow's C API loads but we do not read.
    #[error("{} holds a text-format SavedModel (saved_model.pbtxt), which is not supported", .dir.display())]
    #[diagnostic(help("re-save the model in the binary format (tf.saved_model.save writes saved_model.pb)"))]
    TextFormat { dir: PathBuf },
    #[error("cannot read {}: {source}", .path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{} is malformed: {source}", .path.display())]
    #[diagnostic(help("the file is damaged or was not written by TensorFlow; save the model again"))]
    Malformed { path: PathBuf, source: ProtoError },
    /// No meta graph has the tag set the native loader asks for.
    #[error("{} has no meta graph tagged {wanted:?}; its tag sets are {available:?}", .dir.display())]
    #[diagnostic(help(
        "TF2 SavedModels are tagged `serve`; a TF1 Hub module must be re-exported with tf.saved_model.save to be loaded here"
    ))]
    NoMetaGraph { dir: PathBuf, wanted: Vec<String>, available: Vec<Vec<String>> },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tf::proto::tests::Encoder;

    fn shape(dims: &[i64]) -> Encoder {
        dims.iter().fold(Encoder::default(), |e, &d| e.msg(2, Encoder::default().int(1, d)))
    }

    fn tensor_info(name: &str, dtype: u64, dims: &[i64]) -> Encoder {
        Encoder::default().str(1, name).uint(2, dtype).msg(3, shape(dims))
    }

    fn entry(key: &str, value: Encoder) -> Encoder {
        Encoder::default().str(1, key).msg(2, value)
    }

    #[test]
    fn reads_tags_signatures_and_variables() {
        let signature = Encoder::default()
            .msg(2, entry("logits", tensor_info("StatefulPartitionedCall:0", 1, &[-1, 3])))
            .msg(1, entry("image", tensor_info("serving_default_image:0", 1, &[-1, 96, 96, 3])))
            .msg(1, entry("count", tensor_info("serving_default_count:0", 9, &[])))
            .str(3, "tensorflow/serving/predict");
        let kernel = Encoder::default().uint(1, 1).msg(2, shape(&[4, 3])).uint(3, 1).str(6, "dense/kernel");
        let object_graph = Encoder::default()
            .msg(
                1,
                Encoder::default()
                    .msg(1, Encoder::default().uint(1, 1).str(2, "kernel"))
                    .msg(4, Encoder::default().str(1, "_generic_user_object")),
            )
            .msg(1, Encoder::default().msg(7, kernel));
        let meta = Encoder::default()
            .msg(1, Encoder::default().str(4, "serve").str(5, "2.21.0"))
            .msg(5, entry("serving_default", signature))
            .msg(7, object_graph);
        let pb = SavedModelPb::parse(&Encoder::default().uint(1, 1).msg(2, meta).0).unwrap();

        let meta = pb.meta_graph(&["serve"]).expect("tagged serve");
        assert_eq!(meta.tensorflow_version, "2.21.0");
        let sig = &meta.signatures[0];
        assert_eq!(sig.method, "tensorflow/serving/predict");
        let inputs: Vec<_> = sig.inputs.iter().map(|t| t.key.as_str()).collect();
        assert_eq!(inputs, vec!["count", "image"], "sorted by key");
        assert_eq!(sig.input("image").unwrap().shape, Some(vec![-1, 96, 96, 3]));
        assert_eq!(sig.input("count").unwrap().shape, Some(vec![]), "a scalar, not an unknown rank");
        assert_eq!(sig.input("count").unwrap().dtype, DType::Int64);
        let graph = meta.object_graph.as_ref().unwrap();
        assert_eq!(graph.nodes[0].children, vec![("kernel".to_owned(), 1)]);
        assert_eq!(
            graph.nodes[1].kind,
            ObjectKind::Variable(SavedVariable {
                name: "dense/kernel".into(),
                dtype: DType::Float32,
                shape: Some(vec![4, 3]),
                trainable: true
            })
        );
        assert!(pb.meta_graph(&["serve", "gpu"]).is_none());
    }

    #[test]
    fn unknown_rank_is_none() {
        let info = Encoder::default().str(1, "x:0").uint(2, 1).msg(3, Encoder::default().uint(3, 1));
        let spec = parse_tensor_info("x".into(), &info.0).unwrap();
        assert_eq!(spec.shape, None);
    }

    #[test]
    fn graph_variables_from_node_attrs() {
        let attr = |key: &str, value: Encoder| Encoder::default().str(1, key).msg(2, value);
        let node = Encoder::default()
            .str(1, "dense/kernel")
            .str(2, "VariableV2")
            .msg(5, attr("dtype", Encoder::default().uint(6, 101)))
            .msg(5, attr("shape", Encoder::default().msg(7, shape(&[3, 2]))));
        let other = Encoder::default().str(1, "MatMul").str(2, "MatMul");
        let graph = Encoder::default().msg(1, node).msg(1, other);
        let vars = parse_graph_variables(&graph.0).unwrap();
        assert_eq!(
            vars,
            vec![GraphVariable { name: "dense/kernel".into(), op: "VariableV2".into(), dtype: DType::Float32, shape: Some(vec![3, 2]) }]
        );
    }

    #[test]
    fn directories_without_saved_model_pb_say_so() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(SavedModelPb::read(dir.path()).unwrap_err(), SavedModelError::NoSavedModelPb { .. }));
        std::fs::write(dir.path().join("saved_model.pbtxt"), "meta_graphs {}").unwrap();
        assert!(matches!(SavedModelPb::read(dir.path()).unwrap_err(), SavedModelError::TextFormat { .. }));
        assert!(matches!(SavedModelPb::read(&dir.path().join("missing")).unwrap_err(), SavedModelError::NotADirectory { .. }));
        std::fs::write(dir.path().join(SAVED_MODEL_PB), [0x12, 0xff]).unwrap();
        let err = SavedModelPb::read(dir.path()).unwrap_err();
        assert!(err.to_string().contains("is malformed"), "{err}");
    }
}
