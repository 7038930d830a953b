//! The manifest's keys, declared once.
//!
//! This table is the single source of truth for what a manifest may contain: the shape check
//! walks it to report unknown keys (with did-you-mean), wrong types, out-of-range numbers and
//! missing required keys; `exportctl schema` turns it into `schemas/export.schema.json`; and a
//! test checks that `docs/manifest.md` and `Export.toml.example` mention every key in it.
//! Checks that need more than one value (paths on disk, names that must be unique, `from`
//! without `to`) live in `resolve.rs`.

/// What the user-chosen keys of a [`Ty::Map`] must look like.
#[derive(Debug, Clone, Copy)]
pub enum Keys {
    /// [`Ty::Name`] rules: model names become paths and targets.
    Name,
    /// A TensorFlow tensor name: `input_word_ids`, `image`.
    TensorName,
}

/// What a key's value must be.
#[derive(Debug)]
pub enum Ty {
    String,
    /// A lowercase name: `[a-z0-9][a-z0-9-]*`. Names become paths and target ids.
    Name,
    /// A path relative to the manifest's directory that must stay inside the project.
    Path,
    Bool,
    Integer {
        min: i64,
    },
    /// A number within bounds; integers are accepted.
    Number {
        min: f64,
        min_exclusive: bool,
        max: Option<(f64, bool)>,
    },
    /// One of a fixed set of strings.
    Enum(&'static [&'static str]),
    /// A tensor dimension: `-1` (any size) or a positive integer.
    Dimension,
    /// A string, or a non-empty list of strings.
    OneOrMany(&'static Ty),
    List(&'static Ty),
    Table(&'static [Field]),
    /// A table whose keys are chosen by the user (`[models.<name>]`).
    Map {
        keys: Keys,
        value: &'static Ty,
    },
    /// An array of tables (`[[models.x.pieces]]`).
    TableList(&'static [Field]),
}

#[derive(Debug)]
pub struct Field {
    pub key: &'static str,
    pub ty: Ty,
    pub required: bool,
    /// The default, as it would be written in TOML.
    pub default: Option<&'static str>,
    pub doc: &'static str,
}

const fn field(key: &'static str, ty: Ty, doc: &'static str) -> Field {
    Field { key, ty, required: false, default: None, doc }
}

const fn required(key: &'static str, ty: Ty, doc: &'static str) -> Field {
    Field { key, ty, required: true, default: None, doc }
}

const fn defaulted(key: &'static str, ty: Ty, default: &'static str, doc: &'static str) -> Field {
    Field { key, ty, required: false, default: Some(default), doc }
}

pub const DTYPES: &[&str] =
    &["float16", "bfloat16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16", "bool", "string"];

/// The dtype a user most likely meant by a name from NumPy, Python or TensorFlow habits
/// (`tf.float32`, `float`, `long`), for did-you-mean.
pub fn dtype_alias(name: &str) -> Option<&'static str> {
    let bare = ["tf.", "np.", "numpy."].iter().fold(name.trim(), |n, prefix| n.strip_prefix(prefix).unwrap_or(n));
    if let Some(known) = DTYPES.iter().find(|d| **d == bare) {
        return Some(known);
    }
    match bare.to_ascii_lowercase().as_str() {
        "float" | "single" | "f32" | "fp32" => Some("float32"),
        "double" | "f64" | "fp64" => Some("float64"),
        "half" | "f16" | "fp16" => Some("float16"),
        "int" | "i32" => Some("int32"),
        "long" | "i64" => Some("int64"),
        "boolean" => Some("bool"),
        "str" | "bytes" | "text" => Some("string"),
        _ => None,
    }
}

pub const KERAS_FLAVOURS: &[&str] = &["auto", "keras3", "tf-keras"];

/// `[0, 1)`: a dropout rate of 1 would drop everything.
const DROPOUT_RATE: Ty = Ty::Number { min: 0.0, min_exclusive: false, max: Some((1.0, true)) };
/// `[0, 1]`.
const FRACTION: Ty = Ty::Number { min: 0.0, min_exclusive: false, max: Some((1.0, false)) };
const POSITIVE: Ty = Ty::Number { min: 0.0, min_exclusive: true, max: None };

pub const BATCH_NORM: &[Field] = &[
    field("momentum", FRACTION, "Momentum of every BatchNormalization layer's moving statistics, in [0, 1]."),
    field("epsilon", POSITIVE, "Epsilon of every BatchNormalization layer, > 0."),
];

pub const VALIDATE: &[Field] = &[
    defaulted(
        "batch",
        Ty::Integer { min: 1 },
        "2",
        "Batch size of the seeded random golden inputs. Conflicts with `samples` in the same table.",
    ),
    field("samples", Ty::Path, "A `.npz` file with one array per input, used as golden inputs instead of random ones."),
    defaulted("seed", Ty::Integer { min: 0 }, "0", "Seed of the random golden inputs."),
    defaulted(
        "atol",
        POSITIVE,
        "1e-5",
        "Absolute tolerance when comparing outputs with the reference: |got - ref| <= atol + rtol * |ref|.",
    ),
    defaulted("rtol", POSITIVE, "1e-5", "Relative tolerance when comparing outputs with the reference."),
    defaulted(
        "fine-tune-step",
        Ty::Bool,
        "true",
        "Take one gradient step through the loaded SavedModel and require every trainable variable to move.",
    ),
];

/// The formats a piece can be packaged in. `saved-model` is always built: the others are
/// converted from it and validated against its golden outputs.
pub const FORMATS: &[&str] = &["saved-model", "litert"];

/// How `convert-litert` quantizes.
pub const QUANTIZE: &[&str] = &["none", "dynamic", "float16"];

pub const LITERT: &[Field] = &[
    defaulted("quantize", Ty::Enum(QUANTIZE), "\"none\"", "How the LiteRT model is quantized: `none` (float32), `dynamic` (int8 weights, float activations) or `float16` (float16 weights)."),
    field("atol", POSITIVE, "Absolute tolerance of the LiteRT comparison with the reference outputs; default 1e-4 with `quantize = \"none\"`, 1e-2 with `float16`, 0.1 with `dynamic`."),
    field("rtol", POSITIVE, "Relative tolerance of the LiteRT comparison; default 1e-4 with `quantize = \"none\"`, 1e-2 with `float16`, 0.1 with `dynamic`."),
];

pub const DOCS: &[Field] = &[
    field("description", Ty::String, "One-line description, the second line of the generated documentation."),
    field("body", Ty::Path, "A markdown file merged into the generated documentation."),
    field("task", Ty::String, "TF Hub task tag, e.g. `image-classification`, `image-feature-vector`, `text-embedding`."),
    field("license", Ty::String, "SPDX license id, e.g. `Apache-2.0` (written as TF Hub's tag id)."),
    field("dataset", Ty::String, "TF Hub dataset tag, e.g. `imagenet-ilsvrc-2012-cls`."),
    field("network-architecture", Ty::String, "TF Hub network-architecture tag, e.g. `mobilenet-v3`."),
    field("language", Ty::String, "TF Hub language tag, e.g. `en`."),
    field("fine-tunable", Ty::Bool, "Whether consumers may fine-tune; defaults to the piece's `trainable`."),
    field("training-data", Ty::OneOrMany(&Ty::String), "What the model was trained on: a sentence, or a list of datasets (names or URLs). Shown in the documentation; Kaggle's `trainingData`."),
    field("evaluation", Ty::String, "How the model was evaluated, and the results (markdown). Shown in the documentation and the Kaggle model card."),
    field("limitations", Ty::String, "Known limitations, biases and uses the model is not fit for (markdown). Shown in the documentation and the Kaggle model card."),
    field("citation", Ty::String, "How to cite the model, e.g. a BibTeX entry. Shown in the documentation and the Kaggle model card."),
];

/// `[kaggle]`: what `exportctl publish` needs beyond the documentation.
pub const KAGGLE: &[Field] = &[
    field("owner", Ty::String, "The Kaggle user or organisation that owns the models (its slug: lowercase letters, digits, `-` and `_`); default: the project's `publisher`."),
    defaulted("private", Ty::Bool, "true", "Whether the models are private on Kaggle (only their owner sees them). Applied when a model is created and on every later version."),
    field("version-notes", Ty::String, "The notes of this version on Kaggle (`kaggle models instances versions create -n`); default: `Version <version>`."),
];

const INPUT: &[Field] = &[
    required("shape", Ty::List(&Ty::Dimension), "Shape, batch dimension first; `-1` for a dimension of any size."),
    defaulted("dtype", Ty::Enum(DTYPES), "\"float32\"", "Data type of the input."),
];

pub const PIECE: &[Field] = &[
    required("name", Ty::Name, "The piece's name: `[a-z0-9-]+`, unique within its model."),
    field("from", Ty::String, "Layer whose output the piece starts from; default: the model's inputs. Needs `to`."),
    field("to", Ty::OneOrMany(&Ty::String), "Layer name (or list of names) whose outputs the piece ends at; default: the model's outputs."),
    field("trainable", Ty::Bool, "Whether the piece exports trainable variables (overrides the model and `[defaults]`)."),
    field("dropout", DROPOUT_RATE, "Rate set on every Dropout layer of the piece, in [0, 1)."),
    field("batch-norm", Ty::Table(BATCH_NORM), "Overrides of every BatchNormalization layer of the piece."),
    field(
        "formats",
        Ty::List(&Ty::Enum(FORMATS)),
        "Formats of this piece's package (overrides the model's): `[\"saved-model\"]` or `[\"saved-model\", \"litert\"]`.",
    ),
    field("litert", Ty::Table(LITERT), "LiteRT settings of this piece (override the model's, key by key)."),
    field("validate", Ty::Table(VALIDATE), "Validation settings of this piece (override the model's)."),
    field("docs", Ty::Table(DOCS), "Documentation of this piece (overrides the model's, key by key)."),
];

pub const MODEL: &[Field] = &[
    required("source", Ty::String, "The trained model: a `.keras` or `.h5` file, a SavedModel directory, or `path/to/file.py:function` (a builder)."),
    field("title", Ty::String, "The model's title on Kaggle Models; default: its name."),
    field("checkpoint", Ty::Path, "With a builder source: the checkpoint (prefix) restored after building."),
    field("restore", Ty::String, "With `checkpoint`: the checkpoint attribute holding the model's weights (e.g. `encoder`, Model Garden style)."),
    field("custom-objects", Ty::List(&Ty::Path), "Python files imported before loading (custom layers, losses)."),
    field("keras", Ty::Enum(KERAS_FLAVOURS), "Keras flavour of the source; `auto` detects it from the file."),
    field("allow-ops", Ty::List(&Ty::String), "Ops a SavedModel source may run although the op scan refuses them (files, hosts, Python), e.g. `[\"PrintV2\"]`. Only for models you trust."),
    field("include-optimizer", Ty::Bool, "Keep the optimizer in the export (overrides `[defaults]`)."),
    field("dropout", DROPOUT_RATE, "Rate set on every Dropout layer, in [0, 1) (overrides `[defaults]`)."),
    field("batch-norm", Ty::Table(BATCH_NORM), "Overrides of every BatchNormalization layer (overrides `[defaults]`)."),
    field("trainable", Ty::Bool, "Whether pieces export trainable variables (overrides `[defaults]`)."),
    field("inputs", Ty::Map { keys: Keys::TensorName, value: &Ty::Table(INPUT) }, "The model's inputs by name; inferred from the model when absent."),
    required("pieces", Ty::TableList(PIECE), "The pieces to package, each an `[[models.<name>.pieces]]` table."),
    field("formats", Ty::List(&Ty::Enum(FORMATS)), "Formats of this model's pieces (overrides `[defaults]`)."),
    field("litert", Ty::Table(LITERT), "LiteRT settings of this model's pieces."),
    field("validate", Ty::Table(VALIDATE), "Validation settings of this model's pieces."),
    field("docs", Ty::Table(DOCS), "Documentation of this model's pieces."),
];

pub const PROJECT: &[Field] = &[
    required("name", Ty::Name, "The project's name: `[a-z0-9-]+`."),
    defaulted(
        "version",
        Ty::Integer { min: 1 },
        "1",
        "Model version (an integer, TF Hub style); the last part of the documentation handle and of `dist/` paths.",
    ),
    field(
        "publisher",
        Ty::Name,
        "Publisher in the documentation handle `<publisher>/<model>-<piece>/<version>`; default: the project's name.",
    ),
    defaulted("out-dir", Ty::Path, "\"dist\"", "Where packages are written, relative to the manifest; must stay inside the project."),
    field("asset-base-url", Ty::String, "URL prefix of `asset-path` in the documentation (http, https or gs)."),
];

pub const RUNTIME: &[Field] = &[
    defaulted("python", Ty::String, "\"auto\"", "`auto`, or a path to the python executable that runs export/slice/trace."),
    defaulted("tensorflow", Ty::String, "\"2.21.0\"", "TensorFlow version the managed runtime installs."),
    defaulted("keras", Ty::Enum(KERAS_FLAVOURS), "\"auto\"", "Default Keras flavour of the models' sources."),
    defaulted("timeout", Ty::Integer { min: 1 }, "900", "Seconds one worker request (one step) may take before it is stopped."),
];

pub const CACHE: &[Field] = &[
    defaulted("max-size", Ty::String, "\"20GB\"", "Size limit of the build cache (`.exportctl/`), e.g. `\"20GB\"` or `\"500MiB\"`; the least recently used entries go first. `EXPORTCTL_CACHE_MAX_SIZE` overrides it."),
    field("remote", Ty::String, "A shared HTTP(S) cache (Bazel's HTTP cache protocol), e.g. `\"http://cache.internal:8080/exportctl\"`. `EXPORTCTL_REMOTE_CACHE` overrides it."),
    defaulted("remote-upload", Ty::Bool, "true", "Upload what this build ran to the remote cache; `false` for read-only clients such as pull-request builds. `EXPORTCTL_REMOTE_UPLOAD=0` overrides it."),
];

pub const DEFAULTS: &[Field] = &[
    defaulted("include-optimizer", Ty::Bool, "false", "Keep the optimizer in exports. Off: consumers never need it and it triples the size."),
    field("dropout", DROPOUT_RATE, "Rate set on every Dropout layer, in [0, 1)."),
    field("batch-norm", Ty::Table(BATCH_NORM), "Overrides of every BatchNormalization layer."),
    defaulted("trainable", Ty::Bool, "true", "Whether pieces export trainable variables."),
    defaulted("formats", Ty::List(&Ty::Enum(FORMATS)), "[\"saved-model\"]", "Formats every piece is packaged in: `saved-model` (always), plus `litert` for a `model.tflite` converted from it and validated against the same golden outputs."),
    field("litert", Ty::Table(LITERT), "LiteRT settings inherited by every model: `quantize`, `atol`, `rtol`."),
    field("validate", Ty::Table(VALIDATE), "Validation settings inherited by every model."),
    field("docs", Ty::Table(DOCS), "Documentation fields inherited by every model (e.g. `license`)."),
];

pub const MANIFEST: &[Field] = &[
    required("project", Ty::Table(PROJECT), "The project: its name, version, publisher and output directory."),
    field("runtime", Ty::Table(RUNTIME), "The Python + TensorFlow that runs export, slice and trace."),
    field("cache", Ty::Table(CACHE), "The build cache: its size limit and a shared remote cache."),
    field("defaults", Ty::Table(DEFAULTS), "Settings every model and piece inherits unless it overrides them."),
    field("kaggle", Ty::Table(KAGGLE), "Publishing to Kaggle Models (`exportctl publish`): the owner, visibility and version notes."),
    required("models", Ty::Map { keys: Keys::Name, value: &Ty::Table(MODEL) }, "The models to export, by name: `[models.<name>]`."),
];

/// Every `(dotted path, field)` of the schema, in declaration order (tables before their keys).
pub fn all_fields() -> Vec<(String, &'static Field)> {
    fn walk(prefix: &str, fields: &'static [Field], out: &mut Vec<(String, &'static Field)>) {
        for f in fields {
            let path = if prefix.is_empty() { f.key.to_string() } else { format!("{prefix}.{}", f.key) };
            out.push((path.clone(), f));
            match &f.ty {
                Ty::Table(inner) => walk(&path, inner, out),
                Ty::Map { value: Ty::Table(inner), .. } => walk(&format!("{path}.<name>"), inner, out),
                Ty::TableList(inner) => walk(&path, inner, out),
                _ => {}
            }
        }
    }
    let mut out = Vec::new();
    walk("", MANIFEST, &mut out);
    out
}

pub const NAME_PATTERN: &str = "^[a-z0-9][a-z0-9-]*$";

pub const TENSOR_NAME_PATTERN: &str = "^[A-Za-z_][A-Za-z0-9_.-]*$";

pub fn is_valid_tensor_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('A'..='Z' | 'a'..='z' | '_')) && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

