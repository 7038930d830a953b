//! The names Rust, the Python worker, the JSON events and the docs share: validation checks
//! and warning (lint) codes.
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

/// One check of validate: its name in reports, who runs it, what it proves, and what to do
/// when it fails.
pub struct CheckSpec {
    pub name: &'static str,
    pub loader: Loader,
    pub proves: &'static str,
    pub fix: &'static str,
}

const TOLERANCE: &str = "outputs are compared with |got - ref| <= atol + rtol*|ref|; if the difference is numerical noise, raise `validate.atol` / `validate.rtol` for this piece";
const OPTIMIZER: &str = "the package must not carry optimizer state: leave `include-optimizer` false";

/// Every check validate runs, in report order.
pub const CHECKS: &[CheckSpec] = &[
    CheckSpec {
        name: "load",
        loader: Loader::Native,
        proves: "the SavedModel loads with tag `serve` through the TensorFlow C API, as TF Serving loads it",
        fix: "the error says which file or op; a model that keeps Keras 3's own object cannot be run natively (export it through exportctl)",
    },
    CheckSpec { name: "no_optimizer_state", loader: Loader::Native, proves: "no optimizer slot or iteration variable was saved with the weights", fix: OPTIMIZER },
    CheckSpec {
        name: "signature",
        loader: Loader::Native,
        proves: "`serving_default` exists, with the declared inputs' names, dtypes and shapes",
        fix: "declare the inputs in `[models.<name>.inputs]` as the model takes them",
    },
    CheckSpec { name: "outputs", loader: Loader::Native, proves: "`serving_default`, run natively, reproduces the golden outputs", fix: TOLERANCE },
    CheckSpec {
        name: "load",
        loader: Loader::Python,
        proves: "`tf.saved_model.load` reads the package",
        fix: "the error says why; custom objects must be traced (exportctl traces every piece)",
    },
    CheckSpec {
        name: "api",
        loader: Loader::Python,
        proves: "the Reusable SavedModel API is there: `__call__`, `variables`, `trainable_variables`, `regularization_losses`",
        fix: "a SavedModel written by hand must expose these attributes (the TF Hub guide's Reusable SavedModel API)",
    },
    CheckSpec { name: "call_training_false", loader: Loader::Python, proves: "`__call__(x, training=False)` reproduces the golden outputs", fix: TOLERANCE },
    CheckSpec { name: "serving_default", loader: Loader::Python, proves: "the `serving_default` signature reproduces the golden outputs in Python too", fix: TOLERANCE },
    CheckSpec {
        name: "call_training_true",
        loader: Loader::Python,
        proves: "`__call__(x, training=True)` runs (dropout and batch normalization in training mode)",
        fix: "the traceback names the layer that cannot run in training mode",
    },
    CheckSpec {
        name: "training_flag",
        loader: Loader::Python,
        proves: "`training` is honoured: inference is deterministic (within the tolerance), and training differs where dropout or batch normalization say it must",
        fix: "a layer that ignores `training` (or is random in inference) breaks fine-tuning: pass `training` through custom layers",
    },
    CheckSpec {
        name: "variables_superset",
        loader: Loader::Python,
        proves: "`variables` holds every trainable variable",
        fix: "a hand-written SavedModel must list every variable in `variables`",
    },
    CheckSpec {
        name: "trainable_variables",
        loader: Loader::Python,
        proves: "a fine-tunable piece exposes its trainable variables; a frozen one (`trainable = false`) exposes none",
        fix: "set `trainable` on the piece as consumers should get it",
    },
    CheckSpec {
        name: "regularization_losses",
        loader: Loader::Python,
        proves: "the model's regularization losses survived, each a callable giving the Keras model's value",
        fix: "regularizers must be Keras regularizers on the layers (activity regularizers depend on inputs and cannot be exported)",
    },
    CheckSpec { name: "no_optimizer_state", loader: Loader::Python, proves: "no optimizer variable is reachable from the loaded object", fix: OPTIMIZER },
    CheckSpec {
        name: "fine_tune_step",
        loader: Loader::Python,
        proves: "one SGD step through the raw Reusable API reaches and moves the trainable variables",
        fix: "a variable without a gradient is cut off from the output: check the piece's cut (`from`/`to`)",
    },
    CheckSpec {
        name: "hub_keras_layer",
        loader: Loader::Python,
        proves: "`hub.KerasLayer(path, trainable=True)` in a tf_keras model reproduces the golden outputs, and one fit step moves every trainable weight",
        fix: "tf_keras users load packages with hub.KerasLayer(path, trainable=True): every trainable weight must move in one fit step, and its losses must be the regularization losses",
    },
    CheckSpec {
        name: "keras3_tfsm_layer",
        loader: Loader::Python,
        proves: "`keras.layers.TFSMLayer` in a Keras 3 model reproduces the golden outputs; every trainable weight gets a gradient and a fit step moves weights",
        fix: "Keras 3 users load packages with keras.layers.TFSMLayer(path, call_endpoint=\"serving_default\") (model.md shows how): serving_default must return the golden outputs, and a fine-tunable piece's trainable variables must be the layer's trainable weights",
    },
    CheckSpec {
        name: "signature",
        loader: Loader::LiteRt,
        proves: "`model.tflite`'s inputs and outputs have the SavedModel signature's names, dtypes and shapes",
        fix: "the converter renamed or reshaped a tensor: the message names it; dynamic dimensions other than the batch cannot be converted",
    },
    CheckSpec {
        name: "outputs",
        loader: Loader::LiteRt,
        proves: "the LiteRT interpreter reproduces the golden outputs within the LiteRT tolerances (looser for quantized models)",
        fix: "raise `litert.atol` / `litert.rtol` for a quantized piece, or quantize less (`quantize = \"float16\"` or `\"none\"`)",
    },
];

/// What to do when the check `name` fails.
pub fn check_fix(name: &str) -> Option<&'static str> {
    CHECKS.iter().find(|c| c.name == name).map(|c| c.fix)
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
    let names = |loader: Loader| -> Vec<&str> { CHECKS.iter().filter(|c| c.loader == loader).map(|c| c.name).collect() };
    out.push_str("# The checks the Python side of validate may record, in report order.\nCHECKS = (\n");
    for name in names(Loader::Python) {
        out.push_str(&format!("    \"{name}\",\n"));
    }
    out.push_str(")\n\n# Every warning code.\nLINTS = (\n");
    for lint in Lint::ALL {
        out.push_str(&format!("    \"{}\",\n", lint.code()));
    }
    out.push_str(")\n");
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
    fn entries_written_before_the_codes_had_names_still_read() {
        assert_eq!(serde_json::from_value::<Lint>(serde_json::json!("trace")).unwrap(), Lint::TraceNote);
        assert_eq!(serde_json::from_value::<Lint>(serde_json::json!("export")).unwrap(), Lint::ExportNote);
    }
}
