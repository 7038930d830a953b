//! `exportctl init MODEL`: a manifest proposed from the model's outline.
//!
//! The rules are those the build's lints check, applied up front, so that the proposed
//! manifest builds without a warning:
//!
//! - a model ending in a softmax layer gets a `classification` piece cut before it (`to` = the
//!   layer giving the logits), never a piece that ships probabilities;
//! - the last pooling layer, when there is one, gives a `feature-vector` piece;
//! - otherwise (or for a model that cannot be cut) a `full` piece is the whole model;
//! - the inputs are declared as the model takes them;
//! - `dropout` and `batch-norm` are written only when the model has such layers, with the
//!   model's own values as the starting point;
//! - each piece gets a description and a TF Hub task from its structure (an image model has
//!   one rank-4 input).

use std::fmt::Write as _;

use super::{BatchNormOutline, Outline, TensorOutline};

/// A starting manifest for one model.
#[derive(Debug, Clone, PartialEq)]
pub struct Proposal {
    pub project: String,
    /// The model's name in the manifest.
    pub model: String,
    /// The model's `source`, as written.
    pub source: String,
    pub inputs: Vec<TensorOutline>,
    pub dropout: Option<f64>,
    pub batch_norm: Option<BatchNormOutline>,
    pub pieces: Vec<ProposedPiece>,
    /// Said in a comment above the pieces (e.g. why a softmax could not be cut away).
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProposedPiece {
    pub name: String,
    /// The layer the piece ends at; `None`: the whole model.
    pub to: Option<String>,
    pub description: String,
    pub task: &'static str,
    /// Why this piece: a comment above it.
    pub why: String,
}

impl Proposal {
    pub fn new(project: &str, model: &str, source: &str, outline: &Outline) -> Proposal {
        let image = outline.inputs.len() == 1 && outline.inputs[0].shape.as_ref().is_some_and(|s| s.len() == 4);
        let mut pieces = Vec::new();
        let mut notes = Vec::new();
        let output = outline.output_layer();
        let softmax = matches!(outline.final_activation.as_deref(), Some("softmax" | "log_softmax"));
        if outline.graph && softmax {
            match output {
                Some(layer) if matches!(layer.class.as_str(), "Activation" | "Softmax") && layer.inbound.len() == 1 => {
                    let classes = outline.outputs.first().and_then(|o| o.shape.as_ref()).and_then(|s| s.last().copied().flatten());
                    pieces.push(ProposedPiece {
                        name: "classification".into(),
                        to: Some(layer.inbound[0].clone()),
                        description: match classes {
                            Some(n) => format!("Logits over {n} classes."),
                            None => "Classification logits.".into(),
                        },
                        task: if image { "image-classification" } else { "text-classification" },
                        why: format!("The model ends in a softmax (layer `{}`): cut before it, consumers get logits.", layer.name),
                    });
                }
                Some(layer) => notes.push(format!(
                    "The last layer, `{}` ({}), applies the softmax itself: give it a linear activation and cut there to ship logits.",
                    layer.name, layer.class
                )),
                None => {}
            }
        }
        let last = outline.layers.last().map(|l| l.name.as_str());
        let pooling = outline.layers.iter().rev().find(|l| l.class.contains("Pooling") && Some(l.name.as_str()) != last);
        if let Some(pool) = pooling.filter(|_| outline.graph) {
            let width: Option<i64> = pool.output_shape.as_array().and_then(|dims| dims.iter().skip(1).map(|d| d.as_i64()).product());
            pieces.push(ProposedPiece {
                name: "feature-vector".into(),
                to: Some(pool.name.clone()),
                description: match width {
                    Some(n) => format!("A {n}-dimensional feature vector."),
                    None => "A feature vector.".into(),
                },
                task: if image { "image-feature-vector" } else { "text-embedding" },
                why: format!("The last pooling layer (`{}`): a feature vector to build other models on.", pool.name),
            });
        }
        if pieces.is_empty() {
            pieces.push(ProposedPiece {
                name: "full".into(),
                to: None,
                description: "The whole model.".into(),
                task: if image { "image-others" } else { "text-embedding" },
                why: "The whole model (no softmax to cut away, no pooling layer to stop at).".into(),
            });
        }
        Proposal {
            project: project.to_string(),
            model: model.to_string(),
            source: source.to_string(),
            inputs: outline.inputs.clone(),
            dropout: outline.dropout_rates.iter().copied().reduce(f64::max),
            batch_norm: outline.batch_norms.first().copied(),
            pieces,
            notes,
        }
    }

