//! A SavedModel loaded through TensorFlow's C API, and running its signatures.
//!
//! This is the loader TF Serving and the other language bindings use (session-based, tag
//! `serve`), which is stricter than Python's `tf.saved_model.load`: a SavedModel can load in
//! Python and still fail here (see FACTS.md, "Could not find variable"). That is why the
//! native check exists. Signatures are read from `saved_model.pb` by this crate (the
//! `tensorflow` crate keeps its parsed protos private); feeds and fetches are the tensor
//! names they give.

use std::fmt;
use std::path::{Path, PathBuf};

use tensorflow::{Graph, Operation, SavedModelBundle, SessionOptions, SessionRunArgs, Tensor};

use super::array::{Array, ArrayData, ShapeDisplay};
use super::dtype::DType;
use super::native::Native;
use super::saved_model_pb::{SavedModelError, SavedModelPb};
use super::signature::{Encoding, Signature, SpecShape, TensorSpec};
use crate::error::help_text;

/// The tag set of the meta graph that serving, and the native check, load.
pub const SERVE: &str = "serve";

/// A SavedModel's `serve` meta graph, loaded into a TensorFlow session with its variables.
pub struct LoadedModel {
    dir: PathBuf,
    graph: Graph,
    bundle: SavedModelBundle,
    signatures: Vec<Signature>,
}

impl LoadedModel {
    /// Loads the meta graph tagged `serve` of the SavedModel in `dir`.
    pub fn load(_native: &Native, dir: &Path) -> Result<LoadedModel, ModelError> {
        let pb = SavedModelPb::read(dir)?;
        let meta = pb.meta_graph(&[SERVE]).ok_or_else(|| SavedModelError::NoMetaGraph {
            dir: dir.to_owned(),
            wanted: vec![SERVE.to_owned()],
            available: pb.meta_graphs.iter().map(|m| m.tags.clone()).collect(),
        })?;
        let signatures = meta.callable_signatures().cloned().collect();
        let mut graph = Graph::new();
        let bundle = SavedModelBundle::load(&SessionOptions::new(), [SERVE], &mut graph, dir)
            .map_err(|status| ModelError::Load { dir: dir.to_owned(), message: status.to_string() })?;
        Ok(LoadedModel { dir: dir.to_owned(), graph, bundle, signatures })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The callable signatures, sorted by key.
    pub fn signatures(&self) -> &[Signature] {
        &self.signatures
    }

    pub fn signature(&self, key: &str) -> Option<&Signature> {
        self.signatures.iter().find(|s| s.key == key)
    }

    /// Runs signature `key` on `inputs` (one array per input key, any order); returns every
    /// output, sorted by key. Inputs are checked against the signature first (names, dtypes,
    /// shapes) so that mistakes get a precise message rather than TensorFlow's.
    pub fn run(&self, key: &str, inputs: &[(String, Array)]) -> Result<Vec<(String, Array)>, ModelError> {
        let signature = self.signature(key).ok_or_else(|| ModelError::UnknownSignature {
            key: key.to_owned(),
            available: self.signatures.iter().map(|s| s.key.clone()).collect(),
        })?;
        let feeds = check_inputs(signature, inputs)?;
        for spec in &signature.outputs {
            check_runnable(key, spec)?;
        }

        let tensors: Vec<FeedTensor> = feeds.iter().map(|(_, array)| FeedTensor::new(array)).collect();
        let mut args = SessionRunArgs::new();
        for ((spec, _), tensor) in feeds.iter().zip(&tensors) {
            let (op, index) = self.endpoint(key, &spec.tensor)?;
            tensor.add_to(&mut args, &op, index);
        }
        let mut tokens = Vec::new();
        for spec in &signature.outputs {
            let (op, index) = self.endpoint(key, &spec.tensor)?;
            tokens.push(args.request_fetch(&op, index));
        }
        self.bundle.session.run(&mut args).map_err(|status| ModelError::Run { signature: key.to_owned(), message: status.to_string() })?;
        signature
            .outputs
            .iter()
            .zip(tokens)
            .map(|(spec, token)| {
                let fetch_error = |status: tensorflow::Status| ModelError::Run {
                    signature: key.to_owned(),
                    message: format!("fetching output '{}': {status}", spec.key),
                };
                let array = fetch(&mut args, token, spec.dtype).map_err(fetch_error)?;
                Ok((spec.key.clone(), array))
            })
            .collect()
    }

    /// The operation and output index of a tensor name such as `serving_default_x:0`.
    fn endpoint(&self, signature: &str, tensor: &str) -> Result<(Operation, i32), ModelError> {
        let (name, index) = match tensor.rsplit_once(':') {
            Some((name, index)) => (name, index.parse().unwrap_or(0)),
            None => (tensor, 0),
        };
        let op = self.graph.operation_by_name_required(name).map_err(|status| ModelError::Run {
            signature: signature.to_owned(),
            message: format!("the graph has no tensor {tensor}: {status}"),
        })?;
        Ok((op, index))
    }
}

impl fmt::Debug for LoadedModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedModel").field("dir", &self.dir).field("signatures", &self.signatures).finish()
    }
}

