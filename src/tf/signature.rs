//! A SavedModel's signatures: named functions with named, typed, shaped inputs and outputs.

use std::fmt;

use serde::Serialize;

use super::dtype::DType;

/// One `SignatureDef` of a meta graph.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Signature {
    /// `serving_default`, …
    pub key: String,
    /// `tensorflow/serving/predict`, …
    pub method: String,
    /// Sorted by key.
    pub inputs: Vec<TensorSpec>,
    /// Sorted by key.
    pub outputs: Vec<TensorSpec>,
}

/// One input or output of a signature.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TensorSpec {
    /// The name callers use (`features`, `output_0`).
    pub key: String,
    /// The graph tensor it is fed to or fetched from (`serving_default_features:0`).
    pub tensor: String,
    pub dtype: DType,
    /// `-1` for an unknown dimension; `None` when even the rank is unknown.
    pub shape: Option<Vec<i64>>,
    /// How the value is encoded; only dense tensors can be fed or fetched natively.
    #[serde(skip_serializing_if = "Encoding::is_dense")]
    pub encoding: Encoding,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    Dense,
    /// A `tf.SparseTensor` (COO: indices, values, dense shape).
    Sparse,
    /// A composite tensor (`tf.RaggedTensor`, …).
    Composite,
}

impl Encoding {
    pub fn is_dense(&self) -> bool {
        *self == Encoding::Dense
    }
}

impl Signature {
    pub fn input(&self, key: &str) -> Option<&TensorSpec> {
        self.inputs.iter().find(|t| t.key == key)
    }

    pub fn output(&self, key: &str) -> Option<&TensorSpec> {
        self.outputs.iter().find(|t| t.key == key)
    }

    /// The key of the signature TF2 adds to run initializers; not callable, never shown.
    pub const INIT_OP: &'static str = "__saved_model_init_op";
}

impl TensorSpec {
    /// Whether an array of `shape` fits this spec (same rank, equal known dimensions).
    pub fn accepts_shape(&self, shape: &[usize]) -> bool {
        match &self.shape {
            None => true,
            Some(dims) => dims.len() == shape.len() && dims.iter().zip(shape).all(|(&d, &s)| d < 0 || d as u64 == s as u64),
        }
    }
}

/// A signature shape as people write it: `[-1, 96, 96, 3]`, `[]` for a scalar, `?` for any.
pub struct SpecShape<'a>(pub &'a Option<Vec<i64>>);

impl fmt::Display for SpecShape<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => f.write_str("?"),
            Some(dims) => {
                f.write_str("[")?;
                for (i, d) in dims.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{d}")?;
                }
                f.write_str("]")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(shape: Option<Vec<i64>>) -> TensorSpec {
        TensorSpec { key: "x".into(), tensor: "x:0".into(), dtype: DType::Float32, shape, encoding: Encoding::Dense }
    }

    #[test]
    fn unknown_dimensions_accept_any_size() {
        assert!(spec(Some(vec![-1, 4])).accepts_shape(&[7, 4]));
        assert!(!spec(Some(vec![-1, 4])).accepts_shape(&[7, 5]));
        assert!(!spec(Some(vec![-1, 4])).accepts_shape(&[4]));
        assert!(spec(None).accepts_shape(&[1, 2, 3]));
        assert!(spec(Some(vec![])).accepts_shape(&[]));
    }

    #[test]
    fn shapes_display_like_the_manifest_writes_them() {
        assert_eq!(SpecShape(&Some(vec![-1, 96, 96, 3])).to_string(), "[-1, 96, 96, 3]");
        assert_eq!(SpecShape(&Some(vec![])).to_string(), "[]");
        assert_eq!(SpecShape(&None).to_string(), "?");
    }
}
