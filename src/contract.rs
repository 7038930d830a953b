//! The names Rust, the Python worker, the JSON events and the docs share: validation checks
//! ([`CheckName`]), warning (lint) codes ([`Lint`]) and the flavours of a source model
//! ([`Flavour`]).
//!
//! Each is one table here. `docs/validation.md` and `docs/lints.md` list exactly these rows,
//! and the worker's `exportctl_worker/contract.py` is generated from them (a test fails when
//! any of the three drifts, and says how to regenerate): a check the worker records under a
//! name not in [`CHECKS`] fails loudly instead of reaching a report nobody can explain.

use serde::{Deserialize, Serialize};

/// Who runs a check of validate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loader {
    /// The TensorFlow C API, in exportctl's own process (`native` in the report).
    Native,
    /// The Python worker: `tf.saved_model.load` and the consumers (`reusable` in the report).
    Python,
    /// The LiteRT interpreter, on `model.tflite` (validate-litert's `litert-report.json`).
    LiteRt,
}

/// The name of a check of validate, as reports, JSON events, the worker and the docs spell
/// it. Names repeat across loaders (`load` is the C API's and `tf.saved_model.load`'s): a
/// check is its name and its [`Loader`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckName {
    Load,
    NoOptimizerState,
    Signature,
    Outputs,
    Inputs,
    Api,
    CallTrainingFalse,
    ServingDefault,
    CallTrainingTrue,
    TrainingFlag,
    VariablesSuperset,
    TrainableVariables,
    RegularizationLosses,
    FineTuneStep,
    HubKerasLayer,
    #[serde(rename = "keras3_tfsm_layer")]
    Keras3TfsmLayer,
}

impl CheckName {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckName::Load => "load",
            CheckName::NoOptimizerState => "no_optimizer_state",
            CheckName::Signature => "signature",
            CheckName::Outputs => "outputs",
            CheckName::Inputs => "inputs",
            CheckName::Api => "api",
            CheckName::CallTrainingFalse => "call_training_false",
            CheckName::ServingDefault => "serving_default",
            CheckName::CallTrainingTrue => "call_training_true",
            CheckName::TrainingFlag => "training_flag",
            CheckName::VariablesSuperset => "variables_superset",
            CheckName::TrainableVariables => "trainable_variables",
            CheckName::RegularizationLosses => "regularization_losses",
            CheckName::FineTuneStep => "fine_tune_step",
            CheckName::HubKerasLayer => "hub_keras_layer",
            CheckName::Keras3TfsmLayer => "keras3_tfsm_layer",
        }
    }
}

impl std::fmt::Display for CheckName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One check of validate: its name in reports, who runs it, what it proves, and what to do
/// when it fails.
pub struct CheckSpec {
    pub name: CheckName,
    pub loader: Loader,
    pub proves: &'static str,
    pub fix: &'static str,
}

const TOLERANCE: &str = "outputs are compared with |got - ref| <= atol + rtol*|ref|; if the difference is numerical noise, raise `validate.atol` / `validate.rtol` for this piece";
const OPTIMIZER: &str = "the package must not carry optimizer state: leave `include-optimizer` false";

