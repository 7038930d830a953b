"""Names shared with exportctl's Rust side: GENERATED from src/contract.rs, do not edit.

Regenerate with `EXPORTCTL_BLESS=1 cargo test --test integration contract`.
"""

# The checks the Python side of validate may record, in report order.
CHECKS = (
    "load",
    "api",
    "call_training_false",
    "serving_default",
    "call_training_true",
    "training_flag",
    "variables_superset",
    "trainable_variables",
    "regularization_losses",
    "no_optimizer_state",
    "fine_tune_step",
    "hub_keras_layer",
    "keras3_tfsm_layer",
)

# Every warning code.
LINTS = (
    "softmax-output",
    "argmax-output",
    "top-k-output",
    "lost-regularization",
    "dropout-not-set",
    "batch-norm-not-set",
    "missing-docs",
    "unknown-tag",
    "unknown-task",
    "unknown-license",
    "kaggle-slug",
    "kaggle-license",
    "export-note",
    "slice-note",
    "trace-note",
    "corrupt-cache-entry",
    "remote-cache-unreachable",
    "remote-cache-error",
    "remote-cache-untrusted",
    "watch-failed",
)

# The flavours of a source model, as export reports them (`flavour`).
KERAS3 = "keras3"
TF_KERAS = "tf-keras"
SAVED_MODEL = "saved-model"
FLAVOURS = (KERAS3, TF_KERAS, SAVED_MODEL)