/// Loads the SavedModel in `dir` and runs one signature: the native check in one call.
pub fn run_signature(native: &Native, dir: &Path, key: &str, inputs: &[(String, Array)]) -> Result<Vec<(String, Array)>, ModelError> {
    LoadedModel::load(native, dir)?.run(key, inputs)
}

/// Pairs each input spec with its array, in signature order, or says what does not fit.
fn check_inputs<'a>(signature: &'a Signature, inputs: &'a [(String, Array)]) -> Result<Vec<(&'a TensorSpec, &'a Array)>, ModelError> {
    let expected = || signature.inputs.iter().map(|s| s.key.clone()).collect::<Vec<_>>();
    if let Some((name, _)) = inputs.iter().find(|(name, _)| signature.input(name).is_none()) {
        return Err(ModelError::UnexpectedInput { signature: signature.key.clone(), name: name.clone(), expected: expected() });
    }
    let mut feeds = Vec::new();
    for spec in &signature.inputs {
        let Some((_, array)) = inputs.iter().find(|(name, _)| *name == spec.key) else {
            return Err(ModelError::MissingInput { signature: signature.key.clone(), name: spec.key.clone(), expected: expected() });
        };
        check_runnable(&signature.key, spec)?;
        if array.dtype() != spec.dtype {
            return Err(ModelError::InputDtype { name: spec.key.clone(), expected: spec.dtype, got: array.dtype() });
        }
        if !spec.accepts_shape(array.shape()) {
            return Err(ModelError::InputShape { name: spec.key.clone(), expected: spec.shape.clone(), got: array.shape().to_vec() });
        }
        feeds.push((spec, array));
    }
    Ok(feeds)
}

fn check_runnable(signature: &str, spec: &TensorSpec) -> Result<(), ModelError> {
    if spec.encoding != Encoding::Dense || !ArrayData::supports(spec.dtype) {
        return Err(ModelError::Unsupported {
            signature: signature.to_owned(),
            name: spec.key.clone(),
            dtype: spec.dtype,
            encoding: spec.encoding,
        });
    }
    Ok(())
}

/// An input tensor, kept alive until the session has run.
enum FeedTensor {
    Float32(Tensor<f32>),
    Float64(Tensor<f64>),
    Int8(Tensor<i8>),
    Int16(Tensor<i16>),
    Int32(Tensor<i32>),
    Int64(Tensor<i64>),
    UInt8(Tensor<u8>),
    UInt16(Tensor<u16>),
    UInt32(Tensor<u32>),
    UInt64(Tensor<u64>),
    Bool(Tensor<bool>),
}

impl FeedTensor {
    fn new(array: &Array) -> FeedTensor {
        let dims: Vec<u64> = array.shape().iter().map(|&d| d as u64).collect();
        macro_rules! tensor {
            ($variant:ident, $v:expr) => {
                FeedTensor::$variant(Tensor::new(&dims).with_values($v).expect("an Array's element count matches its shape"))
            };
        }
        match array.data() {
            ArrayData::Float32(v) => tensor!(Float32, v),
            ArrayData::Float64(v) => tensor!(Float64, v),
            ArrayData::Int8(v) => tensor!(Int8, v),
            ArrayData::Int16(v) => tensor!(Int16, v),
            ArrayData::Int32(v) => tensor!(Int32, v),
            ArrayData::Int64(v) => tensor!(Int64, v),
            ArrayData::UInt8(v) => tensor!(UInt8, v),
            ArrayData::UInt16(v) => tensor!(UInt16, v),
            ArrayData::UInt32(v) => tensor!(UInt32, v),
            ArrayData::UInt64(v) => tensor!(UInt64, v),
            ArrayData::Bool(v) => tensor!(Bool, v),
        }
    }

