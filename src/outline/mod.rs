//! A model's outline: its layers in graph order with their types, output shapes and
//! parameters, which are dropout or batch-norm layers, and its final activation — the names a
//! piece's `from` and `to` can cut at.
//!
//! The Python worker reads the model (its `outline` method loads a `.keras`/`.h5` file, a
//! tf_keras SavedModel directory or a builder as `export` does, and writes nothing);
//! `exportctl inspect MODEL` prints the outline and `exportctl init MODEL` proposes a manifest
//! from it ([`Proposal`]). A SavedModel *package* has signatures, not layers: `inspect` reads
//! those natively (`crate::tf::inspect`) and never starts Python for it.

mod proposal;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::{help_text, Error, Result};
use crate::runtime::worker::WorkerOptions;
use crate::runtime::{Runtime, Worker};
use crate::tf::inspect::group_digits;

pub use proposal::{Proposal, ProposedPiece};

/// What the worker's `outline` method answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Outline {
    /// A Keras model, either Keras.
    pub flavour: crate::contract::Flavour,
    pub model_name: Option<String>,
    pub model_class: String,
    /// Functional or Sequential: its layers can be cut at.
    pub graph: bool,
    pub inputs: Vec<TensorOutline>,
    pub outputs: Vec<TensorOutline>,
    /// The activation ending the model's only output (`softmax`, `linear`, …).
    pub final_activation: Option<String>,
    pub params: Parameters,
    pub layers: Vec<LayerOutline>,
    /// The rate of every dropout layer (nested models' included).
    #[serde(default)]
    pub dropout_rates: Vec<f64>,
    /// The momentum and epsilon of every batch-norm layer (nested models' included).
    #[serde(default)]
    pub batch_norms: Vec<BatchNormOutline>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TensorOutline {
    pub name: String,
    /// `None` for an unknown dimension (the batch).
    pub shape: Option<Vec<Option<i64>>>,
    pub dtype: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activation: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Parameters {
    pub total: u64,
    pub trainable: u64,
    pub non_trainable: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BatchNormOutline {
    pub momentum: f64,
    pub epsilon: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LayerOutline {
    pub name: String,
    pub class: String,
    /// A shape (`[null, 64]`), a list of shapes for several outputs, or null.
    pub output_shape: Value,
    /// The layers whose outputs this one reads.
    #[serde(default)]
    pub inbound: Vec<String>,
    pub parameters: u64,
    pub trainable_parameters: u64,
    /// The activation a layer applies itself (`relu` for `Dense(activation="relu")`).
    pub activation: Option<String>,
    pub dropout_rate: Option<f64>,
    pub batch_norm: Option<BatchNormOutline>,
    pub is_model: bool,
}

/// Which model to outline, as a manifest's `source` names it.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelSource {
    KerasFile(PathBuf),
    /// A tf_keras SavedModel directory (with `keras_metadata.pb`).
    KerasSavedModel(PathBuf),
    /// `file.py:function`.
    Builder {
        path: PathBuf,
        function: String,
    },
}

impl ModelSource {
    /// What `text` names, relative to `dir`, if it is a model the worker can outline: a
    /// `.keras`/`.h5`/`.hdf5` file, a directory with `keras_metadata.pb`, or `file.py:function`.
    /// `None` for anything else (a SavedModel package, an archive).
    pub fn recognise(dir: &Path, text: &str) -> Option<ModelSource> {
        if let Some((file, function)) = text.rsplit_once(':').filter(|(f, _)| f.ends_with(".py")) {
            return Some(ModelSource::Builder { path: dir.join(file), function: function.to_string() });
        }
        let path = dir.join(text);
        let lower = text.to_ascii_lowercase();
        if [".keras", ".h5", ".hdf5"].iter().any(|ext| lower.ends_with(ext)) && !path.is_dir() {
            return Some(ModelSource::KerasFile(path));
        }
        if path.join("keras_metadata.pb").is_file() {
            return Some(ModelSource::KerasSavedModel(path));
        }
        None
    }

    pub fn path(&self) -> &Path {
        match self {
            ModelSource::KerasFile(p) | ModelSource::KerasSavedModel(p) => p,
            ModelSource::Builder { path, .. } => path,
        }
    }

    fn param(&self) -> Value {
        let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
        match self {
            ModelSource::KerasFile(p) => json!({ "kind": "keras-file", "path": absolute(p) }),
            ModelSource::KerasSavedModel(p) => json!({ "kind": "saved-model", "path": absolute(p) }),
            ModelSource::Builder { path, function } => json!({ "kind": "builder", "path": absolute(path), "function": function }),
        }
    }
}

/// Reads `source` in a Python worker of `runtime`. `custom_objects`: the `.py` files defining
/// the model's custom classes.
pub fn outline(runtime: &Runtime, source: &ModelSource, custom_objects: &[PathBuf], verbose: u8) -> Result<Outline> {
    if !source.path().exists() {
        return Err(Error::usage(
            format!("{} does not exist", source.path().display()),
            "give a .keras/.h5 file, a Keras SavedModel directory or file.py:function",
        ));
    }
    let mut worker = Worker::new(runtime, WorkerOptions { timeout: Duration::from_secs(900), verbose });
    let absolute: Vec<PathBuf> = custom_objects.iter().map(|p| std::path::absolute(p).unwrap_or_else(|_| p.clone())).collect();
    let params = json!({ "source": source.param(), "custom_objects": absolute });
    let answer = worker.call("outline", params, "outline");
    worker.shutdown();
    let value = answer.map_err(|e| {
        let help = help_text(&e)
            .or_else(|| Some("check that the file is a Keras model this runtime's Keras can load (`exportctl runtime status`)".into()));
        Error::failed(format!("cannot read {}: {e}", source.path().display()), help).code("unreadable-model")
    })?;
    serde_json::from_value(value).map_err(|e| Error::failed(format!("the worker's outline is not understood: {e}"), None))
}

/// `[?, 96, 96, 3]`, or the shapes of a layer with several outputs.
pub fn shape_text(shape: &Value) -> String {
    match shape {
        Value::Array(dims) if dims.iter().all(|d| d.is_null() || d.is_number()) => {
            let dims: Vec<String> = dims.iter().map(|d| d.as_i64().filter(|n| *n >= 0).map_or("?".into(), |n| n.to_string())).collect();
            format!("[{}]", dims.join(", "))
        }
        Value::Array(shapes) => shapes.iter().map(shape_text).collect::<Vec<_>>().join(" "),
        _ => "?".into(),
    }
}

fn dims_text(shape: &Option<Vec<Option<i64>>>) -> String {
    shape_text(&serde_json::to_value(shape).unwrap_or(Value::Null))
}

impl Outline {
    /// The layer whose output ends the model's only output, when there is one.
    pub fn output_layer(&self) -> Option<&LayerOutline> {
        let output = self.outputs.first()?;
        self.layers.iter().rev().find(|l| l.name == output.name).or_else(|| self.layers.last())
    }

    /// The outline as a table, for people. `name`: how the model was named on the command line.
    pub fn render_text(&self, name: &str) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{name}: {} {} `{}`, {} parameters ({} trainable)",
            self.flavour,
            self.model_class,
            self.model_name.as_deref().unwrap_or("?"),
            group_digits(self.params.total),
            group_digits(self.params.trainable)
        );
        for (label, tensors) in [("inputs: ", &self.inputs), ("outputs:", &self.outputs)] {
            let list: Vec<String> = tensors
                .iter()
                .map(|t| {
                    let activation = t.activation.as_deref().filter(|a| *a != "linear").map(|a| format!(" ({a})")).unwrap_or_default();
                    format!("{} {} {}{activation}", t.name, t.dtype, dims_text(&t.shape))
                })
                .collect();
            let _ = writeln!(out, "{label} {}", list.join(", "));
        }
        if let Some(activation) = &self.final_activation {
            let _ = writeln!(out, "final activation: {activation}");
        }
        out.push('\n');
        let rows: Vec<[String; 5]> = self
            .layers
            .iter()
            .map(|l| {
                let mut notes = Vec::new();
                if let Some(rate) = l.dropout_rate {
                    notes.push(format!("dropout (rate {rate})"));
                }
                if let Some(bn) = l.batch_norm {
                    notes.push(format!("batch-norm (momentum {}, epsilon {})", bn.momentum, bn.epsilon));
                }
                if let Some(activation) = l.activation.as_deref().filter(|a| *a != "linear") {
                    notes.push(format!("activation {activation}"));
                }
                if l.is_model {
                    notes.push("nested model".into());
                }
                [l.name.clone(), l.class.clone(), shape_text(&l.output_shape), group_digits(l.parameters), notes.join(", ")]
            })
            .collect();
        let header = ["layer", "type", "output shape", "parameters", ""];
        let width = |i: usize| rows.iter().map(|r| r[i].chars().count()).chain([header[i].len()]).max().unwrap_or(0);
        let (w0, w1, w2, w3) = (width(0), width(1), width(2), width(3));
        let line = |r: &[String; 5]| format!("{:w0$}  {:w1$}  {:w2$}  {:>w3$}  {}", r[0], r[1], r[2], r[3], r[4]).trim_end().to_string();
        let _ = writeln!(out, "{}", line(&header.map(String::from)));
        for row in &rows {
            let _ = writeln!(out, "{}", line(row));
        }
        if self.graph {
            out.push_str("\nA piece ends at a layer's output with `to = \"<layer>\"` and starts at one with `from`.\n");
        } else {
            out.push_str("\nNot a functional or Sequential model: it can only be exported whole (no `from`/`to`).\n");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_recognised_by_their_form() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("keras_sm")).unwrap();
        std::fs::write(dir.path().join("keras_sm/keras_metadata.pb"), "").unwrap();
        std::fs::create_dir_all(dir.path().join("package")).unwrap();
        std::fs::write(dir.path().join("package/saved_model.pb"), "").unwrap();
        let d = dir.path();
        assert_eq!(ModelSource::recognise(d, "m.keras"), Some(ModelSource::KerasFile(d.join("m.keras"))));
        assert_eq!(ModelSource::recognise(d, "legacy.H5"), Some(ModelSource::KerasFile(d.join("legacy.H5"))));
        assert_eq!(
            ModelSource::recognise(d, "model.py:build"),
            Some(ModelSource::Builder { path: d.join("model.py"), function: "build".into() })
        );
        assert_eq!(ModelSource::recognise(d, "keras_sm"), Some(ModelSource::KerasSavedModel(d.join("keras_sm"))));
        assert_eq!(ModelSource::recognise(d, "package"), None, "a SavedModel package is read natively");
        assert_eq!(ModelSource::recognise(d, "model.tar.gz"), None);
    }

    #[test]
    fn shapes_show_unknown_dimensions_as_question_marks() {
        assert_eq!(shape_text(&json!([null, 96, 96, 3])), "[?, 96, 96, 3]");
        assert_eq!(shape_text(&json!([[null, 2], [null, 3]])), "[?, 2] [?, 3]");
        assert_eq!(shape_text(&Value::Null), "?");
    }
}