pub fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('a'..='z' | '0'..='9')) && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '-'))
}

/// The JSON Schema (draft 2020-12) of the manifest, generated from [`MANIFEST`].
pub fn json_schema() -> serde_json::Value {
    use serde_json::json;

    fn ty_schema(ty: &Ty) -> serde_json::Value {
        match ty {
            Ty::String => json!({ "type": "string" }),
            Ty::Name => json!({ "type": "string", "pattern": NAME_PATTERN }),
            Ty::Path => json!({ "type": "string", "minLength": 1 }),
            Ty::Bool => json!({ "type": "boolean" }),
            Ty::Integer { min } => json!({ "type": "integer", "minimum": min }),
            Ty::Number { min, min_exclusive, max } => {
                let mut s = json!({ "type": "number" });
                if *min_exclusive {
                    s["exclusiveMinimum"] = json!(min);
                } else {
                    s["minimum"] = json!(min);
                }
                if let Some((max, exclusive)) = max {
                    s[if *exclusive { "exclusiveMaximum" } else { "maximum" }] = json!(max);
                }
                s
            }
            Ty::Enum(values) => json!({ "type": "string", "enum": values }),
            Ty::Dimension => json!({ "type": "integer", "anyOf": [{ "const": -1 }, { "minimum": 1 }] }),
            Ty::OneOrMany(inner) => json!({
                "anyOf": [ty_schema(inner), { "type": "array", "items": ty_schema(inner), "minItems": 1 }]
            }),
            Ty::List(inner) => json!({ "type": "array", "items": ty_schema(inner) }),
            Ty::Table(fields) => table_schema(fields),
            Ty::Map { keys, value } => json!({
                "type": "object",
                "minProperties": 1,
                "propertyNames": { "pattern": match keys { Keys::Name => NAME_PATTERN, Keys::TensorName => TENSOR_NAME_PATTERN } },
                "additionalProperties": ty_schema(value),
            }),
            Ty::TableList(fields) => json!({ "type": "array", "minItems": 1, "items": table_schema(fields) }),
        }
    }

    fn table_schema(fields: &[Field]) -> serde_json::Value {
        let mut properties = serde_json::Map::new();
        for f in fields {
            let mut s = ty_schema(&f.ty);
            s["description"] = json!(f.doc);
            if let Some(default) = f.default {
                let parsed = toml::from_str::<toml::Table>(&format!("v = {default}")).expect("schema defaults are valid TOML values");
                s["default"] = serde_json::to_value(&parsed["v"]).expect("TOML values convert to JSON");
            }
            properties.insert(f.key.to_string(), s);
        }
        let required: Vec<&str> = fields.iter().filter(|f| f.required).map(|f| f.key).collect();
        let mut s = json!({ "type": "object", "additionalProperties": false, "properties": properties });
        if !required.is_empty() {
            s["required"] = json!(required);
        }
        s
    }

    let mut schema = table_schema(MANIFEST);
    let object = schema.as_object_mut().expect("a table schema is an object");
    let mut head = serde_json::Map::new();
    head.insert("$schema".into(), json!("https://json-schema.org/draft/2020-12/schema"));
    head.insert("$id".into(), json!("https://exportctl.dev/schemas/export.schema.json"));
    head.insert("title".into(), json!("exportctl manifest (Export.toml / export.yaml)"));
    head.extend(std::mem::take(object));
    serde_json::Value::Object(head)
}
