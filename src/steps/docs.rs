//! The documentation of a piece, written by the package step from what the earlier steps
//! found: `model.md` in TF Hub's markdown format (the handle line, the description,
//! `<!-- key: value -->` metadata with TF Hub's tag ids, generated sections, the model card
//! fields, the user's body), and the same sections as Kaggle Models shows them
//! (`kaggle_card.rs` puts them into Kaggle's metadata files).
//!
//! **Usage code runs as it is written.** Each snippet is a whole program for one kind of
//! consumer — Keras 3 (`keras.layers.TFSMLayer`), tf_keras (`hub.KerasLayer`), TensorFlow
//! alone (`tf.saved_model.load`) — that finds the package at `path` and calls it on zeros of
//! the signature's shapes; the test suite extracts them from `model.md` and runs them.
//! TFSMLayer hands its input to `serving_default` as one argument, which a signature with
//! several named inputs refuses: for those, the Keras 3 snippet subclasses it to pass the
//! dict by name (as the worker's Keras 3 check does).

use std::fmt::Write as _;

use super::export::{Inventory, Spec};
use super::files;
use super::short_float;
use super::slice::SliceFacts;
use super::trace::TraceFacts;
use super::validate::Report;
use crate::exec::Warning;
use crate::manifest::{BatchNorm, DocsSettings};
use crate::tf::inspect::human_bytes;

/// `publisher/model-piece/version`.
pub(super) struct Handle<'a> {
    pub publisher: &'a str,
    pub model: &'a str,
    pub piece: &'a str,
    pub version: u32,
}

impl std::fmt::Display for Handle<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}-{}/{}", self.publisher, self.model, self.piece, self.version)
    }
}

/// `asset-path`: the base URL joined with the archive's path inside `dist/`, or just the
/// archive's file name.
pub(super) fn asset_path(base: Option<&str>, handle: &Handle<'_>) -> String {
    match base {
        Some(base) => format!("{}/{}/{}/{}/{}", base.trim_end_matches('/'), handle.model, handle.piece, handle.version, files::ARCHIVE),
        None => files::ARCHIVE.to_string(),
    }
}

/// SPDX license ids (and TF Hub's own ids) → TF Hub's license tag ids.
const LICENSES: &[(&str, &str)] = &[
    ("apache-2.0", "apache-2.0"),
    ("mit", "mit"),
    ("bsd-2-clause", "bsd-2-clause"),
    ("bsd-3-clause", "bsd-3-clause"),
    ("cc0-1.0", "cc0-1.0"),
    ("cc-by-3.0", "cc-by-3.0"),
    ("cc-by-4.0", "cc-by-4.0"),
    ("cc-by-sa-4.0", "cc-by-sa-4.0"),
    ("cc-by-nc-4.0", "cc-by-nc-4.0"),
    ("cc-by-nc-sa-4.0", "cc-by-nc-sa-4.0"),
    ("gpl-2.0", "gpl-2.0"),
    ("gpl-3.0", "gpl-3.0"),
    ("lgpl-2.1", "lgpl-2.1"),
    ("lgpl-3.0", "lgpl-3.0"),
    ("agpl-3.0", "agpl-3.0"),
    ("mpl-2.0", "mpl-2.0"),
    ("unlicense", "unlicense"),
    ("custom", "custom"),
];

/// The TF Hub tag id of a license given as an SPDX id (`Apache-2.0` → `apache-2.0`;
/// `GPL-3.0-only` → `gpl-3.0`), or `None` when exportctl does not know it.
pub fn license_tag(license: &str) -> Option<&'static str> {
    let lower = license.trim().to_ascii_lowercase();
    let lower = lower.strip_suffix("-only").unwrap_or(&lower);
    LICENSES.iter().find(|(spdx, _)| *spdx == lower).map(|(_, tag)| *tag)
}

/// TF Hub's task tag ids exportctl knows (its `tags/task.yaml`).
const TASKS: &[&str] = &[
    "audio-command-detection",
    "audio-embedding",
    "audio-event-classification",
    "audio-pitch-extraction",
    "audio-speech-synthesis",
    "audio-speech-to-text",
    "image-augmentation",
    "image-classification",
    "image-depth-estimation",
    "image-extrapolation",
    "image-feature-vector",
    "image-frame-interpolation",
    "image-generator",
    "image-object-detection",
    "image-others",
    "image-pose-detection",
    "image-segmentation",
    "image-style-transfer",
    "image-super-resolution",
    "image-text-recognition",
    "text-classification",
    "text-embedding",
    "text-generation",
    "text-language-model",
    "text-question-answering",
    "text-retrieval-question-answering",
    "text-segmentation",
    "text-to-mel",
    "video-audio-text",
    "video-classification",
    "video-generation",
    "video-text",
];

/// Where a snippet finds the package.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Location<'a> {
    /// The unpacked archive on disk (`path/to/saved_model`).
    Local,
    /// The archive at a URL (`asset-base-url`); `name` is a cache name unique to this package.
    Url { url: &'a str, name: &'a str },
    /// A Kaggle Models variation (`owner/model/tensorFlow2/variation`), downloaded by
    /// `kagglehub` (its latest version: Kaggle numbers versions in upload order, which need
    /// not be `project.version`).
    Kaggle { handle: &'a str },
}

/// The size examples get for dimensions of any size (after the batch).
const ANY_SIZE: i64 = 8;
/// The batch of the examples.
const EXAMPLE_BATCH: i64 = 2;