    /// The manifest's text, commented.
    pub fn manifest(&self) -> String {
        let q = |s: &str| serde_json::to_string(s).expect("strings serialise");
        let (project, model) = (&self.project, &self.model);
        let mut out = format!(
            r#"# exportctl manifest: see docs/manifest.md for every key.
# Proposed by `exportctl init` from the model's structure (`exportctl inspect {source}` lists
# its layers). `exportctl check` validates it; `exportctl build` exports, validates, packages.

[project]
name = "{project}"
version = 1                      # TF Hub style model version
# publisher = "{project}"        # documentation handle: <publisher>/<model>-<piece>/<version>

[defaults]
include-optimizer = false        # consumers never need the optimizer
trainable = true

[models.{model}]
source = {source_q}
"#,
            source = self.source,
            source_q = q(&self.source),
        );
        if let Some(rate) = self.dropout {
            let _ =
                writeln!(out, "dropout = {}                    # the model's own rate: what consumers fine-tune with", toml_float(rate));
        }
        if let Some(bn) = self.batch_norm {
            let _ = writeln!(
                out,
                "batch-norm = {{ momentum = {}, epsilon = {} }}   # the model's own values",
                toml_float(bn.momentum),
                toml_float(bn.epsilon)
            );
        }
        if !self.inputs.is_empty() {
            let _ = writeln!(out, "\n# The inputs, as the model takes them (-1: any size).\n[models.{model}.inputs]");
            for input in &self.inputs {
                let dims: Vec<String> = input.shape.iter().flatten().map(|d| d.map_or("-1".into(), |n| n.to_string())).collect();
                let key = if input.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
                    input.name.clone()
                } else {
                    q(&input.name)
                };
                let _ = writeln!(out, "{key} = {{ shape = [{}], dtype = {} }}", dims.join(", "), q(&input.dtype));
            }
        }
        let _ = write!(
            out,
            r#"
[models.{model}.validate]
batch = 2                        # seeded random golden inputs
atol = 1e-5
rtol = 1e-5

[models.{model}.docs]
license = "Apache-2.0"           # the license you publish the model under (an SPDX id)
"#
        );
        for note in &self.notes {
            let _ = write!(out, "\n# {note}");
        }
        if !self.notes.is_empty() {
            out.push('\n');
        }
        for piece in &self.pieces {
            let _ = write!(out, "\n# {}\n[[models.{model}.pieces]]\nname = {}\n", piece.why, q(&piece.name));
            if let Some(to) = &piece.to {
                let _ = writeln!(out, "to = {}", q(to));
            }
            let _ = writeln!(out, "docs = {{ description = {}, task = {} }}", q(&piece.description), q(piece.task));
        }
        out
    }
}