    fn add_to<'l>(&'l self, args: &mut SessionRunArgs<'l>, op: &Operation, index: i32) {
        match self {
            FeedTensor::Float32(t) => args.add_feed(op, index, t),
            FeedTensor::Float64(t) => args.add_feed(op, index, t),
            FeedTensor::Int8(t) => args.add_feed(op, index, t),
            FeedTensor::Int16(t) => args.add_feed(op, index, t),
            FeedTensor::Int32(t) => args.add_feed(op, index, t),
            FeedTensor::Int64(t) => args.add_feed(op, index, t),
            FeedTensor::UInt8(t) => args.add_feed(op, index, t),
            FeedTensor::UInt16(t) => args.add_feed(op, index, t),
            FeedTensor::UInt32(t) => args.add_feed(op, index, t),
            FeedTensor::UInt64(t) => args.add_feed(op, index, t),
            FeedTensor::Bool(t) => args.add_feed(op, index, t),
        }
    }
}

fn fetch(args: &mut SessionRunArgs<'_>, token: tensorflow::FetchToken, dtype: DType) -> Result<Array, tensorflow::Status> {
    macro_rules! fetch_as {
        ($t:ty) => {{
            let tensor: Tensor<$t> = args.fetch(token)?;
            let shape = tensor.dims().iter().map(|&d| d as usize).collect();
            Array::new(shape, tensor.to_vec()).expect("a tensor's element count matches its dims")
        }};
    }
    Ok(match dtype {
        DType::Float32 => fetch_as!(f32),
        DType::Float64 => fetch_as!(f64),
        DType::Int8 => fetch_as!(i8),
        DType::Int16 => fetch_as!(i16),
        DType::Int32 => fetch_as!(i32),
        DType::Int64 => fetch_as!(i64),
        DType::UInt8 => fetch_as!(u8),
        DType::UInt16 => fetch_as!(u16),
        DType::UInt32 => fetch_as!(u32),
        DType::UInt64 => fetch_as!(u64),
        DType::Bool => fetch_as!(bool),
        other => unreachable!("check_runnable refused {other}"),
    })
}

/// Why a SavedModel could not be loaded or a signature could not be run.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Read(#[from] SavedModelError),
    /// TensorFlow refused to load it; `message` is TensorFlow's.
    #[error("TensorFlow could not load the SavedModel {}: {message}", .dir.display())]
    Load { dir: PathBuf, message: String },
    #[error("no signature '{key}'; the SavedModel has {}", list_or_none(.available))]
    UnknownSignature { key: String, available: Vec<String> },
    #[error("signature '{signature}' needs input '{name}' (its inputs: {})", .expected.join(", "))]
    MissingInput { signature: String, name: String, expected: Vec<String> },
    #[error("signature '{signature}' has no input '{name}' (its inputs: {})", list_or_none(.expected))]
    UnexpectedInput { signature: String, name: String, expected: Vec<String> },
    #[error("input '{name}' must be {expected}, got {got}")]
    InputDtype { name: String, expected: DType, got: DType },
    #[error("input '{name}' must have shape {}, got {}", SpecShape(.expected), ShapeDisplay(.got))]
    InputShape { name: String, expected: Option<Vec<i64>>, got: Vec<usize> },
    /// An input or output the native check cannot feed or fetch (strings, sparse, …).
    #[error("signature '{signature}': '{name}' is a {} tensor, which the native check cannot handle", tensor_kind(*.dtype, *.encoding))]
    Unsupported { signature: String, name: String, dtype: DType, encoding: Encoding },
    /// TensorFlow failed while running; `message` is TensorFlow's.
    #[error("{}", running_failed(.signature, .message))]
    Run { signature: String, message: String },
}