/// Everything the documentation is written from.
pub(super) struct Docs<'a> {
    pub handle: &'a Handle<'a>,
    pub asset_path: String,
    pub settings: &'a DocsSettings,
    pub trainable: bool,
    pub dropout: Option<f64>,
    pub batch_norm: &'a BatchNorm,
    pub single_input: bool,
    /// What `__call__` returns: `single`, `dict` or `list` (the golden files' `output_structure`).
    pub output_structure: &'a str,
    pub inventory: &'a Inventory,
    pub facts: &'a SliceFacts,
    pub traced: &'a TraceFacts,
    pub report: &'a Report,
    pub archive_bytes: u64,
    /// Sections of the package's other formats (LiteRT), after the generated ones.
    pub formats: Option<String>,
    pub body: Option<&'a str>,
}

impl Docs<'_> {
    /// `model.md`, and the lints about the documentation's fields.
    pub(super) fn render(&self) -> (String, Vec<Warning>) {
        let mut warnings = Vec::new();
        let mut out = String::new();
        let _ = writeln!(out, "# Module {}", self.handle);
        let _ = writeln!(out, "{}", self.description());
        if self.settings.description.is_none() {
            warnings.push(missing("description", "description = \"One line on what the model does.\"", ""));
        }
        out.push('\n');
        let meta = |out: &mut String, key: &str, value: &str| {
            let _ = writeln!(out, "<!-- {key}: {value} -->");
        };
        meta(&mut out, "format", "saved_model_2");
        meta(&mut out, "asset-path", &self.asset_path);
        match self.settings.task.as_deref() {
            Some(task) => {
                if !TASKS.contains(&task) {
                    warnings.push(unknown_tag("task", task, TASKS.iter().copied()));
                }
                meta(&mut out, "task", task);
            }
            None => warnings.push(missing("task", "task = \"image-classification\"", " (a TF Hub task id)")),
        }
        meta(&mut out, "fine-tunable", if self.fine_tunable() { "true" } else { "false" });
        match self.settings.license.as_deref() {
            Some(license) => match license_tag(license) {
                Some(tag) => meta(&mut out, "license", tag),
                None => {
                    warnings.push(unknown_tag("license", license, LICENSES.iter().map(|(_, tag)| *tag)));
                    meta(&mut out, "license", license);
                }
            },
            None => warnings.push(missing("license", "license = \"Apache-2.0\"", " (an SPDX id)")),
        }
        for (key, value) in [
            ("dataset", &self.settings.dataset),
            ("network-architecture", &self.settings.network_architecture),
            ("language", &self.settings.language),
        ] {
            if let Some(value) = value {
                if !is_tag_id(value) {
                    warnings.push(Warning {
                        code: crate::contract::Lint::UnknownTag,
                        message: format!("docs.{key} = `{value}` is not a TF Hub tag id (lowercase letters, digits and dashes)"),
                        help: Some(format!("write it as `{}`", to_tag_id(value))),
                    });
                }
                meta(&mut out, key, value);
            }
        }
        out.push('\n');
        self.inputs_and_outputs(&mut out);
        let _ = writeln!(out, "## Usage\n");
        let location = match self.asset_path.contains("://") {
            true => Location::Url { url: &self.asset_path, name: &self.cache_name() },
            false => Location::Local,
        };
        self.usage(&mut out, location);
        self.fine_tuning(&mut out, "##");
        self.size(&mut out);
        self.model_card(&mut out, "##");
        if let Some(formats) = &self.formats {
            if !out.ends_with("\n\n") {
                out.push('\n');
            }
            out.push_str(formats);
        }
        // The user's own text comes last.
        if let Some(body) = self.body {
            out.push_str(body.trim_end());
            out.push('\n');
        }
        (out, warnings)
    }

    /// The description, or a sentence saying what the piece is.
    pub(super) fn description(&self) -> String {
        match self.settings.description.as_deref() {
            Some(description) => description.trim().to_string(),
            None => format!("A reusable SavedModel: the `{}` piece of model `{}`.", self.handle.piece, self.handle.model),
        }
    }

    /// Whether consumers may fine-tune: `docs.fine-tunable`, else the piece's `trainable`.
    pub(super) fn fine_tunable(&self) -> bool {
        self.settings.fine_tunable.unwrap_or(self.trainable)
    }

    /// `vision-classifier-3`: a name for this package in a download cache.
    fn cache_name(&self) -> String {
        format!("{}-{}-{}", self.handle.model, self.handle.piece, self.handle.version)
    }

    fn inputs_and_outputs(&self, out: &mut String) {
        let signature = &self.traced.signature;
        let _ = writeln!(out, "## Inputs and outputs\n");
        let _ = writeln!(out, "| | name | dtype | shape |");
        let _ = writeln!(out, "|---|---|---|---|");
        for (role, specs) in [("input", &signature.inputs), ("output", &signature.outputs)] {
            for spec in specs.iter() {
                let _ = writeln!(out, "| {role} | `{}` | {} | `{}` |", spec.name, spec.dtype, shape(spec));
            }
        }
        out.push('\n');
        let _ = writeln!(out, "{}\n", self.call_convention());
    }

    fn call_convention(&self) -> String {
        let names: Vec<String> = self.traced.signature.inputs.iter().map(|s| format!("`{}`", s.name)).collect();
        let call_input = if self.single_input {
            format!("the {} tensor itself", names.join(""))
        } else {
            format!("a dict of tensors keyed by {}", names.join(", "))
        };
        format!(
            "`__call__(inputs, training=False)` takes {call_input}; the first dimension is the batch (any size). \
             TF Serving calls the `serving_default` signature, whose inputs and outputs have the names above."
        )
    }

    /// A table of one side of the signature, for Kaggle's `Model Inputs` / `Model Outputs`.
    pub(super) fn spec_table(&self, out: &mut String, specs: &[Spec]) {
        let _ = writeln!(out, "| name | dtype | shape |");
        let _ = writeln!(out, "|---|---|---|");
        for spec in specs {
            let _ = writeln!(out, "| `{}` | {} | `{}` |", spec.name, spec.dtype, shape(spec));
        }
        out.push('\n');
    }

    /// The three snippets, each introduced by a sentence, then where `path` comes from.
    pub(super) fn usage(&self, out: &mut String, location: Location<'_>) {
        let outputs: Vec<String> = self.traced.signature.outputs.iter().map(|s| format!("`{}`", s.name)).collect();
        let pick = match outputs.as_slice() {
            [one] => format!("its one output is {one}"),
            many => format!("pick one by key: {}", many.join(", ")),
        };
        let [keras3, tf_keras, tensorflow] = self.snippets(location);
        let _ = writeln!(
            out,
            "**Keras 3** (the Keras of TensorFlow 2.16 and later): `keras.layers.TFSMLayer` calls the `serving_default` \
             signature and returns a dict of its outputs; {pick}. It needs Keras on the TensorFlow backend \
             (`KERAS_BACKEND=tensorflow`, the default).\n"
        );
        let _ = writeln!(out, "```python\n{keras3}```\n");
        let _ = writeln!(
            out,
            "TFSMLayer runs `serving_default` also inside `fit`: dropout stays off, batch normalization keeps its moving \
             statistics, and the regularization losses are not added. To fine-tune with the training behaviour, use \
             `hub.KerasLayer` in tf_keras:\n"
        );
        let _ = writeln!(
            out,
            "**tf_keras** (Keras 2, `pip install tf-keras tensorflow-hub`): `hub.KerasLayer` calls the Reusable SavedModel's \
             `__call__`, with `training=True` inside `fit`, and adds its regularization losses to the model's.\n"
        );
        let _ = writeln!(out, "```python\n{tf_keras}```\n");
        let _ = writeln!(out, "**TensorFlow** alone: `tf.saved_model.load` gives the Reusable SavedModel and its signatures.\n");
        let _ = writeln!(out, "```python\n{tensorflow}```\n");
        match location {
            Location::Local => {
                let _ = writeln!(
                    out,
                    "`path/to/saved_model` is the unpacked `{}` (exportctl also writes it unpacked as `saved_model/` next to this file).\n",
                    files::ARCHIVE
                );
            }
            Location::Url { .. } => {
                let _ = writeln!(
                    out,
                    "`keras.utils.get_file` downloads and unpacks `{}` once; `hub.KerasLayer` does so itself.\n",
                    files::ARCHIVE
                );
            }
            Location::Kaggle { .. } => {
                let _ = writeln!(
                    out,
                    "`kagglehub.model_download` downloads this variation once (`pip install kagglehub`) and returns its folder.\n"
                );
            }
        }
    }

    /// The snippets for Keras 3, tf_keras and TensorFlow alone, each a complete program.
    pub(super) fn snippets(&self, location: Location<'_>) -> [String; 3] {
        let inputs = &self.traced.signature.inputs;
        let first_output = self.traced.signature.outputs.first().map_or("output_0", |s| s.name.as_str());
        let output_names: Vec<&str> = self.traced.signature.outputs.iter().map(|s| s.name.as_str()).collect();
        let trainable = if self.trainable { "True" } else { "False" };
        let location_lines = |keras_download: bool| -> (Vec<String>, String) {
            match location {
                Location::Local => (vec![], "path = \"path/to/saved_model\"".into()),
                Location::Url { url, name } if keras_download => {
                    (vec!["import keras".into()], format!("path = keras.utils.get_file(\"{name}\", origin=\"{url}\", extract=True)"))
                }
                Location::Url { url, .. } => (vec![], format!("path = \"{url}\"")),
                Location::Kaggle { handle } => (
                    vec!["import kagglehub".into()],
                    format!("path = kagglehub.model_download(\"{handle}\")  # its latest version; add /<number> to pin one"),
                ),
            }
        };
        let imports = |mut own: Vec<&str>, extra: Vec<String>| -> String {
            let mut all: Vec<String> = own.drain(..).map(str::to_string).chain(extra).collect();
            all.sort();
            all.dedup();
            all.iter().map(|i| format!("{i}\n")).collect()
        };
        let examples = |indent: &str| -> String {
            if self.single_input {
                inputs.first().map(example_value).unwrap_or_default()
            } else {
                let items: Vec<String> = inputs.iter().map(|s| format!("{indent}    \"{}\": {},\n", s.name, example_value(s))).collect();
                format!("{{\n{}{indent}}}", items.join(""))
            }
        };

        // Keras 3.
        let (extra, path) = location_lines(true);
        let mut keras3 = imports(vec!["import keras", "import numpy as np"], extra);
        let layer_class = if self.single_input {
            "keras.layers.TFSMLayer".to_string()
        } else {
            keras3.push_str(
                "\n\nclass ServingLayer(keras.layers.TFSMLayer):\n    \"\"\"Passes its dict of inputs to serving_default by name.\"\"\"\n\n    def call(self, inputs):\n        return self.call_endpoint_fn(**inputs)\n\n",
            );
            "ServingLayer".to_string()
        };
        let _ = writeln!(keras3, "\n{path}");
        let _ = writeln!(keras3, "layer = {layer_class}(path, call_endpoint=\"serving_default\", trainable={trainable})");
        if self.single_input {
            let _ = writeln!(keras3, "inputs = {}", keras_input(&inputs[0]));
        } else {
            let _ = writeln!(keras3, "inputs = {{");
            for spec in inputs {
                let _ = writeln!(keras3, "    \"{}\": {},", spec.name, keras_input(spec));
            }
            let _ = writeln!(keras3, "}}");
        }
        let _ = writeln!(keras3, "outputs = layer(inputs)[\"{first_output}\"]  # a dict: {}", output_names.join(", "));
        let _ = writeln!(keras3, "model = keras.Model(inputs, outputs)");
        let _ = writeln!(keras3, "print(model({}).shape)", examples(""));

        // tf_keras.
        let (extra, path) = location_lines(false);
        let mut tf_keras = imports(vec!["import numpy as np", "import tensorflow_hub as hub", "import tf_keras"], extra);
        let _ = writeln!(tf_keras, "\n{path}");
        let _ = writeln!(tf_keras, "layer = hub.KerasLayer(path, trainable={trainable})");
        if self.single_input {
            let _ = writeln!(tf_keras, "inputs = {}", tf_keras_input(&inputs[0]));
        } else {
            let _ = writeln!(tf_keras, "inputs = {{");
            for spec in inputs {
                let _ = writeln!(tf_keras, "    \"{}\": {},", spec.name, tf_keras_input(spec));
            }
            let _ = writeln!(tf_keras, "}}");
        }
        match self.output_structure {
            "dict" => {
                let _ = writeln!(tf_keras, "outputs = layer(inputs)[\"{first_output}\"]  # a dict: {}", output_names.join(", "));
            }
            "list" => {
                let _ = writeln!(tf_keras, "outputs = layer(inputs)[0]  # a list: {}", output_names.join(", "));
            }
            _ => {
                let _ = writeln!(tf_keras, "outputs = layer(inputs)");
            }
        }
        let _ = writeln!(tf_keras, "model = tf_keras.Model(inputs, outputs)");
        let _ = writeln!(tf_keras, "print(model({}).shape)", examples(""));

        // TensorFlow alone.
        let (extra, path) = location_lines(true);
        let mut tensorflow = imports(vec!["import numpy as np", "import tensorflow as tf"], extra);
        let _ = writeln!(tensorflow, "\n{path}");
        let _ = writeln!(tensorflow, "obj = tf.saved_model.load(path)");
        let _ = writeln!(tensorflow, "x = {}", examples(""));
        let _ = writeln!(tensorflow, "outputs = obj(x, training=False)  # training=True while fine-tuning");
        let call = if self.single_input { format!("{}=x", inputs.first().map_or("x", |s| s.name.as_str())) } else { "**x".to_string() };
        let _ = writeln!(tensorflow, "print(obj.signatures[\"serving_default\"]({call}))  # what TF Serving calls: a dict");
        [keras3, tf_keras, tensorflow]
    }

    /// `Fine-tuning` at heading `level`: the training flag, variables, losses, dropout and
    /// batch-norm settings, the optimizer left out, and what validation checked.
    pub(super) fn fine_tuning(&self, out: &mut String, level: &str) {
        let traced = self.traced;
        let _ = writeln!(out, "{level} Fine-tuning\n");
        let _ = writeln!(
            out,
            "This SavedModel implements the Reusable SavedModel API (`__call__`, `variables`, `trainable_variables`, `regularization_losses`).\n"
        );
        let changes: Vec<&str> = [
            (traced.has_dropout == Some(true), "dropout is active"),
            (traced.has_batch_norm == Some(true), "batch normalization uses and updates batch statistics"),
        ]
        .into_iter()
        .filter_map(|(present, what)| present.then_some(what))
        .collect();
        let effect = match (traced.has_dropout, changes.is_empty()) {
            (None, _) => "what it changes is up to the source SavedModel's own `__call__`".to_string(),
            (Some(_), true) => "this model has no dropout or batch normalization, so both compute the same".to_string(),
            (Some(_), false) => format!("with `training=True`, {}", changes.join(" and ")),
        };
        let _ = writeln!(
            out,
            "- **Training flag**: `__call__` was traced with `training=True` and `training=False`; pass `training=True` \
             only while fine-tuning (`hub.KerasLayer` does so inside `fit`): {effect}."
        );
        if self.trainable {
            let params = self.facts.params;
            let counted = if params.total > 0 {
                format!(
                    " ({} of {} parameters)",
                    crate::tf::inspect::group_digits(params.trainable),
                    crate::tf::inspect::group_digits(params.total)
                )
            } else {
                String::new()
            };
            let _ = writeln!(out, "- **Trainable variables**: {} of {} variables{counted}.", traced.trainable_variables, traced.variables);
        } else {
            let _ = writeln!(
                out,
                "- **Trainable variables**: none: this piece is exported frozen (`trainable = false`); its {} variables are constants for consumers.",
                traced.variables
            );
        }
        let values = &self.report.reusable.regularization_loss_values;
        match traced.regularization_losses {
            0 => {
                let _ = writeln!(out, "- **Regularization losses**: none.");
            }
            n => {
                let shown: Vec<String> = values.iter().map(|v| v.map_or("?".to_string(), short_float)).collect();
                let _ = writeln!(
                    out,
                    "- **Regularization losses**: {n} (`regularization_losses`, one per weight regularizer; value{} at export: {}). \
                     `hub.KerasLayer` adds them to the model's losses; when calling the object directly, add them to your loss.",
                    if n == 1 { "" } else { "s" },
                    shown.join(", ")
                );
            }
        }
        match (self.facts.dropout_layers.unwrap_or(0), self.dropout) {
            (0, _) => {}
            (n, Some(rate)) => {
                let _ = writeln!(out, "- **Dropout**: {n} layer(s), rate set to {} for consumers.", short_float(rate));
            }
            (n, None) => {
                let _ = writeln!(out, "- **Dropout**: {n} layer(s), rates kept from training.");
            }
        }
        match (self.facts.batch_norm_layers.unwrap_or(0), self.batch_norm.is_set()) {
            (0, _) => {}
            (n, true) => {
                let mut set = Vec::new();
                if let Some(m) = self.batch_norm.momentum {
                    set.push(format!("momentum {}", short_float(m)));
                }
                if let Some(e) = self.batch_norm.epsilon {
                    set.push(format!("epsilon {}", short_float(e)));
                }
                let _ = writeln!(out, "- **Batch normalization**: {n} layer(s), {} set for consumers.", set.join(", "));
            }
            (n, false) => {
                let _ = writeln!(out, "- **Batch normalization**: {n} layer(s), momentum and epsilon kept from training.");
            }
        }
        if let Some(optimizer) = &self.inventory.optimizer {
            let size = optimizer.bytes_in_source.map(|b| format!(" ({})", human_bytes(b))).unwrap_or_default();
            let _ = writeln!(
                out,
                "- **Optimizer**: the source model was trained with {}; its state{size} is not part of this package. Fine-tune with your own optimizer.",
                optimizer.class
            );
            if !optimizer.lost_regularization.is_empty() && self.trainable {
                let lost: Vec<String> =
                    optimizer.lost_regularization.iter().map(|r| format!("`{} = {}`", r.name, short_float(r.value))).collect();
                let _ = writeln!(
                    out,
                    "- **Warning — regularization lost**: training used optimizer-level regularization ({}) of {}, which a SavedModel cannot carry. \
                     Configure it on your own optimizer to fine-tune the way this model was trained.",
                    lost.join(", "),
                    optimizer.class
                );
            }
        }
        match &self.report.reusable.hub {
            Some(hub) if hub.trainable_weights > 0 => {
                let _ = writeln!(
                    out,
                    "- **Checked**: `hub.KerasLayer(trainable=True)` loaded it and one fine-tuning step moved {} of {} trainable weights.",
                    hub.moved, hub.trainable_weights
                );
            }
            Some(_) => {
                let _ = writeln!(out, "- **Checked**: `hub.KerasLayer` loaded it; it exposes no trainable weights.");
            }
            None => {}
        }
        match &self.report.reusable.keras3 {
            Some(keras3) if keras3.moved > 0 => {
                let _ = writeln!(
                    out,
                    "- **Checked in Keras 3**: `keras.layers.TFSMLayer` in a Keras 3 model returned the reference outputs, and one `fit` step moved {} of {} trainable weights.",
                    keras3.moved, keras3.trainable_weights
                );
            }
            Some(_) => {
                let _ =
                    writeln!(out, "- **Checked in Keras 3**: `keras.layers.TFSMLayer` in a Keras 3 model returned the reference outputs.");
            }
            None => {}
        }
        out.push('\n');
    }

    fn size(&self, out: &mut String) {
        let _ = writeln!(out, "## Size\n");
        let params = self.facts.params;
        if params.total > 0 {
            let _ = writeln!(
                out,
                "- Parameters: {} ({} trainable, {} non-trainable)",
                crate::tf::inspect::group_digits(params.total),
                crate::tf::inspect::group_digits(params.trainable),
                crate::tf::inspect::group_digits(params.non_trainable)
            );
        } else if let Some(variables) = &self.report.native.variables {
            let _ =
                writeln!(out, "- Parameters: {} in {} variables", crate::tf::inspect::group_digits(variables.parameters), variables.count);
        }
        if let Some(size) = &self.report.native.size {
            let _ = writeln!(
                out,
                "- SavedModel: {} (`saved_model.pb` {}, `variables/` {})",
                human_bytes(size.total),
                human_bytes(size.saved_model_pb),
                human_bytes(size.variables)
            );
        }
        let _ = writeln!(out, "- Archive `{}`: {}", files::ARCHIVE, human_bytes(self.archive_bytes));
        out.push('\n');
    }

    /// The model card fields at heading `level`: training data, evaluation, limitations,
    /// citation; each only when the manifest has it.
    pub(super) fn model_card(&self, out: &mut String, level: &str) {
        let docs = self.settings;
        match docs.training_data.as_slice() {
            [] => {}
            [one] => {
                let _ = writeln!(out, "{level} Training data\n\n{}\n", one.trim());
            }
            many => {
                let _ = writeln!(out, "{level} Training data\n");
                for item in many {
                    let _ = writeln!(out, "- {}", item.trim());
                }
                out.push('\n');
            }
        }
        for (title, value) in [("Evaluation", &docs.evaluation), ("Limitations", &docs.limitations)] {
            if let Some(value) = value {
                let _ = writeln!(out, "{level} {title}\n\n{}\n", value.trim());
            }
        }
        if let Some(citation) = &docs.citation {
            let _ = writeln!(out, "{level} Citation\n\n{}\n", citation_block(citation));
        }
    }
}