/// Every check validate runs, in report order.
pub const CHECKS: &[CheckSpec] = &[
    CheckSpec {
        name: CheckName::Load,
        loader: Loader::Native,
        proves: "the SavedModel loads with tag `serve` through the TensorFlow C API, as TF Serving loads it",
        fix: "the error says which file or op; a model that keeps Keras 3's own object cannot be run natively (export it through exportctl)",
    },
    CheckSpec { name: CheckName::NoOptimizerState, loader: Loader::Native, proves: "no optimizer slot or iteration variable was saved with the weights", fix: OPTIMIZER },
    CheckSpec {
        name: CheckName::Signature,
        loader: Loader::Native,
        proves: "`serving_default` exists, with the declared inputs' names, dtypes and shapes",
        fix: "declare the inputs in `[models.<name>.inputs]` as the model takes them",
    },
    CheckSpec { name: CheckName::Outputs, loader: Loader::Native, proves: "`serving_default`, run natively, reproduces the golden outputs", fix: TOLERANCE },
    CheckSpec {
        name: CheckName::Inputs,
        loader: Loader::Native,
        proves: "`exportctl validate PATH` without `--golden`: inputs for `serving_default` can be made (seeded random values of its dtypes and shapes) and run, their outputs becoming the reference",
        fix: "give `--golden DIR` with the inputs (and reference outputs) of a model whose inputs cannot be made, such as strings",
    },
    CheckSpec {
        name: CheckName::Load,
        loader: Loader::Python,
        proves: "`tf.saved_model.load` reads the package",
        fix: "the error says why; custom objects must be traced (exportctl traces every piece)",
    },
    CheckSpec {
        name: CheckName::Api,
        loader: Loader::Python,
        proves: "the Reusable SavedModel API is there: `__call__`, `variables`, `trainable_variables`, `regularization_losses`",
        fix: "a SavedModel written by hand must expose these attributes (the TF Hub guide's Reusable SavedModel API)",
    },
    CheckSpec { name: CheckName::CallTrainingFalse, loader: Loader::Python, proves: "`__call__(x, training=False)` reproduces the golden outputs", fix: TOLERANCE },
    CheckSpec { name: CheckName::ServingDefault, loader: Loader::Python, proves: "the `serving_default` signature reproduces the golden outputs in Python too", fix: TOLERANCE },
    CheckSpec {
        name: CheckName::CallTrainingTrue,
        loader: Loader::Python,
        proves: "`__call__(x, training=True)` runs (dropout and batch normalization in training mode)",
        fix: "the traceback names the layer that cannot run in training mode",
    },
    CheckSpec {
        name: CheckName::TrainingFlag,
        loader: Loader::Python,
        proves: "`training` is honoured: inference is deterministic (within the tolerance), and training differs where dropout or batch normalization say it must",
        fix: "a layer that ignores `training` (or is random in inference) breaks fine-tuning: pass `training` through custom layers",
    },
    CheckSpec {
        name: CheckName::VariablesSuperset,
        loader: Loader::Python,
        proves: "`variables` holds every trainable variable",
        fix: "a hand-written SavedModel must list every variable in `variables`",
    },
    CheckSpec {
        name: CheckName::TrainableVariables,
        loader: Loader::Python,
        proves: "a fine-tunable piece exposes its trainable variables; a frozen one (`trainable = false`) exposes none",
        fix: "set `trainable` on the piece as consumers should get it",
    },
    CheckSpec {
        name: CheckName::RegularizationLosses,
        loader: Loader::Python,
        proves: "the model's regularization losses survived, each a callable giving the Keras model's value",
        fix: "regularizers must be Keras regularizers on the layers (activity regularizers depend on inputs and cannot be exported)",
    },
    CheckSpec { name: CheckName::NoOptimizerState, loader: Loader::Python, proves: "no optimizer variable is reachable from the loaded object", fix: OPTIMIZER },
    CheckSpec {
        name: CheckName::FineTuneStep,
        loader: Loader::Python,
        proves: "one SGD step through the raw Reusable API reaches and moves the trainable variables",
        fix: "a variable without a gradient is cut off from the output: check the piece's cut (`from`/`to`)",
    },
    CheckSpec {
        name: CheckName::HubKerasLayer,
        loader: Loader::Python,
        proves: "`hub.KerasLayer(path, trainable=True)` in a tf_keras model reproduces the golden outputs, and one fit step moves every trainable weight",
        fix: "tf_keras users load packages with hub.KerasLayer(path, trainable=True): every trainable weight must move in one fit step, and its losses must be the regularization losses",
    },
    CheckSpec {
        name: CheckName::Keras3TfsmLayer,
        loader: Loader::Python,
        proves: "`keras.layers.TFSMLayer` in a Keras 3 model reproduces the golden outputs; every trainable weight gets a gradient and a fit step moves weights",
        fix: "Keras 3 users load packages with keras.layers.TFSMLayer(path, call_endpoint=\"serving_default\") (model.md shows how): serving_default must return the golden outputs, and a fine-tunable piece's trainable variables must be the layer's trainable weights",
    },
    CheckSpec {
        name: CheckName::Signature,
        loader: Loader::LiteRt,
        proves: "`model.tflite`'s inputs and outputs have the SavedModel signature's names, dtypes and shapes",
        fix: "the converter renamed or reshaped a tensor: the message names it; dynamic dimensions other than the batch cannot be converted",
    },
    CheckSpec {
        name: CheckName::Outputs,
        loader: Loader::LiteRt,
        proves: "the LiteRT interpreter reproduces the golden outputs within the LiteRT tolerances (looser for quantized models)",
        fix: "raise `litert.atol` / `litert.rtol` for a quantized piece, or quantize less (`quantize = \"float16\"` or `\"none\"`)",
    },
];

/// What to do when the check `name` fails.
pub fn check_fix(name: CheckName) -> Option<&'static str> {
    CHECKS.iter().find(|c| c.name == name).map(|c| c.fix)
}

/// What a source model is, as the worker's export reports it (`flavour`): a Keras 3 model, a
/// tf_keras (Keras 2) model, or a SavedModel that is not a Keras model. Slice and trace cut and
/// rebuild Keras models; a SavedModel goes through as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Flavour {
    Keras3,
    TfKeras,
    SavedModel,
}