impl ModelError {
    fn advice(&self) -> Option<String> {
        match self {
            ModelError::Read(e) => help_text(e),
            ModelError::Load { .. } => Some(
                "the TensorFlow C API (as used by TF Serving) cannot load this SavedModel although Python may; \
                 save it with tf.saved_model.save from objects holding tf.Variables (not a Keras 3 model object)"
                    .to_owned(),
            ),
            ModelError::Run { message, .. } if message.contains("Could not find variable") => Some(
                "a variable the function uses was not restored by the C API: the saved object probably holds Keras 3 \
                 variables or the model itself; hold the underlying tf.Variables (`v.value`) instead"
                    .to_owned(),
            ),
            ModelError::UnknownSignature { .. } => Some("`exportctl inspect` lists the signatures".to_owned()),
            ModelError::Unsupported { .. } => Some(
                "the native check feeds and fetches dense numeric and bool tensors; this signature is checked by \
                 the Python loader only"
                    .to_owned(),
            ),
            _ => None,
        }
    }
}

/// The help of a failed run depends on TensorFlow's message (a variable the C API did not restore).
impl miette::Diagnostic for ModelError {
    fn help(&self) -> Option<Box<dyn fmt::Display + '_>> {
        self.advice().map(|help| Box::new(help) as Box<dyn fmt::Display>)
    }
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

/// A dense tensor by its dtype, any other by its encoding (`Sparse`, `Ragged`, …).
fn tensor_kind(dtype: DType, encoding: Encoding) -> String {
    match encoding {
        Encoding::Dense => dtype.to_string(),
        _ => format!("{encoding:?}"),
    }
}

fn running_failed(signature: &str, message: &str) -> String {
    if signature.is_empty() {
        format!("TensorFlow failed: {message}")
    } else {
        format!("running signature '{signature}' failed: {message}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signature() -> Signature {
        let spec = |key: &str, dtype, shape: Option<Vec<i64>>| TensorSpec {
            key: key.into(),
            tensor: format!("serving_default_{key}:0"),
            dtype,
            shape,
            encoding: Encoding::Dense,
        };
        Signature {
            key: "serving_default".into(),
            method: "tensorflow/serving/predict".into(),
            inputs: vec![spec("ids", DType::Int32, Some(vec![-1])), spec("x", DType::Float32, Some(vec![-1, 4]))],
            outputs: vec![spec("y", DType::Float32, Some(vec![-1, 3]))],
        }
    }

    fn input(name: &str, array: Array) -> (String, Array) {
        (name.to_owned(), array)
    }

    #[test]
    fn inputs_are_matched_by_name_in_signature_order() {
        let sig = signature();
        let inputs = [input("x", Array::new(vec![2, 4], vec![0f32; 8]).unwrap()), input("ids", Array::vector(vec![1i32, 2]))];
        let feeds = check_inputs(&sig, &inputs).unwrap();
        assert_eq!(feeds.iter().map(|(s, _)| s.key.as_str()).collect::<Vec<_>>(), vec!["ids", "x"]);
    }

    #[test]
    fn input_mistakes_are_named() {
        let sig = signature();
        let x = || input("x", Array::new(vec![2, 4], vec![0f32; 8]).unwrap());
        let err = check_inputs(&sig, &[x()]).unwrap_err();
        assert_eq!(err.to_string(), "signature 'serving_default' needs input 'ids' (its inputs: ids, x)");
        let err = check_inputs(&sig, &[x(), input("ids", Array::vector(vec![1i32])), input("z", Array::vector(vec![1i32]))]).unwrap_err();
        assert_eq!(err.to_string(), "signature 'serving_default' has no input 'z' (its inputs: ids, x)");
        let err = check_inputs(&sig, &[x(), input("ids", Array::vector(vec![1i64]))]).unwrap_err();
        assert_eq!(err.to_string(), "input 'ids' must be int32, got int64");
        let err =
            check_inputs(&sig, &[input("x", Array::new(vec![2, 5], vec![0f32; 10]).unwrap()), input("ids", Array::vector(vec![1i32]))])
                .unwrap_err();
        assert_eq!(err.to_string(), "input 'x' must have shape [-1, 4], got [2, 5]");
    }
}