/// A citation as markdown: BibTeX (`@article{…}`) in a code block, anything else as it is.
pub(super) fn citation_block(citation: &str) -> String {
    let citation = citation.trim();
    if citation.starts_with('@') {
        format!("```bibtex\n{citation}\n```")
    } else {
        citation.to_string()
    }
}

/// The example shape of a signature input: batch 2, `ANY_SIZE` where any size goes.
fn example_shape(spec: &Spec) -> Vec<i64> {
    match &spec.shape {
        None => vec![EXAMPLE_BATCH],
        Some(dims) => dims
            .iter()
            .enumerate()
            .map(|(i, &d)| {
                if i == 0 {
                    EXAMPLE_BATCH
                } else if d < 0 {
                    ANY_SIZE
                } else {
                    d
                }
            })
            .collect(),
    }
}

fn python_tuple(dims: &[String]) -> String {
    match dims {
        [one] => format!("({one},)"),
        many => format!("({})", many.join(", ")),
    }
}

/// Zeros of an input's dtype and example shape, as NumPy writes them.
fn example_value(spec: &Spec) -> String {
    let dims: Vec<String> = example_shape(spec).iter().map(i64::to_string).collect();
    match spec.dtype.as_str() {
        "string" => format!("np.full({}, b\"\", dtype=object)", python_tuple(&dims)),
        dtype => format!("np.zeros({}, \"{dtype}\")", python_tuple(&dims)),
    }
}