impl Flavour {
    pub const ALL: &[Flavour] = &[Flavour::Keras3, Flavour::TfKeras, Flavour::SavedModel];

    pub fn as_str(self) -> &'static str {
        match self {
            Flavour::Keras3 => "keras3",
            Flavour::TfKeras => "tf-keras",
            Flavour::SavedModel => "saved-model",
        }
    }

    /// A Keras model (either Keras), which slice can cut by layer.
    pub fn is_keras(self) -> bool {
        self != Flavour::SavedModel
    }

    /// The constant naming it in the worker's `contract.py`.
    fn python_name(self) -> &'static str {
        match self {
            Flavour::Keras3 => "KERAS3",
            Flavour::TfKeras => "TF_KERAS",
            Flavour::SavedModel => "SAVED_MODEL",
        }
    }
}

impl std::fmt::Display for Flavour {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every warning code. A step's warnings are recorded with its cache entry and replayed when
/// the entry is reused; `--deny warnings` fails the step that raised one (its output stays
/// cached and valid). Build warnings ([`Lint::is_step_warning`] false) are about the build's
/// surroundings and are never denied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Lint {
    SoftmaxOutput,
    ArgmaxOutput,
    TopKOutput,
    LostRegularization,
    DropoutNotSet,
    BatchNormNotSet,
    MissingDocs,
    UnknownTag,
    UnknownTask,
    UnknownLicense,
    KaggleSlug,
    KaggleLicense,
    /// What the worker noticed while exporting, slicing or tracing (free text).
    #[serde(alias = "export")]
    ExportNote,
    #[serde(alias = "slice")]
    SliceNote,
    #[serde(alias = "trace")]
    TraceNote,
    CorruptCacheEntry,
    RemoteCacheUnreachable,
    RemoteCacheError,
    RemoteCacheUntrusted,
    WatchFailed,
}

impl Lint {
    pub const ALL: &[Lint] = &[
        Lint::SoftmaxOutput,
        Lint::ArgmaxOutput,
        Lint::TopKOutput,
        Lint::LostRegularization,
        Lint::DropoutNotSet,
        Lint::BatchNormNotSet,
        Lint::MissingDocs,
        Lint::UnknownTag,
        Lint::UnknownTask,
        Lint::UnknownLicense,
        Lint::KaggleSlug,
        Lint::KaggleLicense,
        Lint::ExportNote,
        Lint::SliceNote,
        Lint::TraceNote,
        Lint::CorruptCacheEntry,
        Lint::RemoteCacheUnreachable,
        Lint::RemoteCacheError,
        Lint::RemoteCacheUntrusted,
        Lint::WatchFailed,
    ];

    /// The code as users see it: `warning[softmax-output]`, `"code"` in JSON events.
    pub fn code(self) -> &'static str {
        match self {
            Lint::SoftmaxOutput => "softmax-output",
            Lint::ArgmaxOutput => "argmax-output",
            Lint::TopKOutput => "top-k-output",
            Lint::LostRegularization => "lost-regularization",
            Lint::DropoutNotSet => "dropout-not-set",
            Lint::BatchNormNotSet => "batch-norm-not-set",
            Lint::MissingDocs => "missing-docs",
            Lint::UnknownTag => "unknown-tag",
            Lint::UnknownTask => "unknown-task",
            Lint::UnknownLicense => "unknown-license",
            Lint::KaggleSlug => "kaggle-slug",
            Lint::KaggleLicense => "kaggle-license",
            Lint::ExportNote => "export-note",
            Lint::SliceNote => "slice-note",
            Lint::TraceNote => "trace-note",
            Lint::CorruptCacheEntry => "corrupt-cache-entry",
            Lint::RemoteCacheUnreachable => "remote-cache-unreachable",
            Lint::RemoteCacheError => "remote-cache-error",
            Lint::RemoteCacheUntrusted => "remote-cache-untrusted",
            Lint::WatchFailed => "watch-failed",
        }
    }

    /// Raised by a step (and so subject to `--deny warnings`), or by the build around it.
    pub fn is_step_warning(self) -> bool {
        !matches!(
            self,
            Lint::CorruptCacheEntry
                | Lint::RemoteCacheUnreachable
                | Lint::RemoteCacheError
                | Lint::RemoteCacheUntrusted
                | Lint::WatchFailed
        )
    }

    /// What it means, in one line (docs/lints.md has the same).
    pub fn meaning(self) -> &'static str {
        match self {
            Lint::SoftmaxOutput => "a piece's output ends in a softmax: consumers fine-tune and combine logits",
            Lint::ArgmaxOutput => "a piece's output is an argmax: it has no gradient",
            Lint::TopKOutput => "a piece's output is a top-k: it has no gradient",
            Lint::LostRegularization => "the optimizer regularizes by itself (e.g. Ftrl's L1): no SavedModel can carry it",
            Lint::DropoutNotSet => "the piece has dropout layers but the manifest does not say what rate consumers get",
            Lint::BatchNormNotSet => "the piece has batch normalization but the manifest does not set its momentum and epsilon",
            Lint::MissingDocs => "a documentation field the model page needs is not set",
            Lint::UnknownTag => "a documentation tag is not written as a tag id (lowercase letters, digits and dashes)",
            Lint::UnknownTask => "`docs.task` is not a task id exportctl knows",
            Lint::UnknownLicense => "`docs.license` is not a licence id exportctl knows",
            Lint::KaggleSlug => "an owner or model name Kaggle would refuse as a slug",
            Lint::KaggleLicense => "a licence Kaggle Models does not list",
            Lint::ExportNote => "the worker noticed something while exporting (e.g. a training configuration it could not restore)",
            Lint::SliceNote => "the worker noticed something while cutting a piece (e.g. overrides a SavedModel source cannot take)",
            Lint::TraceNote => "the worker noticed something while tracing (e.g. activity regularizers, which depend on inputs)",
            Lint::CorruptCacheEntry => "a cache file changed on disk: the entry was evicted and its step runs again",
            Lint::RemoteCacheUnreachable => "the remote cache cannot be reached: the build uses the local cache only",
            Lint::RemoteCacheError => "the remote cache answered with an error: what it could not give is built locally",
            Lint::RemoteCacheUntrusted => "the remote cache sent bytes or an entry that do not check: ignored",
            Lint::WatchFailed => "watch mode cannot watch a folder (e.g. the inotify limit): changes there go unseen",
        }
    }
}