/// A float as TOML writes it: always with a fraction or an exponent.
fn toml_float(value: f64) -> String {
    let text = value.to_string();
    if text.contains(['.', 'e', 'E']) {
        text
    } else {
        format!("{text}.0")
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn outline(value: serde_json::Value) -> Outline {
        serde_json::from_value(value).unwrap()
    }

    fn layer(name: &str, class: &str, shape: serde_json::Value, inbound: &[&str]) -> serde_json::Value {
        json!({ "name": name, "class": class, "output_shape": shape, "inbound": inbound, "parameters": 0, "trainable_parameters": 0,
                "activation": null, "dropout_rate": null, "batch_norm": null, "is_model": false })
    }

    fn classifier() -> Outline {
        outline(json!({
            "flavour": "keras3", "model_name": "classifier", "model_class": "Functional", "graph": true,
            "inputs": [{ "name": "features", "shape": [null, 16], "dtype": "float32" }],
            "outputs": [{ "name": "probabilities", "shape": [null, 10], "dtype": "float32", "activation": "softmax" }],
            "final_activation": "softmax",
            "params": { "total": 3427, "trainable": 3299, "non_trainable": 128 },
            "layers": [
                layer("features", "InputLayer", json!([null, 16]), &[]),
                layer("hidden", "Dense", json!([null, 64]), &["features"]),
                layer("hidden_bn", "BatchNormalization", json!([null, 64]), &["hidden"]),
                layer("dropout", "Dropout", json!([null, 64]), &["hidden_bn"]),
                layer("logits", "Dense", json!([null, 10]), &["dropout"]),
                layer("probabilities", "Activation", json!([null, 10]), &["logits"]),
            ],
            "dropout_rates": [0.3],
            "batch_norms": [{ "momentum": 0.99, "epsilon": 0.001 }],
        }))
    }

    #[test]
    fn a_final_softmax_is_cut_away() {
        let proposal = Proposal::new("p", "classifier", "models/classifier.keras", &classifier());
        assert_eq!(proposal.pieces.len(), 1);
        assert_eq!(proposal.pieces[0].name, "classification");
        assert_eq!(proposal.pieces[0].to.as_deref(), Some("logits"));
        assert_eq!(proposal.pieces[0].task, "text-classification");
        assert_eq!(proposal.pieces[0].description, "Logits over 10 classes.");
        assert_eq!(proposal.dropout, Some(0.3));
        assert_eq!(proposal.batch_norm, Some(BatchNormOutline { momentum: 0.99, epsilon: 0.001 }));
        let text = proposal.manifest();
        assert!(text.contains("to = \"logits\""), "{text}");
        assert!(text.contains("features = { shape = [-1, 16], dtype = \"float32\" }"), "{text}");
        assert!(text.contains("dropout = 0.3 "), "{text}");
        assert!(text.contains("batch-norm = { momentum = 0.99, epsilon = 0.001 }"), "{text}");
        let _: toml::Table = toml::from_str(&text).expect("valid TOML");
    }

    #[test]
    fn an_image_model_gets_a_feature_vector_at_its_last_pooling_layer() {
        let mut outline = classifier();
        outline.inputs[0].shape = Some(vec![None, Some(96), Some(96), Some(3)]);
        outline.layers.insert(
            3,
            serde_json::from_value(layer("global_average_pooling2d", "GlobalAveragePooling2D", json!([null, 1, 1, 576]), &["hidden_bn"]))
                .unwrap(),
        );
        let proposal = Proposal::new("p", "net", "net.keras", &outline);
        let names: Vec<&str> = proposal.pieces.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["classification", "feature-vector"]);
        assert_eq!(proposal.pieces[1].to.as_deref(), Some("global_average_pooling2d"));
        assert_eq!(proposal.pieces[1].description, "A 576-dimensional feature vector.");
        assert_eq!(proposal.pieces[0].task, "image-classification");
        assert_eq!(proposal.pieces[1].task, "image-feature-vector");
    }

    #[test]
    fn settings_are_written_only_for_layers_the_model_has() {
        let mut outline = classifier();
        outline.dropout_rates.clear();
        outline.batch_norms.clear();
        outline.final_activation = Some("linear".into());
        let proposal = Proposal::new("p", "m", "m.keras", &outline);
        let text = proposal.manifest();
        assert!(!text.contains("dropout ="), "{text}");
        assert!(!text.contains("batch-norm ="), "{text}");
        assert_eq!(proposal.pieces[0].name, "full");
        assert_eq!(proposal.pieces[0].to, None);
    }

    #[test]
    fn a_softmax_inside_the_last_layer_is_said_not_hidden() {
        let mut outline = classifier();
        outline.layers.pop();
        outline.outputs[0].name = "logits".into();
        let proposal = Proposal::new("p", "m", "m.keras", &outline);
        assert!(proposal.notes[0].contains("`logits` (Dense), applies the softmax itself"), "{:?}", proposal.notes);
    }
}