/// An input's shape without the batch dimension, `None` where any size goes.
fn per_example_shape(spec: &Spec) -> String {
    let dims: Vec<String> = match &spec.shape {
        None => Vec::new(),
        Some(dims) => dims.iter().skip(1).map(|&d| if d < 0 { "None".to_string() } else { d.to_string() }).collect(),
    };
    if dims.is_empty() {
        "()".to_string()
    } else {
        python_tuple(&dims)
    }
}

fn keras_input(spec: &Spec) -> String {
    format!("keras.Input(shape={}, dtype=\"{}\", name=\"{}\")", per_example_shape(spec), spec.dtype, spec.name)
}

fn tf_keras_input(spec: &Spec) -> String {
    format!("tf_keras.Input(shape={}, dtype=\"{}\", name=\"{}\")", per_example_shape(spec), spec.dtype, spec.name)
}

pub(super) fn shape(spec: &Spec) -> String {
    match &spec.shape {
        None => "?".to_string(),
        Some(dims) => format!("[{}]", dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
    }
}

fn is_tag_id(value: &str) -> bool {
    !value.is_empty() && value.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn to_tag_id(value: &str) -> String {
    let mut out = String::new();
    for c in value.trim().chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_string()
}

/// `example` (`key = "value"`) is shown as code, `note` after it.
fn missing(key: &str, example: &str, note: &str) -> Warning {
    Warning {
        code: crate::contract::Lint::MissingDocs,
        message: format!("no docs.{key}: model.md is incomplete without it"),
        help: Some(format!("add `{example}`{note} to the model's or the piece's `docs`")),
    }
}

fn unknown_tag<'a>(key: &str, value: &str, known: impl Iterator<Item = &'a str> + Clone) -> Warning {
    let suggestion = crate::suggestion::did_you_mean(value, known.clone());
    Warning {
        code: if key == "task" { crate::contract::Lint::UnknownTask } else { crate::contract::Lint::UnknownLicense },
        message: format!("docs.{key} = `{value}` is not a TF Hub {key} id exportctl knows"),
        help: Some(suggestion.unwrap_or_else(|| format!("known values: {}", known.collect::<Vec<_>>().join(", ")))),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::steps::validate::{HubSummary, Keras3Summary, NativeReport, ReusableReport, SizeSummary};

    #[test]
    fn licenses_map_to_tf_hub_tag_ids() {
        assert_eq!(license_tag("Apache-2.0"), Some("apache-2.0"));
        assert_eq!(license_tag("apache-2.0"), Some("apache-2.0"));
        assert_eq!(license_tag("MIT"), Some("mit"));
        assert_eq!(license_tag("CC-BY-4.0"), Some("cc-by-4.0"));
        assert_eq!(license_tag("GPL-3.0-only"), Some("gpl-3.0"));
        assert_eq!(license_tag("BSD-3-Clause"), Some("bsd-3-clause"));
        assert_eq!(license_tag("Apache 2"), None);
        assert_eq!(license_tag("proprietary"), None);
    }

    struct Fixture {
        inventory: Inventory,
        facts: SliceFacts,
        traced: TraceFacts,
        report: Report,
        docs: DocsSettings,
    }

    fn fixture() -> Fixture {
        let inventory: Inventory = serde_json::from_value(json!({
            "flavour": "keras3", "model_file": "model.keras",
            "optimizer": {"class": "Ftrl", "lost_regularization": [{"name": "l1_regularization_strength", "value": 0.01}], "bytes_in_source": 29020}
        }))
        .unwrap();
        let facts: SliceFacts = serde_json::from_value(json!({
            "model_file": "model.keras",
            "params": {"total": 3754, "trainable": 3626, "non_trainable": 128},
            "dropout_layers": 1, "batch_norm_layers": 1
        }))
        .unwrap();
        let traced: TraceFacts = serde_json::from_value(json!({
            "signature": {
                "inputs": [{"name": "features", "shape": [-1, 16], "dtype": "float32"}],
                "outputs": [{"name": "logits", "shape": [-1, 10], "dtype": "float32"}]
            },
            "variables": 11, "trainable_variables": 8, "regularization_losses": 1,
            "has_dropout": true, "has_batch_norm": true
        }))
        .unwrap();
        let report = Report {
            format: 1,
            ok: true,
            native: NativeReport {
                ok: true,
                checks: vec![],
                signature: None,
                variables: None,
                size: Some(SizeSummary { saved_model_pb: 40_000, variables: 16_000, assets: 0, total: 56_100 }),
            },
            reusable: ReusableReport {
                ok: true,
                checks: vec![],
                regularization_loss_values: vec![Some(0.004)],
                hub: Some(HubSummary { trainable_weights: 8, losses: 1, moved: 8 }),
                keras3: Some(Keras3Summary { trainable_weights: 8, reached: 8, moved: 8 }),
            },
            lints: vec![],
        };
        let docs = DocsSettings {
            description: Some("A small classifier (logits).".into()),
            body: None,
            task: Some("text-classification".into()),
            license: Some("Apache-2.0".into()),
            dataset: None,
            network_architecture: None,
            language: Some("en".into()),
            fine_tunable: None,
            training_data: vec![],
            evaluation: None,
            limitations: None,
            citation: None,
        };
        Fixture { inventory, facts, traced, report, docs }
    }

    fn render(f: &Fixture, base: Option<&str>, body: Option<&str>) -> (String, Vec<Warning>) {
        render_piece(f, base, body, true)
    }

    fn render_piece(f: &Fixture, base: Option<&str>, body: Option<&str>, trainable: bool) -> (String, Vec<Warning>) {
        let handle = Handle { publisher: "acme", model: "vision", piece: "classifier", version: 3 };
        let batch_norm = BatchNorm { momentum: Some(0.99), epsilon: Some(0.001) };
        let docs = Docs {
            handle: &handle,
            asset_path: asset_path(base, &handle),
            settings: &f.docs,
            trainable,
            dropout: Some(0.1),
            batch_norm: &batch_norm,
            single_input: true,
            output_structure: "single",
            inventory: &f.inventory,
            facts: &f.facts,
            traced: &f.traced,
            report: &f.report,
            archive_bytes: 20_480,
            formats: None,
            body,
        };
        docs.render()
    }

    #[test]
    fn model_md_starts_with_the_handle_description_and_metadata() {
        let f = fixture();
        let (md, warnings) = render(&f, None, Some("## Overview\n\nTrained on nothing.\n"));
        assert!(warnings.is_empty(), "{warnings:?}");
        let head: Vec<&str> = md.lines().take(9).collect();
        assert_eq!(
            head,
            vec![
                "# Module acme/vision-classifier/3",
                "A small classifier (logits).",
                "",
                "<!-- format: saved_model_2 -->",
                "<!-- asset-path: model.tar.gz -->",
                "<!-- task: text-classification -->",
                "<!-- fine-tunable: true -->",
                "<!-- license: apache-2.0 -->",
                "<!-- language: en -->",
            ]
        );
        for section in ["## Inputs and outputs", "## Usage", "## Fine-tuning", "## Size"] {
            assert!(md.contains(section), "{section} missing:\n{md}");
        }
        assert!(md.contains("| input | `features` | float32 | `[-1, 16]` |"), "{md}");
        assert!(md.contains("| output | `logits` | float32 | `[-1, 10]` |"), "{md}");
        assert!(md.contains("layer = keras.layers.TFSMLayer(path, call_endpoint=\"serving_default\", trainable=True)"), "{md}");
        assert!(md.contains("outputs = layer(inputs)[\"logits\"]  # a dict: logits"), "{md}");
        assert!(md.contains("layer = hub.KerasLayer(path, trainable=True)"), "{md}");
        assert!(md.contains("obj = tf.saved_model.load(path)"), "{md}");
        assert!(
            md.find("keras.layers.TFSMLayer(path").unwrap() < md.find("hub.KerasLayer(path").unwrap()
                && md.find("hub.KerasLayer(path").unwrap() < md.find("tf.saved_model.load(path)").unwrap(),
            "Keras 3 first, then tf_keras, then TensorFlow alone:\n{md}"
        );
        assert!(md.contains("moved 8 of 8 trainable weights."), "{md}");
        assert!(md.contains("- **Trainable variables**: 8 of 11 variables (3,626 of 3,754 parameters)."), "{md}");
        assert!(md.contains("value at export: 0.004"), "{md}");
        assert!(md.contains("with `training=True`, dropout is active and batch normalization uses and updates batch statistics."), "{md}");
        assert!(md.contains("- **Dropout**: 1 layer(s), rate set to 0.1 for consumers."), "{md}");
        assert!(md.contains("- **Batch normalization**: 1 layer(s), momentum 0.99, epsilon 0.001 set for consumers."), "{md}");
        assert!(md.contains("trained with Ftrl; its state (28.3 KiB) is not part of this package"), "{md}");
        assert!(md.contains("**Warning — regularization lost**"), "{md}");
        assert!(md.contains("`l1_regularization_strength = 0.01`"), "{md}");
        assert!(md.contains("moved 8 of 8 trainable weights"), "{md}");
        assert!(md.contains("- Parameters: 3,754 (3,626 trainable, 128 non-trainable)"), "{md}");
        assert!(md.contains("- Archive `model.tar.gz`: 20.0 KiB"), "{md}");
        assert!(md.ends_with("## Overview\n\nTrained on nothing.\n"), "{md}");
    }

    #[test]
    fn a_frozen_piece_says_so_and_does_not_warn_about_fine_tuning() {
        let mut f = fixture();
        f.traced.trainable_variables = 0;
        f.report.reusable.hub = Some(HubSummary { trainable_weights: 0, losses: 1, moved: 0 });
        f.report.reusable.keras3 = Some(Keras3Summary { trainable_weights: 0, reached: 0, moved: 0 });
        let (md, _) = render_piece(&f, None, None, false);
        assert!(md.contains("<!-- fine-tunable: false -->"), "{md}");
        assert!(md.contains("hub.KerasLayer(path, trainable=False)"), "{md}");
        assert!(md.contains("keras.layers.TFSMLayer(path, call_endpoint=\"serving_default\", trainable=False)"), "{md}");
        assert!(md.contains("- **Trainable variables**: none: this piece is exported frozen"), "{md}");
        assert!(md.contains("- **Checked**: `hub.KerasLayer` loaded it; it exposes no trainable weights."), "{md}");
        assert!(!md.contains("regularization lost"), "{md}");
    }

    #[test]
    fn the_training_flag_section_follows_what_the_model_has() {
        let mut f = fixture();
        f.traced.has_dropout = Some(false);
        f.traced.has_batch_norm = Some(false);
        let (md, _) = render(&f, None, None);
        assert!(md.contains("this model has no dropout or batch normalization, so both compute the same."), "{md}");
        f.traced.has_dropout = None;
        f.traced.has_batch_norm = None;
        let (md, _) = render(&f, None, None);
        assert!(md.contains("what it changes is up to the source SavedModel's own `__call__`."), "{md}");
    }

    #[test]
    fn asset_path_joins_the_base_url_with_the_archive_path() {
        let f = fixture();
        let (md, _) = render(&f, Some("https://storage.example.com/models/"), None);
        assert!(md.contains("<!-- asset-path: https://storage.example.com/models/vision/classifier/3/model.tar.gz -->"), "{md}");
        assert!(
            md.contains("path = keras.utils.get_file(\"vision-classifier-3\", origin=\"https://storage.example.com/models/vision/classifier/3/model.tar.gz\", extract=True)"),
            "{md}"
        );
        assert!(
            md.contains("path = \"https://storage.example.com/models/vision/classifier/3/model.tar.gz\"\nlayer = hub.KerasLayer(path"),
            "{md}"
        );
    }

    #[test]
    fn unknown_or_missing_documentation_fields_are_linted() {
        let mut f = fixture();
        f.docs.license = Some("Apache 2".into());
        f.docs.task = Some("image-clasification".into());
        f.docs.description = None;
        f.docs.dataset = Some("ImageNet 2012".into());
        let (md, warnings) = render(&f, None, None);
        let codes: Vec<&str> = warnings.iter().map(|w| w.code.code()).collect();
        assert_eq!(codes, vec!["missing-docs", "unknown-task", "unknown-license", "unknown-tag"]);
        assert_eq!(warnings[1].help.as_deref(), Some("did you mean `image-classification`?"));
        assert_eq!(warnings[3].help.as_deref(), Some("write it as `imagenet-2012`"));
        assert!(md.contains("<!-- license: Apache 2 -->"), "{md}");
        f.docs.license = None;
        let (_, warnings) = render(&f, None, None);
        let missing = warnings.iter().find(|w| w.code == "missing-docs" && w.message.contains("docs.license")).unwrap();
        assert_eq!(missing.help.as_deref(), Some("add `license = \"Apache-2.0\"` (an SPDX id) to the model's or the piece's `docs`"));
    }

    #[test]
    fn the_same_facts_give_the_same_documentation() {
        let f = fixture();
        assert_eq!(render(&f, None, Some("body")).0, render(&f, None, Some("body")).0);
    }

    #[test]
    fn several_inputs_get_a_tfsm_layer_that_passes_them_by_name() {
        let mut f = fixture();
        f.traced = serde_json::from_value(json!({
            "signature": {
                "inputs": [
                    {"name": "input_mask", "shape": [-1, 16], "dtype": "int32"},
                    {"name": "input_word_ids", "shape": [-1, -1], "dtype": "int32"}
                ],
                "outputs": [
                    {"name": "pooled_output", "shape": [-1, 32], "dtype": "float32"},
                    {"name": "sequence_output", "shape": [-1, 16, 32], "dtype": "float32"}
                ]
            },
            "variables": 11, "trainable_variables": 8, "regularization_losses": 0
        }))
        .unwrap();
        let handle = Handle { publisher: "acme", model: "bert", piece: "encoder", version: 1 };
        let batch_norm = BatchNorm::default();
        let docs = Docs {
            handle: &handle,
            asset_path: asset_path(None, &handle),
            settings: &f.docs,
            trainable: true,
            dropout: None,
            batch_norm: &batch_norm,
            single_input: false,
            output_structure: "dict",
            inventory: &f.inventory,
            facts: &f.facts,
            traced: &f.traced,
            report: &f.report,
            archive_bytes: 1,
            formats: None,
            body: None,
        };
        let [keras3, tf_keras, tensorflow] = docs.snippets(Location::Local);
        assert!(keras3.contains("class ServingLayer(keras.layers.TFSMLayer):"), "{keras3}");
        assert!(keras3.contains("        return self.call_endpoint_fn(**inputs)\n"), "{keras3}");
        assert!(
            keras3.contains("    \"input_word_ids\": keras.Input(shape=(None,), dtype=\"int32\", name=\"input_word_ids\"),\n"),
            "{keras3}"
        );
        assert!(keras3.contains("outputs = layer(inputs)[\"pooled_output\"]  # a dict: pooled_output, sequence_output"), "{keras3}");
        assert!(keras3.contains("    \"input_word_ids\": np.zeros((2, 8), \"int32\"),\n"), "any size: 8 in the example\n{keras3}");
        assert!(tf_keras.contains("outputs = layer(inputs)[\"pooled_output\"]"), "{tf_keras}");
        assert!(tensorflow.contains("print(obj.signatures[\"serving_default\"](**x))"), "{tensorflow}");
        let [kaggle, _, _] = docs.snippets(Location::Kaggle { handle: "acme/bert/tensorFlow2/encoder" });
        assert!(kaggle.starts_with("import kagglehub\nimport keras\n"), "{kaggle}");
        assert!(kaggle.contains("path = kagglehub.model_download(\"acme/bert/tensorFlow2/encoder\")  # its latest version"), "{kaggle}");
    }

    #[test]
    fn the_model_card_fields_follow_the_generated_sections() {
        let mut f = fixture();
        f.docs.training_data = vec!["ImageNet".into(), "https://example.com/more-data".into()];
        f.docs.evaluation = Some("Top-1 accuracy 0.67 on the validation set.".into());
        f.docs.limitations = Some("Not for faces.".into());
        f.docs.citation = Some("@article{x,\n  title={X}\n}".into());
        let (md, _) = render(&f, None, Some("## Overview\n\nMore.\n"));
        let sections = [
            "## Size",
            "## Training data\n\n- ImageNet\n- https://example.com/more-data\n",
            "## Evaluation\n\nTop-1",
            "## Limitations\n\nNot for faces.",
            "## Citation\n\n```bibtex\n@article{x,",
            "## Overview",
        ];
        let positions: Vec<usize> = sections.iter().map(|s| md.find(s).unwrap_or_else(|| panic!("{s} missing:\n{md}"))).collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}\n{md}");
        f.docs.training_data = vec!["256 random vectors.".into()];
        f.docs.citation = Some("Doe et al., 2026".into());
        let (md, _) = render(&f, None, None);
        assert!(md.contains("## Training data\n\n256 random vectors.\n"), "{md}");
        assert!(md.contains("## Citation\n\nDoe et al., 2026\n"), "{md}");
    }
}