impl std::fmt::Display for Lint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

impl PartialEq<&str> for Lint {
    fn eq(&self, other: &&str) -> bool {
        self.code() == *other
    }
}

/// The worker's copy of the tables (`exportctl_worker/contract.py`), as it must read.
pub fn worker_contract_py() -> String {
    let mut out = String::from(
        "\"\"\"Names shared with exportctl's Rust side: GENERATED from src/contract.rs, do not edit.\n\n\
         Regenerate with `EXPORTCTL_BLESS=1 cargo test --test integration contract`.\n\"\"\"\n\n",
    );
    let names = |loader: Loader| -> Vec<&str> { CHECKS.iter().filter(|c| c.loader == loader).map(|c| c.name.as_str()).collect() };
    out.push_str("# The checks the Python side of validate may record, in report order.\nCHECKS = (\n");
    for name in names(Loader::Python) {
        out.push_str(&format!("    \"{name}\",\n"));
    }
    out.push_str(")\n\n# Every warning code.\nLINTS = (\n");
    for lint in Lint::ALL {
        out.push_str(&format!("    \"{}\",\n", lint.code()));
    }
    out.push_str(")\n\n# The flavours of a source model, as export reports them (`flavour`).\n");
    for flavour in Flavour::ALL {
        out.push_str(&format!("{} = \"{}\"\n", flavour.python_name(), flavour.as_str()));
    }
    let all: Vec<&str> = Flavour::ALL.iter().map(|f| f.python_name()).collect();
    out.push_str(&format!("FLAVOURS = ({})\n", all.join(", ")));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_what_serde_writes_and_all_is_complete() {
        for lint in Lint::ALL {
            assert_eq!(serde_json::to_value(lint).unwrap(), lint.code());
            assert_eq!(serde_json::from_value::<Lint>(serde_json::json!(lint.code())).unwrap(), *lint);
        }
        let mut codes: Vec<&str> = Lint::ALL.iter().map(|l| l.code()).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), Lint::ALL.len());
    }

    #[test]
    fn check_names_and_flavours_are_what_serde_writes() {
        for spec in CHECKS {
            assert_eq!(serde_json::to_value(spec.name).unwrap(), spec.name.as_str());
            assert_eq!(serde_json::from_value::<CheckName>(serde_json::json!(spec.name.as_str())).unwrap(), spec.name);
        }
        for flavour in Flavour::ALL {
            assert_eq!(serde_json::to_value(flavour).unwrap(), flavour.as_str());
            assert_eq!(serde_json::from_value::<Flavour>(serde_json::json!(flavour.as_str())).unwrap(), *flavour);
        }
        assert!(serde_json::from_value::<Flavour>(serde_json::json!("onnx")).is_err());
    }

    #[test]
    fn entries_written_before_the_codes_had_names_still_read() {
        assert_eq!(serde_json::from_value::<Lint>(serde_json::json!("trace")).unwrap(), Lint::TraceNote);
        assert_eq!(serde_json::from_value::<Lint>(serde_json::json!("export")).unwrap(), Lint::ExportNote);
    }
}
