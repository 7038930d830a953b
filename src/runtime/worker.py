"""exportctl worker: the Python side of exportctl (export, slice, trace, validate).

Run as ``python -u worker.py``. One process serves many requests, sequentially.

PROTOCOL
========

Transport: newline-delimited JSON (UTF-8) on stdin (requests) and stdout
(responses). Exactly one response line per request, in request order.

* Nothing but responses is ever written to stdout. At start-up the real stdout
  file descriptor is duplicated to a private handle and fd 1 / ``sys.stdout`` are
  pointed at stderr, so prints from TensorFlow, Keras or user code (model.summary,
  progress bars, C++ logging) land on stderr.
* stderr carries free-form logs (lines of our own start with ``exportctl-worker:``).
* The worker exits with status 0 when stdin reaches EOF, and with status 70 (within
  0.25 s, even mid-request) when its parent process goes away (e.g. killed with -9).
* Blank input lines are ignored. A line that is not valid JSON gets a response
  with ``"id": null`` and error type ``BadRequest``; valid JSON that is not a
  request object (no ``method``, ``params`` not an object) gets ``BadRequest``
  with the request's ``id`` when it has one.
* Parameters: those marked ``(required)`` below must be present and non-null;
  every other one may be omitted or null and then takes the default shown.
  Unknown parameters are ignored.
* Non-finite floats (NaN, inf) are sent as ``null``. Shapes are JSON lists of
  ints where an unknown dimension is ``-1``; a shape of unknown rank is ``null``.
  Dtypes are NumPy/TensorFlow names (``"float32"``, ``"int64"``, ``"bool"`` ...).
* Requests are processed in order; TensorFlow is imported once (by ``hello`` or by
  the first method that needs it) and stays imported.

Request::

    {"id": <int>, "method": "<name>", "params": {...}}

Success::

    {"id": <same>, "ok": true, "result": {...}}

Failure::

    {"id": <same>, "ok": false,
     "error": {"type": "<code>", "message": "<text>",
               "traceback": ["<file>:<line> in <function>", ...],
               "data": {...}}}

``type`` is either the Python exception class name (``ValueError``,
``FileNotFoundError``, ...) or one of the worker's own codes:

    BadRequest      the request line is not a JSON object / has no method
    UnknownMethod   no such method (debug.* methods need EXPORTCTL_WORKER_DEBUG=1);
                    data: {"method", "suggestions": [names]}
    BadParams       a parameter is missing, has the wrong type or is inconsistent;
                    data: {"param": "<name>", "suggestions"?: [names]} (suggestions for
                    an unknown builder function or checkpoint item)
    BadOutDir       out_dir is not an existing directory, or is not empty; data: {"path"}
    BadSource       export: the source file is not a model file of a known kind; data: {"path"}
    MissingPackage  tf_keras is needed (a tf-keras model) but not installed; data: {"package"}
    UnknownLayer    slice: a layer name is not in the model;
                    data: {"name", "kind": "from"|"to", "suggestions": [names]}
    UnalignedCut    slice: the cut is not aligned with layers;
                    data: {"output", "from", "path": [layer names, output first]}
    UnsupportedCut  slice: the model cannot be cut by layer names (subclassed
                    model, SavedModel source); data: {"flavour"}
    UnsupportedModel  export: a builder returned something that is not a Keras
                    model, or the model cannot be re-saved
    CheckpointMismatch  export: the checkpoint does not match the restored object;
                    data: {"checkpoint", "restore"}
    InputMismatch   trace: declared inputs do not match the model's inputs;
                    data: {"declared": [...], "model": [...]}
    NeedInputs      trace: an input's shape or dtype is unknown and was not declared,
                    or is a string (needs samples); data: {"name"?}
    BadSamples      trace: the samples .npz lacks an input or has a bad shape;
                    data: {"name", "arrays"? | "shape"?}
    WeightsChanged  export/slice: a weight differs after the save/reload round trip
                    (an internal error; never expected); data: {"stage"? | "weight"?}

``traceback`` holds the last (at most 8) frames of the failing call, innermost
last, as ``"<path>:<line> in <function>"``; site-packages paths are shortened to
the package-relative path, this file is ``worker.py``. ``data`` is ``{}`` when
there is nothing structured to add; Python exceptions with a cause add
``data.cause = "<Type>: <message>"``; a failed Keras load may add ``data.hint``
(e.g. "list the .py files that define them in custom-objects").

Every method that writes files writes only inside the ``out_dir`` it is given.
``out_dir`` must be an existing, empty directory, created by the caller (else
BadOutDir): the worker never creates it, so a worker orphaned by a killed exportctl
cannot recreate a folder the next build has cleaned away. Python bytecode caching
is disabled so that importing user code writes no ``__pycache__``.

Determinism: export, slice and trace start by resetting Keras' global state
(``clear_session``: auto-generated names such as ``seed_generator_<n>`` end up in
checkpoints) and seeding (``keras.utils.set_random_seed``). Two fresh workers given
the same requests write byte-identical files (model.keras is rewritten with fixed
zip timestamps and ``date_saved``), and so does a warm worker that has traced
before: TensorFlow numbers traced functions ``__inference_*_<n>`` with a
process-wide counter, so every SavedModel trace writes is rewritten by
``exportctl_canonical.canonicalize`` (canonical function names, fingerprint.pb
recomputed with a ``uuid`` derived from its hashes). If that cannot be done, the
trace still succeeds, with a warning saying the package is not reproducible.

Layer-inventory object (``LayerInfo``), used by ``export``::

    {"name": str, "class": str,            # Python class name
     "output_shape": shape | [shape, ...] | null,   # list of shapes for multi-output layers
     "inbound": [str],                      # names of the layers feeding its first call
     "regularizers": {"kernel_regularizer": {"class": "L2", "config": {"l2": 0.01}}, ...},
                                            # *_regularizer attributes; Keras 3 regularizers given
                                            # to add_weight() directly appear as "weight:<name>"
     "dropout_rate": float | null,          # Dropout-like layers only
     "batch_norm": {"momentum": float, "epsilon": float} | null,
     "is_model": bool,                      # a nested Keras model
     "is_op": bool,                         # a Keras 3 op that is not a layer (keras.ops.add in a
                                            # functional graph: MobileNetV3's "add_3"); a valid cut point
     "layers": [LayerInfo, ...]}            # only when is_model: the nested model's layers

Tensor-spec object (``Spec``): ``{"name": str, "shape": shape, "dtype": str}``;
output specs in ``export``/``slice`` results add ``"activation": str`` (see
``output_activation`` below).

METHODS
=======

hello
-----
params: {} (ignored). Imports tensorflow and keras (the warm-up).
result::

    {"protocol": 1, "pid": int, "python": "3.11.7",
     "tensorflow": "2.21.0", "keras": "3.15.1",
     "tf_keras": "2.21.0" | null, "tensorflow_hub": "0.16.1" | null,
     "numpy": "2.4.6", "debug": bool}

``tf_keras`` and ``tensorflow_hub`` are read from the installed distributions'
metadata (null when not installed); they are imported only when needed.

export
------
params::

    {"source": {"kind": "keras-file" | "saved-model" | "builder",   # (required)
                "path": abs path,              # (required) .keras/.h5/.hdf5 file, SavedModel dir, or .py file
                "function": str | null,        # builder: (required) function name in that file
                "checkpoint": abs path | null, # builder only: checkpoint prefix or directory
                "restore": str | null},        # builder only, see "Builders" below
     "custom_objects": [abs paths of .py files],   # default []
     "keras": "auto" | "keras3" | "tf-keras",      # default "auto"
     "include_optimizer": bool,                    # default false
     "dropout": float | null,                      # rate for every Dropout-like layer
     "batch_norm": {"momentum": float | null, "epsilon": float | null} | null,
     "seed": int,                                  # default 0; keras.utils.set_random_seed
     "safe_mode": bool,                            # default true; false lets Keras deserialize
                                                   # Lambda layers (trusted files only); recorded
                                                   # for slice/trace
     "root": abs path | null,                      # the project root (see python_path)
     "out_dir": abs path}                          # (required)

Flavour resolution (``keras: "auto"``):

* ``.h5`` / ``.hdf5`` -> tf-keras (``"keras": "keras3"`` loads it with Keras 3's
  legacy-H5 loader instead).
* ``.keras`` -> ``metadata.json``'s ``keras_version`` inside the zip: major 3 ->
  keras3, major 2 -> tf-keras.
* builder -> the class of the returned model (keras.Model -> keras3,
  tf_keras.Model -> tf-keras); a given ``keras`` must agree.
* saved-model directory -> if it holds ``keras_metadata.pb`` (a tf_keras
  ``model.save()`` SavedModel) it is loaded with tf_keras as a Keras model
  (flavour tf-keras, so it can be sliced); if that fails under "auto" it falls back
  to the plain SavedModel route with a warning. Otherwise flavour "saved-model".
  ``"keras": "tf-keras"`` forces the Keras route (no fallback); ``"keras3"`` is an
  error (Keras 3 cannot load SavedModels as models).

Custom objects: every file is imported (under a private module name derived from
its content hash; importing the same content again reuses the module) before
loading; every class and function defined in it is passed as ``custom_objects``
and anything it registers with ``register_keras_serializable`` is usable. The
files (and a builder's own file) are copied to ``out_dir/code/<n>_<basename>``
so that later steps are self-contained; their original directories are recorded
(``python_path`` in inventory.json; relative to ``root`` when given, so that no
absolute path reaches an output) and put on ``sys.path`` while importing, so they
may import sibling modules. slice and trace resolve them against their own ``root``.

Builders (Model Garden's export_tfhub_lib.py style): the file is imported and
``function()`` is called with no arguments. It returns either ``model`` or
``(model, restore_root)``. ``model`` is what gets exported. With a
``checkpoint`` (a prefix such as ``ckpt/ckpt-7``, or a directory, whose latest
checkpoint is used), weights are restored with
``tf.train.Checkpoint(**items).read(checkpoint).assert_existing_objects_matched()``
where ``items`` is:

* ``restore_root`` is a dict, or has a ``checkpoint_items`` dict (a Model Garden
  pretrainer): all of its items, or only ``{restore: items[restore]}`` when
  ``restore`` is given (unknown key -> BadParams with suggestions).
* otherwise ``obj = restore_root`` if given, else ``model``; ``restore`` names the
  attribute under which obj is stored in the checkpoint: ``"encoder"`` reads
  ``tf.train.Checkpoint(encoder=obj)``; a dotted path ``"model.encoder"`` reads
  ``tf.train.Checkpoint(model=<node with .encoder=obj>)``; null means ``"model"``.

A mismatch raises CheckpointMismatch. ``restore`` without ``checkpoint`` is
BadParams.

Writes, in out_dir:

* the canonical model: ``model.keras`` (keras3; a Keras 3 zip), ``model.h5``
  (tf-keras; legacy HDF5, ``include_optimizer`` honoured) or ``saved_model/``
  (saved-model; a byte copy of the source directory). Without optimizer unless
  ``include_optimizer``; dropout/batch-norm overrides applied by changing only the
  layers' configuration. The file is reloaded and every weight is compared
  bit-for-bit with the source model (WeightsChanged otherwise). ``model.keras``
  is rewritten deterministically (fixed zip timestamps, fixed ``date_saved``).
* ``code/`` (only when there are custom objects or a builder).
* ``inventory.json``: the result object below plus ``{"code": [relative paths],
  "python_path": [dirs], "source_kind": str, "safe_mode": bool}`` (dirs relative to
  ``root``, ``/``-separated, when ``root`` is given and holds them; else absolute).

result::

    {"flavour": "keras3" | "tf-keras" | "saved-model",
     "model_file": "model.keras" | "model.h5" | "saved_model",
     "model_name": str | null,
     "layers": [LayerInfo],          # top-level layers incl. input layers, graph order
                                     # ([] for saved-model)
     "inputs": [Spec], "outputs": [Spec + "activation"],
     "params": {"total": int, "trainable": int, "non_trainable": int},
     "optimizer": {"class": str,
                   "lost_regularization": [{"name": "l1_regularization_strength", "value": 0.01}, ...],
                   "bytes_in_source": int | null} | null,
     "output_activation": str | null,
     "dropout_layers": int | null, "batch_norm_layers": int | null,
     "regularizer_count": int | null,
     "activity_regularizers": int | null,
     "weights_verified": int,        # weights compared bit-for-bit after reload
     "warnings": [str]}

* ``optimizer``: null when the source has no optimizer (or is a SavedModel).
  ``lost_regularization`` lists the optimizer-level regularization that no
  SavedModel can carry: non-zero ``l1_regularization_strength``,
  ``l2_regularization_strength``, ``l2_shrinkage_regularization_strength`` and
  ``weight_decay``. ``bytes_in_source`` sums the optimizer variables restored
  from the source (iteration counter and learning rate included; for a Keras 3
  file whose optimizer was never built, only the variables actually stored);
  null if the optimizer could not be restored.
* ``output_activation``: the activation of the first output (see ``outputs``),
  null for saved-model. Values: the activation function name (``"softmax"``,
  ``"sigmoid"``, ``"relu"``, ``"linear"`` ...) of the layer producing the output,
  looking through shape-only layers (Flatten, Reshape, Dropout-like, Identity,
  Permute, ...) and into nested models; ``"argmax"`` / ``"top_k"`` for those ops
  (Keras 3 ops or tf_keras TFOpLambda); ``"lambda"`` for a Lambda layer;
  ``"linear"`` for layers without a non-linearity.
* counts (``dropout_layers``, ``batch_norm_layers``, ``regularizer_count``,
  ``activity_regularizers``) are over all layers, nested ones included (dropout and
  batch-norm: the model's layers and nested models' layers, which the overrides apply to,
  not the private sublayers of other layers such as MultiHeadAttention's dropout);
  null for saved-model. Dropout-like = Dropout, SpatialDropout1D/2D/3D,
  GaussianDropout, AlphaDropout and subclasses. ``regularizer_count`` is the
  number of weight regularizers, i.e. the number of ``regularization_losses``
  that ``trace`` will export. Activity regularizers cannot be exported (they
  depend on the inputs) and produce a warning.

slice
-----
params::

    {"export_dir": abs path,         # (required) an export out_dir
     "flavour": "keras3" | "tf-keras" | "saved-model",   # (required) export's result
     "from": str | null,             # layer whose output becomes the piece's input
     "to": [str] | str,              # default []: layers whose outputs are the piece's
                                     # outputs; [] = the model's outputs; a string = [string]
     "dropout": float | null,        # piece-level overrides, as in export
     "batch_norm": {...} | null,
     "root": abs path | null,        # the project root: resolves the export's python_path
     "out_dir": abs path}            # (required)

``from`` null and ``to`` [] -> the whole model, re-saved as is (works for
subclassed models). Otherwise the model must be functional or Sequential; the
piece is rebuilt by replaying the original layers (same weights) from fresh
``Input`` layers: with ``from``, one input named after the from layer (several,
``<name>_<i>``, if it has several outputs; its first call is used), whose shape
and dtype are that layer's output; without ``from``, the model inputs the outputs
depend on, under their original names. A nested model is a layer like any other:
``to: ["encoder"]`` cuts at its output. Only top-level layer (or Keras 3 op)
names can be used. Errors: UnknownLayer (closest names in suggestions),
UnalignedCut (an output does not depend on ``from``, or depends on a model input
that bypasses ``from``; ``path`` lists the layers from that output back to the
offending input), UnsupportedCut. For saved-model only the whole model is
allowed; its directory is copied.

Writes ``out_dir/model.keras`` | ``model.h5`` | ``saved_model/``,
``out_dir/code/`` (copied from the export), ``out_dir/piece.json``
(``{"flavour", "model_file", "code", "python_path", "from", "to", "safe_mode"}``).

result::

    {"model_file": str, "inputs": [Spec], "outputs": [Spec + "activation"],
     "layers": int,                  # len(model.layers) of the piece (0 for saved-model)
     "params": {"total", "trainable", "non_trainable"},
     "dropout_layers": int | null, "batch_norm_layers": int | null,
     "regularizer_count": int | null, "activity_regularizers": int | null,
     "output_activation": str | null, "weights_verified": int,
     "warnings": [str]}

trace
-----
params::

    {"slice_dir": abs path,          # (required) a slice out_dir
     "flavour": "keras3" | "tf-keras" | "saved-model",   # (required)
     "trainable": bool,              # default true
     "inputs": [{"name": str, "shape": shape, "dtype": str}] | null,   # default null
     "golden": {"batch": int, "seed": int}             # default {"batch": 2, "seed": 0}
             | {"samples": abs path of .npz, "seed": int},
     "root": abs path | null,        # the project root: resolves the export's python_path
     "out_dir": abs path}            # (required)

Inputs: declared ones win; otherwise they come from the model (Keras: input
layer names, or the keys of a dict-structured input; SavedModel: the
``serving_default`` signature, else the ``__call__`` trace). A single-input model
may be given any input name (it becomes the serving_default input key);
several inputs must match the model's names. The batch (first) dimension is
always made dynamic. Unknown non-batch dimensions of generated golden inputs are
8. Generated inputs (``np.random.default_rng(seed)``): floats standard normal,
ints uniform in [0, 10), bools fair coins; strings need samples. With
``samples``, the .npz must hold one array per input name (a single-input model
accepts an .npz holding one array of any name).

Seeds: ``keras.utils.set_random_seed(seed)`` (golden seed, default 0; also for
tf_keras) before the model is loaded and before tracing.

Writes ``out_dir/saved_model/`` with the Reusable SavedModel API:

* ``__call__(inputs, training=False)``: a tf.function with concrete functions for
  training=True and training=False over the input signature. ``inputs`` is a
  Tensor for a single-input model, else a dict {input name: Tensor}. Returns the
  model's output structure (Tensor, list or dict).
* ``variables``: every tf.Variable of the model (Keras 3: the underlying
  ``v.value``; the model object itself is not saved, so the TF C API can load it).
* ``trainable_variables``: the trainable ones, or [] when ``trainable`` is false.
* ``regularization_losses``: one zero-argument tf.function per weight regularizer.
* signature ``serving_default`` (training=False): inputs named as above; outputs a
  dict keyed by output names (Keras: the model's output layer names, or the dict
  keys of a dict output; SavedModel: dict keys, or ``output_0``...).

For a saved-model slice the source is loaded with ``tf.saved_model.load`` and
re-saved through the same wrapper (``training`` is passed on only if its
``__call__`` accepts it; its ``regularization_losses`` are wrapped).

Also writes ``out_dir/golden/inputs/<name>.npy``, ``out_dir/golden/outputs/<name>.npy``
(``np.save``; outputs computed with the Keras model itself, training=False, before
saving; for a SavedModel source with the loaded source object) and
``out_dir/golden/golden.json``::

    {"format": 1, "flavour": str, "input_structure": "single" | "dict",
     "output_structure": "single" | "list" | "dict",
     "inputs": [{"name", "dtype", "shape", "file": "inputs/<name>.npy"}],
     "outputs": [{"name", "dtype", "shape", "file": "outputs/<name>.npy"}],
     "seed": int, "batch": int | null,   # null: samples whose arrays disagree on the batch size
     "source": "generated" | "samples",
     "has_dropout": bool | null, "has_batch_norm": bool | null, "trainable": bool}

(``file`` is relative to the golden directory; names containing characters
outside ``[A-Za-z0-9._-]`` get them replaced by ``_`` in file names.)

result::

    {"signature": {"inputs": [Spec], "outputs": [Spec]},   # serving_default
     "variables": int, "trainable_variables": int, "regularization_losses": int,
     "has_dropout": bool | null,     # a Dropout-like layer with rate > 0 (null: SavedModel source)
     "has_batch_norm": bool | null,
     "golden": {"inputs": [...], "outputs": [...]},   # the entries of golden.json
     "warnings": [str]}

validate
--------
params::

    {"saved_model_dir": abs path,    # (required)
     "golden_dir": abs path,         # (required) holds golden.json, as written by trace
     "atol": float, "rtol": float,   # default 1e-5 each
     "fine_tune_step": bool,         # default true
     "expect_trainable": bool,       # default true
     "require_training": bool}       # default true: __call__ must accept ``training``;
                                     # false (any SavedModel): the Reusable SavedModel
                                     # API makes it optional, so a __call__ that refuses
                                     # it is called without it

Never raises for a failed check; raises only for broken input (missing
directory, unreadable golden.json). Variables changed by a check are restored
afterwards. ``has_dropout`` / ``has_batch_norm`` are read from golden.json.

result::

    {"ok": bool,                     # all checks ok
     "checks": [{"name": str, "ok": bool, "message": str, "details": {...}}],
     "regularization_loss_values": [float | null],
     "hub": {"trainable_weights": int, "losses": int, "moved": int} | null}   # null: hub check
                                                                             # skipped or raised

Checks, in order (a skipped check has ``ok: true`` and ``details.skipped: true``;
after a failed ``load`` only ``load`` is reported; every ``details`` has
``seconds``; a check that raised has ``details.exception`` and ``details.traceback``):

* ``load``: tf.saved_model.load succeeds.
* ``api``: ``__call__``, ``variables``, ``trainable_variables``,
  ``regularization_losses`` present.
* ``call_training_false``: ``__call__(inputs, training=False)`` matches every
  golden output: ``|got - ref| <= atol + rtol*|ref|``; details per output:
  ``{"max_abs_diff", "index", "got", "expected", "tolerance", "mismatches",
  "shape", "expected_shape"}``.
* ``serving_default``: the signature exists, has the golden input names and
  output keys, and matches the golden outputs (same rule).
* ``call_training_true``: ``__call__(inputs, training=True)`` runs, same shapes,
  finite.
* ``training_flag``: training=False is deterministic (two calls equal); with
  dropout, training=True is stochastic (two calls differ); with dropout or
  batch-norm, training=True differs from training=False.
* ``variables_superset``: every trainable variable is in ``variables``.
* ``trainable_variables``: non-empty iff ``expect_trainable``.
* ``regularization_losses``: each entry returns a finite scalar
  (values in ``regularization_loss_values``).
* ``no_optimizer_state``: no checkpoint key of the SavedModel's variables is an
  optimizer slot or lives under an optimizer object.
* ``fine_tune_step`` (if requested and there are trainable variables): one SGD step
  on a random projection of the outputs plus the regularization losses gives a
  gradient for every trainable variable (no None, not all zero) and changes every
  one of them.
* ``hub_keras_layer`` (if tensorflow_hub and tf_keras are installed):
  ``hub.KerasLayer(dir, trainable=True)`` inside a tf_keras model, one ``fit``
  step (``run_eagerly=True``: graph-mode fit leaks memory in a long-lived process)
  on the golden inputs with random targets; reports trainable weights, losses,
  how many trainable weights moved.

Test-only methods (only with env EXPORTCTL_WORKER_DEBUG=1)
---------------------------------------------------------
``debug.sleep`` {"seconds": float} -> {"slept": float};
``debug.raise`` {"message": str} -> raises ValueError(message);
``debug.exit`` {"code": int} -> os._exit(code), no response;
``debug.segfault`` {} -> dereferences NULL, no response;
``debug.print`` {"text": str} -> print()s text to (redirected) stdout, then {"printed": true}.
"""

import os
import sys

# -----------------------------------------------------------------------------
# stdio: keep a private handle on the real stdout, send everything else to stderr.
# This must run before anything imports TensorFlow.
# -----------------------------------------------------------------------------


def _take_stdout():
    sys.stdout.flush()
    fd = os.dup(1)
    os.dup2(2, 1)  # native code writing to fd 1 now reaches stderr
    sys.stdout = sys.stderr
    return os.fdopen(fd, "w", encoding="utf-8", newline="\n")


_RESPONSES = _take_stdout()
sys.dont_write_bytecode = True  # importing user code must not write __pycache__
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import difflib  # noqa: E402
import gc  # noqa: E402
import hashlib  # noqa: E402
import importlib.metadata  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
import warnings  # noqa: E402
import zipfile  # noqa: E402

PROTOCOL_VERSION = 1
DEBUG = os.environ.get("EXPORTCTL_WORKER_DEBUG") == "1"
TRACEBACK_FRAMES = 8
UNKNOWN_DIM_SIZE = 8  # size used for unknown non-batch dims of generated inputs
FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
FIXED_DATE_SAVED = "1980-01-01@00:00:00"

warnings.filterwarnings("ignore", category=DeprecationWarning)
warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", message=r".*HDF5 file.*legacy.*")
warnings.filterwarnings("ignore", message=r".*`build\(\)` was called on layer.*")


def log(message):
    sys.stderr.write(f"exportctl-worker: {message}\n")
    sys.stderr.flush()


class WorkerError(Exception):
    """An error with one of the protocol's own codes and structured data."""

    def __init__(self, code, message, data=None):
        super().__init__(message)
        self.code = code
        self.data = data or {}


# -----------------------------------------------------------------------------
# Lazy, once-only imports.
# -----------------------------------------------------------------------------


class _Modules:
    def __init__(self):
        self._tf = None
        self._keras = None
        self._tf_keras = None
        self._hub = None

    @property
    def tf(self):
        if self._tf is None:
            import tensorflow as tf

            tf.get_logger().setLevel(logging.ERROR)
            try:
                import absl.logging

                absl.logging.set_verbosity(absl.logging.ERROR)
            except Exception:  # absl is a TF dependency; tolerate its absence
                pass
            self._tf = tf
        return self._tf

    @property
    def keras(self):
        if self._keras is None:
            self.tf  # noqa: B018 - import TF first, then Keras 3
            import keras

            self._keras = keras
        return self._keras

    @property
    def tf_keras(self):
        if self._tf_keras is None:
            self.tf  # noqa: B018
            try:
                import tf_keras
            except ImportError as e:
                raise WorkerError(
                    "MissingPackage",
                    "tf_keras is not installed in this Python environment; it is needed "
                    "for tf-keras models and for the hub.KerasLayer check",
                    {"package": "tf-keras"},
                ) from e
            self._tf_keras = tf_keras
        return self._tf_keras

    @property
    def hub(self):
        if self._hub is None:
            self.tf_keras  # noqa: B018
            import tensorflow_hub

            self._hub = tensorflow_hub
        return self._hub

    def keras_for(self, flavour):
        return self.keras if flavour == "keras3" else self.tf_keras


M = _Modules()


def _fresh_session():
    """Reset Keras' global state (auto-name counters, graph) so that a warm worker names things
    exactly like a fresh one: Keras 3 seed generators are auto-named (seed_generator_<n>) and that
    name lands in the SavedModel's checkpoint. Models never outlive a request, so this is safe."""
    M.keras.backend.clear_session(free_memory=False)
    if M._tf_keras is not None:
        M._tf_keras.backend.clear_session()


def _dist_version(name):
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


# -----------------------------------------------------------------------------
# Small utilities: params, files, JSON.
# -----------------------------------------------------------------------------


_MISSING = object()


def _param(params, name, kind=None, default=_MISSING, allow_none=False):
    """params[name], type-checked. Missing (or null when not allow_none) -> default or BadParams."""
    value = params.get(name, _MISSING)
    if value is _MISSING or (value is None and not allow_none):
        if default is _MISSING:
            what = "missing" if value is _MISSING else "null"
            raise WorkerError("BadParams", f"parameter '{name}' is {what}", {"param": name})
        return default
    if value is None:
        return None
    if kind is not None:
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if isinstance(value, bool) and bool not in kinds:
            ok = False
        elif float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        else:
            ok = isinstance(value, kinds)
        if not ok:
            raise WorkerError(
                "BadParams",
                f"parameter '{name}' has the wrong type ({type(value).__name__})",
                {"param": name},
            )
    return value


def _abs_path(params, name, must_exist=True, allow_none=False):
    value = _param(params, name, str, default=None if allow_none else _MISSING, allow_none=allow_none)
    if value is None:
        return None
    if not os.path.isabs(value):
        raise WorkerError("BadParams", f"parameter '{name}' must be an absolute path: {value}", {"param": name})
    if must_exist and not os.path.exists(value):
        raise FileNotFoundError(f"{name}: no such file or directory: {value}")
    return value


def _recorded_dirs(dirs, root):
    """Directories as recorded in outputs: relative to root (``/``-separated) when inside it."""
    out = []
    for d in dirs:
        rel = os.path.relpath(d, root) if root else None
        inside = rel is not None and rel != ".." and not rel.startswith(".." + os.sep)
        out.append(rel.replace(os.sep, "/") if inside else d)
    return out


def _resolved_dirs(dirs, root):
    """The inverse of _recorded_dirs: absolute directories."""
    return [d if os.path.isabs(d) or not root else os.path.normpath(os.path.join(root, d)) for d in dirs]


def _prepare_out_dir(params):
    out_dir = _abs_path(params, "out_dir", must_exist=False)
    # The caller creates out_dir. It is never created here: a worker orphaned by a killed
    # exportctl must not recreate a temporary folder the next build has cleaned away.
    if not os.path.isdir(out_dir):
        raise WorkerError("BadOutDir", f"out_dir is not an existing directory: {out_dir}", {"path": out_dir})
    if os.listdir(out_dir):
        raise WorkerError("BadOutDir", f"out_dir is not empty: {out_dir}", {"path": out_dir})
    return out_dir


def _write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps(_jsonable(obj), indent=2, sort_keys=True, allow_nan=False))
        f.write("\n")


def _read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _jsonable(obj):
    """Convert numpy scalars/arrays and non-finite floats into plain JSON values."""
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, int):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    np = sys.modules.get("numpy")
    if np is not None:
        if isinstance(obj, np.bool_):
            return bool(obj)
        if isinstance(obj, np.integer):
            return int(obj)
        if isinstance(obj, np.floating):
            return _jsonable(float(obj))
        if isinstance(obj, np.ndarray):
            return _jsonable(obj.tolist())
    if hasattr(obj, "numpy"):
        return _jsonable(obj.numpy())
    return str(obj)


def _suggest(name, candidates, n=5):
    candidates = list(dict.fromkeys(candidates))
    close = difflib.get_close_matches(name, candidates, n=n, cutoff=0.6)
    lowered = name.lower()
    for c in candidates:  # also "proj" -> "proj_a", "dense" -> "dense_1"
        if len(close) >= n:
            break
        if c not in close and min(len(c), len(lowered)) >= 3 and (lowered in c.lower() or c.lower() in lowered):
            close.append(c)
    return close


def _safe_file_name(name):
    return re.sub(r"[^A-Za-z0-9._-]", "_", name) or "_"


def _shape_list(shape):
    """A Keras/TF shape -> JSON list with -1 for unknown dims, or None for unknown rank."""
    if shape is None:
        return None
    if hasattr(shape, "rank") and hasattr(shape, "as_list"):
        if shape.rank is None:
            return None
        shape = shape.as_list()
    return [-1 if d is None else int(d) for d in shape]


def _shape_tuple(shape):
    """JSON shape -> tuple with None for unknown dims."""
    if shape is None:
        return None
    return tuple(None if (d is None or int(d) < 0) else int(d) for d in shape)


def _dtype_name(dtype):
    if dtype is None:
        return None
    if hasattr(dtype, "name") and not isinstance(dtype, str):
        return dtype.name
    return str(dtype)


# -----------------------------------------------------------------------------
# User code: custom objects and builders.
# -----------------------------------------------------------------------------

_USER_MODULES = {}  # content hash -> module


def _import_user_file(path, extra_sys_path=()):
    """Import a .py file under a private module name; same content -> same module."""
    with open(path, "rb") as f:
        content = f.read()
    digest = hashlib.sha256(content).hexdigest()[:16]
    stem = re.sub(r"\W", "_", os.path.splitext(os.path.basename(path))[0])
    stem = re.sub(r"^\d+_", "", stem) or "module"
    if digest in _USER_MODULES:
        return _USER_MODULES[digest]
    module_name = f"exportctl_user_{stem}_{digest}"
    for d in extra_sys_path:  # the user's original directories, for sibling imports
        if d and d not in sys.path:
            sys.path.append(d)
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    _USER_MODULES[digest] = module
    return module


def _module_objects(module):
    """Classes and functions defined in a user module, by name (for custom_objects)."""
    objs = {}
    for name, value in vars(module).items():
        if name.startswith("__"):
            continue
        if (isinstance(value, type) or callable(value)) and getattr(value, "__module__", None) == module.__name__:
            objs[name] = value
    return objs


def _load_code(paths, extra_sys_path=()):
    custom = {}
    for p in paths:
        custom.update(_module_objects(_import_user_file(p, extra_sys_path)))
    return custom


def _copy_code(paths, out_dir):
    """Copy user code files to out_dir/code; returns relative paths."""
    if not paths:
        return []
    os.makedirs(os.path.join(out_dir, "code"), exist_ok=True)
    rel = []
    for i, p in enumerate(paths):
        r = f"code/{i}_{os.path.basename(p)}"
        shutil.copyfile(p, os.path.join(out_dir, r))
        rel.append(r)
    return rel


# -----------------------------------------------------------------------------
# Keras model introspection (Keras 3 and tf_keras alike).
# -----------------------------------------------------------------------------

_DROPOUT_CLASSES = {"Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianDropout", "AlphaDropout"}
_BATCH_NORM_CLASSES = {"BatchNormalization", "BatchNormalizationBase", "SyncBatchNormalization"}
_PASSTHROUGH_CLASSES = {
    "Flatten", "Reshape", "Identity", "Permute", "Masking", "ActivityRegularization",
    "GaussianNoise", "Cropping1D", "Cropping2D", "Cropping3D", "RepeatVector",
} | _DROPOUT_CLASSES
_ACTIVATION_LAYERS = {"Softmax": "softmax", "ReLU": "relu", "LeakyReLU": "leaky_relu", "PReLU": "prelu", "ELU": "elu", "ThresholdedReLU": "thresholded_relu"}
_OP_ACTIVATIONS = {"argmax": "argmax", "topk": "top_k", "top_k": "top_k", "softmax": "softmax", "sigmoid": "sigmoid", "logsoftmax": "log_softmax", "log_softmax": "log_softmax", "argsort": "argsort"}


def _mro_names(obj):
    return {c.__name__ for c in type(obj).__mro__}


def _is_keras_class(obj):
    return any(c.__module__.startswith(("keras.", "tf_keras.")) for c in type(obj).__mro__ if c is not object)


def _is_dropout(layer):
    return bool(_mro_names(layer) & _DROPOUT_CLASSES) and _is_keras_class(layer) and hasattr(layer, "rate")


def _is_batch_norm(layer):
    return bool(_mro_names(layer) & _BATCH_NORM_CLASSES) and _is_keras_class(layer) and hasattr(layer, "momentum")


def _is_model(layer):
    return any(
        c.__name__ in ("Model", "Functional", "Sequential") and c.__module__.startswith(("keras.", "tf_keras."))
        for c in type(layer).__mro__
    )


def _is_layer(obj):
    """False for a Keras 3 operation in a functional graph that is not a Layer (keras.ops.add ...)."""
    return "Layer" in _mro_names(obj)


def _all_layers(model):
    """Every layer below model (nested ones included), deduplicated."""
    return list(model._flatten_layers(include_self=False, recursive=True))


def _configurable_layers(model):
    """The layers a dropout / batch-norm setting applies to: the model's own layers and, through
    nested models, theirs. Not the private sublayers of other layers (MultiHeadAttention's
    attention dropout): their owner's get_config() rebuilds them, so a rate set on them would
    not survive a save, and they are not the model's dropout layers for consumers either."""
    found = []
    for layer in getattr(model, "layers", None) or []:
        found.append(layer)
        if _is_model(layer):
            found.extend(_configurable_layers(layer))
    return found


def _history(tensor):
    h = getattr(tensor, "_keras_history", None)
    if h is None:
        return None, None, None
    return h[0], h[1], h[2]


def _node_layer(node):
    return getattr(node, "operation", None) or getattr(node, "layer", None)


def _node_inputs(node):
    if hasattr(node, "keras_inputs"):  # tf_keras
        return list(node.keras_inputs)
    return list(node.input_tensors)  # Keras 3


def _node_outputs(node):
    outs = node.outputs
    if isinstance(outs, (list, tuple)):
        return list(outs)
    return list(M.tf.nest.flatten(outs))


def _model_inputs(model):
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        return None
    if not inputs:
        return None
    return list(inputs)


def _model_outputs(model):
    try:
        outputs = model.outputs
    except (AttributeError, ValueError):
        return None
    if not outputs:
        return None
    return list(outputs)


def _is_graph_model(model):
    inputs, outputs = _model_inputs(model), _model_outputs(model)
    if not inputs or not outputs:
        return False
    if getattr(model, "_is_graph_network", True) is False:  # tf_keras subclassed
        return False
    return all(_history(t)[0] is not None for t in inputs + outputs)


def _input_struct(model):
    """The structure the model was built with: dict (keys), or flat."""
    for attr in ("_inputs_struct", "_nested_inputs"):
        s = getattr(model, attr, None)
        if isinstance(s, dict):
            return s
    functional = getattr(model, "_functional", None)
    if functional is not None:
        return _input_struct(functional)
    return None


def _input_names(model):
    inputs = _model_inputs(model)
    if inputs is None:
        return None
    struct = _input_struct(model)
    if isinstance(struct, dict):
        return list(struct.keys())
    names = []
    for t in inputs:
        layer = _history(t)[0]
        names.append(layer.name if layer is not None else getattr(t, "name", f"input_{len(names)}"))
    return names


def _input_specs(model):
    inputs = _model_inputs(model)
    if inputs is None:
        return None
    struct = _input_struct(model)
    tensors = list(struct.values()) if isinstance(struct, dict) else inputs
    return [
        {"name": n, "shape": _shape_list(t.shape), "dtype": _dtype_name(t.dtype)}
        for n, t in zip(_input_names(model), tensors)
    ]


def _output_struct(model):
    for attr in ("_outputs_struct", "_nested_outputs"):
        st = getattr(model, attr, None)
        if isinstance(st, dict):
            return st
    functional = getattr(model, "_functional", None)
    if functional is not None:
        return _output_struct(functional)
    return None


def _output_names(model, count=None):
    """Output names: the keys of a dict-structured output (in flattening order, i.e. sorted),
    else the producing layers' names; output_<i> when nothing better is known."""
    struct = _output_struct(model)
    names = None
    if isinstance(struct, dict):
        names = sorted(struct)
    if names is None:
        try:
            names = list(model.output_names)
        except (AttributeError, ValueError, TypeError):
            names = None
    if not names:
        outputs = _model_outputs(model) or []
        names = [(_history(t)[0].name if _history(t)[0] is not None else f"output_{i}") for i, t in enumerate(outputs)]
    if count is not None and len(names) != count:
        names = [f"output_{i}" for i in range(count)]
    return _dedupe(names)


def _dedupe(names):
    seen, out = {}, []
    for n in names:
        if n in seen:
            seen[n] += 1
            n = f"{n}_{seen[n]}"
        else:
            seen[n] = 0
        out.append(n)
    return out


def _activation_name(fn):
    if fn is None:
        return "linear"
    name = getattr(fn, "__name__", None)
    if name is None:
        name = type(fn).__name__
    name = name.lower()
    return {"softmax_v2": "softmax", "log_softmax_v2": "log_softmax"}.get(name, name)


def _tensor_activation(tensor, depth=0):
    """The activation that produces a symbolic tensor (see module docstring)."""
    layer, node_index, tensor_index = _history(tensor)
    if layer is None or depth > 50:
        return "linear"
    cls = type(layer).__name__
    mro = _mro_names(layer)
    if "Activation" in mro and hasattr(layer, "activation"):
        return _activation_name(layer.activation)
    for k, v in _ACTIVATION_LAYERS.items():
        if k in mro:
            return v
    if cls == "TFOpLambda" or hasattr(layer, "symbol"):
        symbol = str(getattr(layer, "symbol", "")).split(".")[-1].lower()
        if symbol in _OP_ACTIVATIONS:
            return _OP_ACTIVATIONS[symbol]
        if symbol in ("relu", "tanh", "elu", "selu", "gelu", "silu", "swish"):
            return symbol
    if "Lambda" in mro and cls != "TFOpLambda":
        return "lambda"
    if cls.lower() in _OP_ACTIVATIONS and not hasattr(layer, "kernel"):
        return _OP_ACTIVATIONS[cls.lower()]
    if _is_model(layer):
        inner = _model_outputs(layer)
        if inner and tensor_index is not None and tensor_index < len(inner):
            return _tensor_activation(inner[tensor_index], depth + 1)
        return "linear"
    if cls in _PASSTHROUGH_CLASSES or mro & _DROPOUT_CLASSES:
        try:
            node = layer._inbound_nodes[node_index]
            ins = _node_inputs(node)
            if len(ins) == 1:
                return _tensor_activation(ins[0], depth + 1)
        except (IndexError, AttributeError):
            pass
        return "linear"
    act = getattr(layer, "activation", None)
    if callable(act) or act is None and hasattr(layer, "activation"):
        return _activation_name(act)
    return "linear"


def _output_specs(model):
    outputs = _model_outputs(model)
    if outputs is None:
        return []
    names = _output_names(model, len(outputs))
    return [
        {"name": n, "shape": _shape_list(t.shape), "dtype": _dtype_name(t.dtype), "activation": _tensor_activation(t)}
        for n, t in zip(names, outputs)
    ]


def _regularizers(layer):
    regs = {}
    for key, value in sorted(vars(layer).items()):
        if key.startswith("_") or not key.endswith("_regularizer") or value is None:
            continue
        entry = {"class": type(value).__name__}
        if hasattr(value, "get_config"):
            try:
                entry["config"] = value.get_config()
            except Exception:  # a custom regularizer without config
                entry["config"] = None
        regs[key] = entry
    if not _is_model(layer):  # Keras 3: regularizers given to add_weight() directly (custom layers)
        attached = {id(v) for v in vars(layer).values() if v is not None}
        for v in list(getattr(layer, "_trainable_variables", [])) + list(getattr(layer, "_non_trainable_variables", [])):
            reg = getattr(v, "regularizer", None)
            if reg is not None and id(reg) not in attached:
                entry = {"class": type(reg).__name__}
                try:
                    entry["config"] = reg.get_config()
                except Exception:
                    entry["config"] = None
                regs[f"weight:{v.name}"] = entry
    return regs


def _graph_nodes(model):
    """ids of the nodes that make up a functional/Sequential model's own graph.

    A layer can have several inbound nodes (Keras 3 Sequential models are built twice on load;
    shared layers are called several times): only the ones in this set belong to this model."""
    ids = set()
    stack = list(_model_outputs(model) or [])
    while stack:
        layer, node_index, _ = _history(stack.pop())
        if layer is None:
            continue
        node = layer._inbound_nodes[node_index]
        if id(node) in ids:
            continue
        ids.add(id(node))
        if not node.is_input:
            stack.extend(_node_inputs(node))
    return ids


def _model_node(layer, graph):
    """The first node of layer that belongs to the graph (or its first node, if none does)."""
    nodes = getattr(layer, "_inbound_nodes", None) or []
    for node in nodes:
        if id(node) in graph:
            return node
    return nodes[0] if nodes else None


def _layer_output_shape(layer, graph):
    node = _model_node(layer, graph)
    if node is None:
        return None
    outs = _node_outputs(node)
    shapes = [_shape_list(t.shape) for t in outs]
    if len(shapes) == 1:
        return shapes[0]
    return shapes


def _layer_inbound(layer, graph):
    node = _model_node(layer, graph)
    if node is None:
        return []
    names = []
    for t in _node_inputs(node):
        parent = _history(t)[0]
        if parent is not None and parent.name not in names:
            names.append(parent.name)
    return names


def _top_level_layers(model):
    """Top-level layers/ops of a model in graph order, input layers included."""
    layers = []
    ops = getattr(model, "operations", None)
    try:
        layers = list(ops) if ops is not None else list(model.layers)
    except Exception:  # a Sequential without inputs, etc.
        layers = list(getattr(model, "layers", []))
    inputs = _model_inputs(model) or []
    known = {id(l) for l in layers}
    input_layers = []
    for t in inputs:
        layer = _history(t)[0]
        if layer is not None and id(layer) not in known:
            input_layers.append(layer)
            known.add(id(layer))
    return input_layers + layers


def _layer_info(layer, graph):
    info = {
        "name": layer.name,
        "class": type(layer).__name__,
        "output_shape": _layer_output_shape(layer, graph),
        "inbound": _layer_inbound(layer, graph),
        "regularizers": _regularizers(layer),
        "dropout_rate": float(layer.rate) if _is_dropout(layer) else None,
        "batch_norm": (
            {"momentum": float(layer.momentum), "epsilon": float(layer.epsilon)} if _is_batch_norm(layer) else None
        ),
        "is_model": _is_model(layer),
        "is_op": not _is_layer(layer),
    }
    if info["is_model"]:
        inner = _graph_nodes(layer)
        info["layers"] = [_layer_info(l, inner) for l in _top_level_layers(layer)]
    return info


def _count_params(weights):
    total = 0
    seen = set()
    for w in weights:
        if id(w) in seen:
            continue
        seen.add(id(w))
        n = 1
        for d in w.shape:
            n *= int(d)
        total += n
    return total


def _params(model):
    trainable = _count_params(model.trainable_weights)
    non_trainable = _count_params(model.non_trainable_weights)
    return {"total": trainable + non_trainable, "trainable": trainable, "non_trainable": non_trainable}


def _weight_regularizers(model, flavour):
    """(name, zero-arg callable computing the loss) for every weight regularizer."""
    out = []
    if flavour == "keras3":
        seen = set()
        for v in model.weights:
            reg = getattr(v, "regularizer", None)
            if reg is None or id(v) in seen:
                continue
            seen.add(id(v))
            out.append((v.path, reg, v))
    else:
        seen = set()
        for layer in [model] + _all_layers(model):
            for fn in getattr(layer, "_callable_losses", []):
                if id(fn) in seen:
                    continue
                seen.add(id(fn))
                out.append((f"{layer.name}/loss_{len(out)}", fn, None))
    return out


def _activity_regularizer_count(model):
    return sum(1 for l in _all_layers(model) if getattr(l, "activity_regularizer", None) is not None)


def _model_facts(model, flavour):
    outputs = _output_specs(model)
    return {
        "dropout_layers": sum(1 for l in _configurable_layers(model) if _is_dropout(l)),
        "batch_norm_layers": sum(1 for l in _configurable_layers(model) if _is_batch_norm(l)),
        "regularizer_count": len(_weight_regularizers(model, flavour)),
        "activity_regularizers": _activity_regularizer_count(model),
        "output_activation": outputs[0]["activation"] if outputs else None,
    }


def _apply_overrides(model, dropout, batch_norm):
    """Set dropout rates / batch-norm hyper-parameters: attributes only, never a weight.
    They reach the saved file through each layer's get_config(); _check_overrides verifies."""
    changed = 0
    if dropout is not None:
        dropout = float(dropout)
        if not 0.0 <= dropout < 1.0:
            raise WorkerError("BadParams", f"dropout must be in [0, 1): {dropout}", {"param": "dropout"})
        for layer in _configurable_layers(model):
            if _is_dropout(layer):
                layer.rate = dropout
                changed += 1
    if batch_norm:
        momentum, epsilon = batch_norm.get("momentum"), batch_norm.get("epsilon")
        for layer in _configurable_layers(model):
            if _is_batch_norm(layer):
                if momentum is not None:
                    layer.momentum = float(momentum)
                if epsilon is not None:
                    layer.epsilon = float(epsilon)
                changed += 1
    return changed


def _check_overrides(model, dropout, batch_norm, warnings_out):
    """After a reload: did the overrides survive the configuration round trip?"""
    for layer in _configurable_layers(model):
        if dropout is not None and _is_dropout(layer) and not math.isclose(float(layer.rate), float(dropout)):
            warnings_out.append(
                f"layer '{layer.name}': dropout rate {layer.rate} after reload, not {dropout} "
                "(its get_config() does not carry the rate)"
            )
        if batch_norm and _is_batch_norm(layer):
            for key in ("momentum", "epsilon"):
                want = batch_norm.get(key)
                if want is not None and not math.isclose(float(getattr(layer, key)), float(want), rel_tol=1e-6):
                    warnings_out.append(
                        f"layer '{layer.name}': batch-norm {key} is {getattr(layer, key)} after reload, not {want}"
                    )


def _compare_weights(a, b, what):
    """Bit-for-bit comparison of two models' weights; returns the number compared."""
    wa, wb = a.weights, b.weights
    if len(wa) != len(wb):
        raise WorkerError(
            "WeightsChanged", f"{what}: {len(wa)} weights before, {len(wb)} after reload", {"stage": what}
        )
    for x, y in zip(wa, wb):
        xa, ya = x.numpy(), y.numpy()
        if xa.dtype != ya.dtype or xa.shape != ya.shape or xa.tobytes() != ya.tobytes():
            name = getattr(x, "path", None) or x.name
            raise WorkerError(
                "WeightsChanged", f"{what}: weight '{name}' differs after the save/reload round trip", {"weight": name}
            )
    return len(wa)


# -----------------------------------------------------------------------------
# Loading and saving Keras models.
# -----------------------------------------------------------------------------


def _detect_keras_file_flavour(path):
    lower = path.lower()
    if lower.endswith((".h5", ".hdf5")):
        return "tf-keras"
    if lower.endswith(".keras"):
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
                if "metadata.json" in names:
                    meta = json.loads(z.read("metadata.json"))
                    version = str(meta.get("keras_version", ""))
                    if version.startswith("2."):
                        return "tf-keras"
                    if version.startswith("3."):
                        return "keras3"
        except zipfile.BadZipFile as e:
            raise WorkerError("BadSource", f"{path} is not a valid .keras (zip) file: {e}", {"path": path}) from e
        return "keras3"
    raise WorkerError(
        "BadSource", f"unsupported model file extension: {path} (expected .keras, .h5 or .hdf5)", {"path": path}
    )


def _load_keras(path, flavour, custom, compile=False, safe_mode=True):
    try:
        if flavour == "keras3":
            return M.keras.saving.load_model(path, custom_objects=custom, compile=compile, safe_mode=safe_mode)
        if path.endswith(".keras"):
            return M.tf_keras.models.load_model(path, custom_objects=custom, compile=compile, safe_mode=safe_mode)
        return M.tf_keras.models.load_model(path, custom_objects=custom, compile=compile)
    except Exception as e:
        text = str(e)
        if any(k in text for k in ("Unknown layer", "could not be deserialized", "Could not locate", "Unknown object", "custom_objects")):
            e.exportctl_hint = (
                "the model uses classes or functions that are not built into Keras: list the .py files that define "
                "them in custom-objects (they are imported before loading)"
            )
        elif "safe_mode" in text:
            e.exportctl_hint = (
                "the model contains a Lambda layer, which Keras refuses to deserialize in safe mode; "
                "export it with safe_mode = false if you trust the file"
            )
        raise


def _canonicalize_keras_zip(path):
    """Rewrite a .keras zip with fixed timestamps and date_saved, and config.json's
    ``shared_object_id``s (Python ``id()``s: memory addresses) numbered by first use, so that
    its bytes are reproducible."""
    with zipfile.ZipFile(path) as z:
        entries = [(info, z.read(info.filename)) for info in z.infolist()]
    tmp = path + ".tmp"
    with zipfile.ZipFile(tmp, "w") as z:
        for info, data in entries:
            if info.filename == "metadata.json":
                meta = json.loads(data)
                if "date_saved" in meta:
                    meta["date_saved"] = FIXED_DATE_SAVED
                data = json.dumps(meta).encode("utf-8")
            elif info.filename == "config.json":
                data = json.dumps(_renumber_shared_objects(json.loads(data), {})).encode("utf-8")
            new = zipfile.ZipInfo(info.filename, date_time=FIXED_ZIP_TIME)
            new.compress_type = info.compress_type
            new.create_system = 3
            new.external_attr = 0o644 << 16
            z.writestr(new, data)
    os.replace(tmp, path)


def _renumber_shared_objects(node, ids):
    """Keras numbers objects shared between layers with their id(): renumber them 1, 2, ... in
    document order (every reference to one object keeps the same number)."""
    if isinstance(node, dict):
        return {
            k: (ids.setdefault(v, len(ids) + 1) if k == "shared_object_id" and isinstance(v, int) else _renumber_shared_objects(v, ids))
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_renumber_shared_objects(v, ids) for v in node]
    return node


def _save_keras(model, flavour, out_dir, include_optimizer=False):
    if flavour == "keras3":
        name = "model.keras"
        path = os.path.join(out_dir, name)
        model.save(path)
        _canonicalize_keras_zip(path)
    else:
        name = "model.h5"
        path = os.path.join(out_dir, name)
        model.save(path, include_optimizer=include_optimizer, save_format="h5")
    return name


def _optimizer_info(model, caught):
    opt = getattr(model, "optimizer", None)
    if opt is None:
        return None
    inner = getattr(opt, "inner_optimizer", None)  # LossScaleOptimizer
    target = inner if inner is not None else opt
    try:
        config = target.get_config()
    except Exception:
        config = {}
    lost = []
    for key in ("l1_regularization_strength", "l2_regularization_strength", "l2_shrinkage_regularization_strength", "weight_decay"):
        value = config.get(key)
        try:
            value = float(value) if value is not None else None
        except (TypeError, ValueError):
            value = None
        if value:
            lost.append({"name": key, "value": value})
    variables = opt.variables
    if callable(variables):
        variables = variables()
    variables = list(variables)
    stored = None
    for w in caught:
        m = re.search(r"Skipping variable loading for optimizer.*the saved optimizer has (\d+) variables", str(w.message))
        if m:
            stored = int(m.group(1))
    if stored is not None:
        variables = variables[:stored]
    nbytes = 0
    for v in variables:
        try:
            nbytes += int(v.numpy().nbytes)
        except Exception:
            pass
    return {"class": type(target).__name__, "lost_regularization": lost, "bytes_in_source": nbytes}


def _tf_keras_saved_model(path):
    return os.path.isdir(path) and os.path.exists(os.path.join(path, "keras_metadata.pb"))


def _resolve_builder(path, function, checkpoint, restore, custom, sys_path):
    module = _import_user_file(path, sys_path)
    fn = getattr(module, function, None)
    if fn is None or not callable(fn):
        names = [n for n, v in vars(module).items() if callable(v) and not n.startswith("_")]
        raise WorkerError(
            "BadParams",
            f"{os.path.basename(path)} has no function '{function}'",
            {"param": "source.function", "suggestions": _suggest(function, names)},
        )
    returned = fn()
    root = None
    if isinstance(returned, tuple):
        if len(returned) != 2:
            raise WorkerError(
                "UnsupportedModel",
                f"{function}() returned a tuple of {len(returned)}; expected model or (model, restore_root)",
            )
        model, root = returned
    else:
        model = returned
    if checkpoint is None:
        if restore is not None:
            raise WorkerError("BadParams", "'restore' needs a 'checkpoint'", {"param": "source.restore"})
        return model
    tf = M.tf
    ckpt_path = checkpoint
    if os.path.isdir(ckpt_path):
        latest = tf.train.latest_checkpoint(ckpt_path)
        if latest is None:  # written with Checkpoint.write(): no "checkpoint" state file
            prefixes = sorted(f[: -len(".index")] for f in os.listdir(ckpt_path) if f.endswith(".index"))
            if len(prefixes) != 1:
                raise FileNotFoundError(
                    f"cannot choose a checkpoint in directory {ckpt_path}: "
                    + (f"several prefixes {prefixes}, name one" if prefixes else "no checkpoint (*.index) found")
                )
            latest = os.path.join(ckpt_path, prefixes[0])
        ckpt_path = latest
    items = None
    if isinstance(root, dict):
        items = dict(root)
    elif root is not None and isinstance(getattr(root, "checkpoint_items", None), dict):
        items = dict(root.checkpoint_items)
    if items is not None:
        if restore is not None:
            if restore not in items:
                raise WorkerError(
                    "BadParams",
                    f"'restore' = '{restore}' is not one of the builder's checkpoint items",
                    {"param": "source.restore", "suggestions": _suggest(restore, items.keys()) or sorted(items)},
                )
            items = {restore: items[restore]}
    else:
        obj = root if root is not None else model
        parts = (restore or "model").split(".")
        for part in reversed(parts[1:]):
            node = tf.Module()
            setattr(node, part, obj)
            obj = node
        items = {parts[0]: obj}
    ckpt = tf.train.Checkpoint(**items)
    status = ckpt.read(ckpt_path)
    try:
        status.assert_existing_objects_matched()
    except AssertionError as e:
        raise WorkerError(
            "CheckpointMismatch",
            f"checkpoint {ckpt_path} does not match the builder's objects "
            f"(restore = {restore!r}, checkpoint items {sorted(items)}): {e}",
            {"checkpoint": ckpt_path, "restore": restore},
        ) from e
    status.expect_partial()
    return model


def _builder_flavour(model):
    keras = M.keras
    if isinstance(model, keras.Model):
        return "keras3"
    tfk = sys.modules.get("tf_keras")
    if tfk is not None and isinstance(model, tfk.Model):
        return "tf-keras"
    # tf_keras may be reached through tf.keras with TF_USE_LEGACY_KERAS=1
    if any(c.__module__.startswith("tf_keras.") for c in type(model).__mro__):
        return "tf-keras"
    raise WorkerError(
        "UnsupportedModel",
        f"the builder returned a {type(model).__module__}.{type(model).__name__}, not a keras.Model or tf_keras.Model",
    )


def _saved_model_io(obj):
    """Infer ([Spec] | None, [Spec] | None) for inputs and outputs of a restored SavedModel:
    inputs from its __call__ trace (else serving_default), outputs from serving_default."""
    tf = M.tf
    inputs, outputs = None, None
    sig = getattr(obj, "signatures", {}) or {}
    call = getattr(obj, "__call__", None)
    concrete = list(getattr(call, "concrete_functions", []) or [])
    if concrete:
        args, kwargs = concrete[0].structured_input_signature
        first = args[0] if args else None
        if isinstance(first, tf.TensorSpec):
            inputs = [{"name": first.name or "inputs", "shape": _shape_list(first.shape), "dtype": first.dtype.name}]
        elif isinstance(first, dict):
            inputs = [
                {"name": k, "shape": _shape_list(v.shape), "dtype": v.dtype.name}
                for k, v in sorted(first.items())
                if isinstance(v, tf.TensorSpec)
            ]
        elif isinstance(first, (list, tuple)):
            inputs = [
                {"name": v.name or f"input_{i}", "shape": _shape_list(v.shape), "dtype": v.dtype.name}
                for i, v in enumerate(first)
                if isinstance(v, tf.TensorSpec)
            ]
    if "serving_default" in sig:
        fn = sig["serving_default"]
        _, kw = fn.structured_input_signature
        sig_inputs = [{"name": k, "shape": _shape_list(v.shape), "dtype": v.dtype.name} for k, v in sorted(kw.items())]
        if inputs is None:
            inputs = sig_inputs
        outs = fn.structured_outputs
        if isinstance(outs, dict):
            outputs = [{"name": k, "shape": _shape_list(v.shape), "dtype": v.dtype.name} for k, v in sorted(outs.items())]
    return inputs, outputs


# -----------------------------------------------------------------------------
# hello
# -----------------------------------------------------------------------------


def m_hello(params):
    tf, keras = M.tf, M.keras
    import numpy as np

    return {
        "protocol": PROTOCOL_VERSION,
        "pid": os.getpid(),
        "python": ".".join(str(x) for x in sys.version_info[:3]),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "tf_keras": _dist_version("tf-keras") or _dist_version("tf_keras"),
        "tensorflow_hub": _dist_version("tensorflow-hub") or _dist_version("tensorflow_hub"),
        "numpy": np.__version__,
        "debug": DEBUG,
    }


# -----------------------------------------------------------------------------
# export
# -----------------------------------------------------------------------------


def m_export(params):
    _fresh_session()
    source = _param(params, "source", dict)
    kind = _param(source, "kind", str)
    if kind not in ("keras-file", "saved-model", "builder"):
        raise WorkerError("BadParams", f"unknown source.kind '{kind}'", {"param": "source.kind"})
    path = _abs_path(source, "path")
    code_paths = list(_param(params, "custom_objects", list, default=[]))
    for p in code_paths:
        if not isinstance(p, str) or not os.path.isabs(p) or not os.path.isfile(p):
            raise WorkerError("BadParams", f"custom object file not found (absolute path expected): {p}", {"param": "custom_objects"})
    keras_choice = _param(params, "keras", str, default="auto")
    if keras_choice not in ("auto", "keras3", "tf-keras"):
        raise WorkerError("BadParams", f"unknown keras '{keras_choice}'", {"param": "keras"})
    include_optimizer = bool(_param(params, "include_optimizer", bool, default=False))
    dropout = _param(params, "dropout", (int, float), default=None, allow_none=True)
    batch_norm = _param(params, "batch_norm", dict, default=None, allow_none=True)
    seed = int(_param(params, "seed", int, default=0))
    safe_mode = bool(_param(params, "safe_mode", bool, default=True))
    root = _abs_path(params, "root", allow_none=True)
    out_dir = _prepare_out_dir(params)

    M.keras.utils.set_random_seed(seed)  # seed-generator states created while loading
    warns = []
    sys_path = sorted({os.path.dirname(p) for p in code_paths + ([path] if kind == "builder" else [])})
    custom = _load_code(code_paths, sys_path)

    if kind == "saved-model":
        if not os.path.isdir(path):
            raise WorkerError("BadSource", f"not a SavedModel directory: {path}", {"path": path})
        if keras_choice == "keras3":
            raise WorkerError(
                "BadParams", "Keras 3 cannot load a SavedModel directory as a model; use keras = 'auto' or 'tf-keras'", {"param": "keras"}
            )
        use_keras = keras_choice == "tf-keras" or (keras_choice == "auto" and _tf_keras_saved_model(path))
        if use_keras:
            try:
                return _export_keras(
                    "tf-keras",
                    lambda compile: _load_keras(path, "tf-keras", custom, compile, safe_mode),
                    params_common(include_optimizer, dropout, batch_norm, out_dir, code_paths, sys_path, kind, warns, custom, safe_mode, root),
                )
            except WorkerError:
                raise
            except Exception as e:
                if keras_choice == "tf-keras":
                    raise
                log(f"tf_keras could not load {path} as a Keras model ({type(e).__name__}: {e}); exporting it as a plain SavedModel")
                warns.append(
                    f"the tf_keras SavedModel could not be loaded as a Keras model ({type(e).__name__}: {e}); "
                    "exported as a plain SavedModel, so it cannot be sliced by layer names"
                )
                for name in os.listdir(out_dir):
                    full = os.path.join(out_dir, name)
                    shutil.rmtree(full) if os.path.isdir(full) else os.remove(full)
        return _export_saved_model(path, out_dir, dropout, batch_norm, warns)

    if kind == "keras-file":
        flavour = keras_choice if keras_choice != "auto" else _detect_keras_file_flavour(path)
        loader = lambda compile: _load_keras(path, flavour, custom, compile, safe_mode)  # noqa: E731
        return _export_keras(
            flavour, loader, params_common(include_optimizer, dropout, batch_norm, out_dir, code_paths, sys_path, kind, warns, custom, safe_mode, root)
        )

    # builder
    function = _param(source, "function", str)
    checkpoint = _abs_path(source, "checkpoint", must_exist=False, allow_none=True)
    if checkpoint is not None and not (os.path.exists(checkpoint) or os.path.exists(checkpoint + ".index")):
        raise FileNotFoundError(f"checkpoint not found: {checkpoint} (neither a directory nor a prefix with .index)")
    restore = _param(source, "restore", str, default=None, allow_none=True)
    model = _resolve_builder(path, function, checkpoint, restore, custom, sys_path)
    flavour = _builder_flavour(model)
    if keras_choice != "auto" and keras_choice != flavour:
        raise WorkerError(
            "BadParams", f"keras = '{keras_choice}' but the builder returned a {flavour} model", {"param": "keras"}
        )
    custom.update(_load_code([path], sys_path))
    return _export_keras(
        flavour,
        lambda compile: model,
        params_common(include_optimizer, dropout, batch_norm, out_dir, code_paths + [path], sys_path, kind, warns, custom, safe_mode, root),
    )


def params_common(include_optimizer, dropout, batch_norm, out_dir, code_paths, sys_path, kind, warns, custom=None, safe_mode=True, root=None):
    return {
        "root": root,
        "custom": custom or {},
        "safe_mode": safe_mode,
        "include_optimizer": include_optimizer,
        "dropout": dropout,
        "batch_norm": batch_norm,
        "out_dir": out_dir,
        "code_paths": code_paths,
        "sys_path": sys_path,
        "kind": kind,
        "warnings": warns,
    }


def _export_keras(flavour, loader, p):
    out_dir, warns = p["out_dir"], p["warnings"]
    # 1. the model with its optimizer, to learn what the optimizer held
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            info_model = loader(True)
            compiled = True
        except Exception as e:
            if p["kind"] == "builder":
                raise
            log(f"loading with compile=True failed ({type(e).__name__}: {e}); loading without compiling")
            warns.append(f"the model's training configuration could not be restored ({type(e).__name__}: {e})")
            info_model = loader(False)
            compiled = False
    for w in caught:
        if "Skipping variable loading for optimizer" not in str(w.message):
            log(f"warning while loading: {w.message}")
    optimizer = _optimizer_info(info_model, caught) if compiled else None
    # 2. the model to export
    if p["include_optimizer"] or p["kind"] == "builder" or flavour == "tf-keras" or not compiled:
        model = info_model  # tf_keras drops the optimizer at save time
    else:
        model = loader(False)
    if flavour == "keras3" and not p["include_optimizer"] and getattr(model, "optimizer", None) is not None:
        model = _without_optimizer_keras3(model, out_dir, p["custom"], p["safe_mode"])
    _apply_overrides(model, p["dropout"], p["batch_norm"])
    code = _copy_code(p["code_paths"], out_dir)
    model_file = _save_keras(model, flavour, out_dir, include_optimizer=p["include_optimizer"])
    # 3. reload the canonical file: it must load, and every weight must be identical
    custom = _load_code([os.path.join(out_dir, c) for c in code], p["sys_path"])
    reloaded = _load_keras(os.path.join(out_dir, model_file), flavour, custom, False, p["safe_mode"])
    verified = _compare_weights(model, reloaded, "export")
    _check_overrides(reloaded, p["dropout"], p["batch_norm"], warns)
    facts = _model_facts(reloaded, flavour)
    if facts["activity_regularizers"]:
        warns.append(
            f"{facts['activity_regularizers']} activity regularizer(s) cannot be exported as regularization_losses "
            "(they depend on the inputs)"
        )
    if not _is_graph_model(reloaded):
        warns.append("the model is not functional or Sequential: it can only be exported whole (no from/to cuts)")
    result = {
        "flavour": flavour,
        "model_file": model_file,
        "model_name": reloaded.name,
        "layers": [_layer_info(l, _graph_nodes(reloaded)) for l in _top_level_layers(reloaded)],
        "inputs": _input_specs(reloaded) or [],
        "outputs": _output_specs(reloaded),
        "params": _params(reloaded),
        "optimizer": optimizer,
        "weights_verified": verified,
        "warnings": warns,
        **facts,
    }
    _write_json(
        os.path.join(out_dir, "inventory.json"),
        {**result, "code": code, "python_path": _recorded_dirs(p["sys_path"], p["root"]), "source_kind": p["kind"], "safe_mode": p["safe_mode"]},
    )
    return result


def _without_optimizer_keras3(model, out_dir, custom, safe_mode):
    """A compiled Keras 3 model (a builder's) without optimizer: save, reload with compile=False."""
    tmp = os.path.join(out_dir, "uncompiled.tmp.keras")
    try:
        model.save(tmp)
        stripped = M.keras.saving.load_model(tmp, custom_objects=custom, compile=False, safe_mode=safe_mode)
        _compare_weights(model, stripped, "dropping the optimizer")
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return stripped


def _export_saved_model(path, out_dir, dropout, batch_norm, warns):
    tf = M.tf
    obj = tf.saved_model.load(path)
    if dropout is not None or batch_norm:
        warns.append("dropout/batch-norm overrides cannot be applied to a SavedModel source; ignored")
    dest = os.path.join(out_dir, "saved_model")
    shutil.copytree(path, dest, symlinks=False)
    inputs, outputs = _saved_model_io(obj)
    variables = list(getattr(obj, "variables", []) or [])
    trainable = list(getattr(obj, "trainable_variables", []) or [])

    def count(vs):
        return sum(int(v.shape.num_elements() or 0) for v in vs)

    total, train = count(variables), count(trainable)
    result = {
        "flavour": "saved-model",
        "model_file": "saved_model",
        "model_name": None,
        "layers": [],
        "inputs": inputs or [],
        "outputs": [dict(o, activation=None) for o in (outputs or [])],
        "params": {"total": total, "trainable": train, "non_trainable": max(total - train, 0)},
        "optimizer": None,
        "output_activation": None,
        "dropout_layers": None,
        "batch_norm_layers": None,
        "regularizer_count": len(list(getattr(obj, "regularization_losses", []) or [])),
        "activity_regularizers": None,
        "weights_verified": 0,
        "warnings": warns,
    }
    _write_json(os.path.join(out_dir, "inventory.json"), {**result, "code": [], "python_path": [], "source_kind": "saved-model"})
    return result


# -----------------------------------------------------------------------------
# slice
# -----------------------------------------------------------------------------


def _load_piece_model(model_dir, meta, flavour, root=None):
    code = [os.path.join(model_dir, c) for c in meta.get("code", [])]
    custom = _load_code(code, _resolved_dirs(meta.get("python_path", []), root))
    return _load_keras(os.path.join(model_dir, meta["model_file"]), flavour, custom, False, meta.get("safe_mode", True))


def _layer_index(model):
    index = {}
    for layer in _top_level_layers(model):
        index.setdefault(layer.name, layer)
    return index


def _find_layer(index, name, kind):
    if not isinstance(name, str):
        raise WorkerError("BadParams", f"'{kind}' must name a layer", {"param": kind})
    if name not in index:
        raise WorkerError(
            "UnknownLayer",
            f"no layer named '{name}' in the model"
            + (f"; did you mean {', '.join(repr(s) for s in _suggest(name, index))}?" if _suggest(name, index) else ""),
            {"name": name, "kind": kind, "suggestions": _suggest(name, index)},
        )
    return index[name]


def _first_call_outputs(layer, graph):
    """Outputs of the layer's first call inside this model's graph."""
    for node in getattr(layer, "_inbound_nodes", None) or []:
        if id(node) in graph:
            return _node_outputs(node)
    raise WorkerError(
        "UnalignedCut",
        f"layer '{layer.name}' is not on any path to the model's outputs",
        {"output": layer.name, "from": None, "path": [layer.name]},
    )


def _plan_cut(start_tensors, out_tensors, out_labels, from_name):
    """Topologically ordered nodes between start tensors and outputs; checks alignment."""
    start_ids = {id(t) for t in start_tensors}
    memo = {}  # id(node) -> (reaches_start, foreign_path or None)
    order = []

    def visit_tensor(t, stack_guard):
        if id(t) in start_ids:
            return True, None
        layer, node_index, _ = _history(t)
        if layer is None:
            return False, ["<unknown tensor>"]
        node = layer._inbound_nodes[node_index]
        key = id(node)
        if key in memo:
            return memo[key]
        if node.is_input:
            memo[key] = (False, [layer.name])
            return memo[key]
        reaches, foreign = False, None
        for parent in _node_inputs(node):
            r, f = visit_tensor(parent, stack_guard)
            reaches = reaches or r
            if f is not None and foreign is None:
                foreign = [layer.name] + f
        memo[key] = (reaches, foreign)
        order.append(node)
        return memo[key]

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 20000))
    for t, label in zip(out_tensors, out_labels):
        reaches, foreign = visit_tensor(t, None)
        if id(t) in start_ids:
            raise WorkerError(
                "UnalignedCut",
                f"output '{label}' is the 'from' layer's own output: the piece would be empty",
                {"output": label, "from": from_name, "path": [label]},
            )
        if from_name is not None and not reaches:
            raise WorkerError(
                "UnalignedCut",
                f"output '{label}' does not depend on 'from' layer '{from_name}' "
                f"(it is computed from {' <- '.join(foreign or [])})",
                {"output": label, "from": from_name, "path": foreign or []},
            )
        if foreign is not None:
            what = f"'from' layer '{from_name}'" if from_name is not None else "the requested inputs"
            raise WorkerError(
                "UnalignedCut",
                f"output '{label}' needs model input '{foreign[-1]}', which bypasses {what}: "
                f"path {' <- '.join(foreign)}",
                {"output": label, "from": from_name, "path": foreign},
            )
    return order


def _replay(order, mapping):
    """Call every node's layer again on new symbolic tensors (same layer objects, same weights)."""
    tf = M.tf
    for node in order:
        layer = _node_layer(node)
        if hasattr(node, "arguments"):  # Keras 3
            args, kwargs = node.arguments.fill_in(mapping)
        else:  # tf_keras

            def sub(x):
                return mapping.get(id(x), x)

            args = tf.nest.map_structure(sub, list(node.call_args))
            kwargs = tf.nest.map_structure(sub, dict(node.call_kwargs))
        outs = layer(*args, **kwargs)
        flat_new = M.tf.nest.flatten(outs) if not isinstance(outs, (list, tuple)) else list(M.tf.nest.flatten(outs))
        for old, new in zip(_node_outputs(node), flat_new):
            mapping[id(old)] = new


def _build_piece(model, flavour, from_name, to_names):
    kmod = M.keras_for(flavour)
    index = _layer_index(model)
    graph = _graph_nodes(model)
    from_layer = _find_layer(index, from_name, "from") if from_name is not None else None
    out_layers = [_find_layer(index, n, "to") for n in to_names]
    if out_layers:
        out_tensors, out_labels = [], []
        for layer in out_layers:
            outs = _first_call_outputs(layer, graph)
            out_tensors += outs
            out_labels += [layer.name] if len(outs) == 1 else [f"{layer.name}[{i}]" for i in range(len(outs))]
    else:
        out_tensors = _model_outputs(model)
        out_labels = _output_names(model, len(out_tensors))
    if from_layer is not None:
        start = _first_call_outputs(from_layer, graph)
        names = [from_layer.name] if len(start) == 1 else [f"{from_layer.name}_{i}" for i in range(len(start))]
    else:
        start = _model_inputs(model)
        names = [_history(t)[0].name for t in start]
    order = _plan_cut(start, out_tensors, out_labels, from_name)
    # only inputs that are used (from=None: the model inputs the outputs depend on)
    used = set()
    for node in order:
        for t in _node_inputs(node):
            used.add(id(t))
    used |= {id(t) for t in out_tensors}
    mapping, new_inputs = {}, []
    for t, name in zip(start, names):
        if id(t) not in used and from_layer is None:
            continue
        shape = _shape_tuple(_shape_list(t.shape))
        new = kmod.Input(shape=shape[1:], dtype=_dtype_name(t.dtype), name=name)
        mapping[id(t)] = new
        new_inputs.append(new)
    _replay(order, mapping)
    new_outputs = [mapping[id(t)] for t in out_tensors]
    return kmod.Model(
        inputs=new_inputs[0] if len(new_inputs) == 1 else new_inputs,
        outputs=new_outputs[0] if len(new_outputs) == 1 else new_outputs,
        name=model.name,
    )


def m_slice(params):
    _fresh_session()
    export_dir = _abs_path(params, "export_dir")
    flavour = _param(params, "flavour", str)
    from_name = _param(params, "from", str, default=None, allow_none=True)
    to_names = _param(params, "to", list, default=[])
    if isinstance(to_names, str):
        to_names = [to_names]
    dropout = _param(params, "dropout", (int, float), default=None, allow_none=True)
    batch_norm = _param(params, "batch_norm", dict, default=None, allow_none=True)
    root = _abs_path(params, "root", allow_none=True)
    out_dir = _prepare_out_dir(params)
    inventory_path = os.path.join(export_dir, "inventory.json")
    meta = _read_json(inventory_path) if os.path.exists(inventory_path) else {}
    warns = []

    if flavour == "saved-model":
        if from_name is not None or to_names:
            raise WorkerError(
                "UnsupportedCut",
                "a SavedModel source has no layers: only the whole model can be a piece (no 'from'/'to')",
                {"flavour": flavour},
            )
        if dropout is not None or batch_norm:
            warns.append("dropout/batch-norm overrides cannot be applied to a SavedModel source; ignored")
        M.tf  # noqa: B018
        shutil.copytree(os.path.join(export_dir, "saved_model"), os.path.join(out_dir, "saved_model"))
        _write_json(
            os.path.join(out_dir, "piece.json"),
            {"flavour": flavour, "model_file": "saved_model", "code": [], "python_path": [], "from": None, "to": []},
        )
        return {
            "model_file": "saved_model",
            "inputs": meta.get("inputs", []),
            "outputs": meta.get("outputs", []),
            "layers": 0,
            "params": meta.get("params", {"total": 0, "trainable": 0, "non_trainable": 0}),
            "dropout_layers": None,
            "batch_norm_layers": None,
            "regularizer_count": meta.get("regularizer_count"),
            "activity_regularizers": None,
            "output_activation": None,
            "weights_verified": 0,
            "warnings": warns,
        }
    if flavour not in ("keras3", "tf-keras"):
        raise WorkerError("BadParams", f"unknown flavour '{flavour}'", {"param": "flavour"})
    meta.setdefault("model_file", "model.keras" if flavour == "keras3" else "model.h5")
    M.keras.utils.set_random_seed(0)
    model = _load_piece_model(export_dir, meta, flavour, root)
    if from_name is None and not to_names:
        piece = model
    else:
        if not _is_graph_model(model):
            raise WorkerError(
                "UnsupportedCut",
                f"model '{model.name}' is not a functional or Sequential model: it cannot be cut by layer names; "
                "build the piece separately (a builder function) or export it whole",
                {"flavour": flavour},
            )
        piece = _build_piece(model, flavour, from_name, list(to_names))
    _apply_overrides(piece, dropout, batch_norm)
    code = _copy_code([os.path.join(export_dir, c) for c in meta.get("code", [])], out_dir)
    model_file = _save_keras(piece, flavour, out_dir)
    piece_meta = {
        "flavour": flavour, "model_file": model_file, "code": code,
        "python_path": meta.get("python_path", []), "from": from_name, "to": list(to_names),
        "safe_mode": meta.get("safe_mode", True),
    }
    _write_json(os.path.join(out_dir, "piece.json"), piece_meta)
    reloaded = _load_piece_model(out_dir, piece_meta, flavour, root)
    verified = _compare_weights(piece, reloaded, "slice")
    _check_overrides(reloaded, dropout, batch_norm, warns)
    facts = _model_facts(reloaded, flavour)
    return {
        "model_file": model_file,
        "inputs": _input_specs(reloaded) or [],
        "outputs": _output_specs(reloaded),
        "layers": len(reloaded.layers),
        "params": _params(reloaded),
        "weights_verified": verified,
        "warnings": warns,
        **facts,
    }


# -----------------------------------------------------------------------------
# trace
# -----------------------------------------------------------------------------

_WRAPPER_CLASS = None


def _wrapper_class():
    """The Reusable SavedModel object: a tf.train.Checkpoint (its `variables` is settable)."""
    global _WRAPPER_CLASS
    if _WRAPPER_CLASS is None:
        tf = M.tf

        class ReusableSavedModel(tf.train.Checkpoint):
            def __init__(self, call, variables, trainable_variables, regularization_losses):
                super().__init__()
                self.variables = variables
                self.trainable_variables = trainable_variables
                self.regularization_losses = regularization_losses
                self.__call__ = call

        _WRAPPER_CLASS = ReusableSavedModel
    return _WRAPPER_CLASS


def _zero_arg_function(fn, arg=None):
    """A zero-argument tf.function computing fn() or fn(arg); a helper so each closure is its own."""
    tf = M.tf
    if arg is None:

        def regularization_loss():
            return fn()

    else:

        def regularization_loss():
            return fn(arg)

    return tf.function(regularization_loss, input_signature=[])


def _tf_variable(v):
    """The tf.Variable behind a Keras 3 variable (or v itself)."""
    tf = M.tf
    if isinstance(v, tf.Variable):
        return v
    for attr in ("_value", "value"):
        inner = getattr(v, attr, None)
        if isinstance(inner, tf.Variable):
            return inner
    raise WorkerError("UnsupportedModel", f"variable {getattr(v, 'path', v)} has no underlying tf.Variable")


def _unique(vs):
    seen, out = set(), []
    for v in vs:
        if id(v) not in seen:
            seen.add(id(v))
            out.append(v)
    return out


def _flatten_outputs(out, names):
    """A model output structure -> (structure kind, [(name, tensor)])."""
    if isinstance(out, dict):
        return "dict", [(k, out[k]) for k in sorted(out)]
    if isinstance(out, (list, tuple)):
        flat = list(out)
        if len(names) != len(flat):
            names = [f"output_{i}" for i in range(len(flat))]
        return "list", list(zip(names, flat))
    return "single", [((names[0] if names else "output_0"), out)]


def _resolve_trace_inputs(declared, model_inputs, single_rename=True):
    """Merge declared inputs with the model's; returns [{"name","shape","dtype","model_name"}]."""
    if declared is None:
        if model_inputs is None:
            raise WorkerError("NeedInputs", "the model's inputs are unknown; declare them ([models.X.inputs])")
        return [dict(s, model_name=s["name"]) for s in model_inputs]
    for d in declared:
        if not isinstance(d, dict) or not isinstance(d.get("name"), str):
            raise WorkerError("BadParams", "each declared input needs a name, shape and dtype", {"param": "inputs"})
    if model_inputs is None:
        return [
            {"name": d["name"], "shape": d.get("shape"), "dtype": d.get("dtype") or "float32", "model_name": d["name"]}
            for d in declared
        ]
    mismatch = lambda msg: WorkerError(  # noqa: E731
        "InputMismatch", msg, {"declared": declared, "model": model_inputs}
    )
    if len(declared) != len(model_inputs):
        raise mismatch(f"{len(declared)} input(s) declared, the model has {len(model_inputs)}: {[m['name'] for m in model_inputs]}")
    if len(declared) == 1 and single_rename:
        pairs = [(declared[0], model_inputs[0])]
    else:
        by_name = {m["name"]: m for m in model_inputs}
        pairs = []
        for d in declared:
            if d["name"] not in by_name:
                raise mismatch(
                    f"declared input '{d['name']}' is not an input of the model"
                    + (f"; did you mean {_suggest(d['name'], by_name)}?" if _suggest(d["name"], by_name) else f" (inputs: {sorted(by_name)})")
                )
            pairs.append((d, by_name[d["name"]]))
    out = []
    for d, m in pairs:
        shape = d.get("shape", m["shape"])
        mshape = m["shape"]
        if shape is not None and mshape is not None:
            if len(shape) != len(mshape):
                raise mismatch(f"input '{d['name']}': declared rank {len(shape)}, the model expects shape {mshape}")
            for i, (a, b) in enumerate(zip(shape, mshape)):
                if i > 0 and a is not None and b is not None and a >= 0 and b >= 0 and a != b:
                    raise mismatch(f"input '{d['name']}': declared shape {shape}, the model expects {mshape}")
            shape = [a if (a is not None and a >= 0) else b for a, b in zip(shape, mshape)]
        elif shape is None:
            shape = mshape
        out.append({"name": d["name"], "shape": shape, "dtype": d.get("dtype") or m["dtype"], "model_name": m["name"]})
    return out


def _golden_inputs(golden, specs):
    import numpy as np

    seed = int(golden.get("seed", 0) or 0)
    if "samples" in golden and golden["samples"]:
        path = golden["samples"]
        if not os.path.isabs(path) or not os.path.exists(path):
            raise FileNotFoundError(f"golden samples not found: {path}")
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        feeds = {}
        for s in specs:
            if s["name"] in arrays:
                feeds[s["name"]] = arrays[s["name"]]
            elif len(specs) == 1 and len(arrays) == 1:
                feeds[s["name"]] = next(iter(arrays.values()))
            else:
                raise WorkerError(
                    "BadSamples",
                    f"{os.path.basename(path)} has no array '{s['name']}' (arrays: {sorted(arrays)})",
                    {"name": s["name"], "arrays": sorted(arrays)},
                )
            arr = feeds[s["name"]]
            if s["shape"] is not None:
                if arr.ndim != len(s["shape"]) or any(
                    d >= 0 and i > 0 and d != a for i, (d, a) in enumerate(zip(s["shape"], arr.shape))
                ):
                    raise WorkerError(
                        "BadSamples",
                        f"samples '{s['name']}' have shape {list(arr.shape)}, the input expects {s['shape']}",
                        {"name": s["name"], "shape": list(arr.shape)},
                    )
            if s["dtype"] and arr.dtype.name != s["dtype"]:
                feeds[s["name"]] = arr.astype(s["dtype"])
        batches = {int(a.shape[0]) for a in feeds.values() if a.ndim > 0}
        return feeds, (batches.pop() if len(batches) == 1 else None), seed, "samples"
    batch = int(golden.get("batch", 2) or 2)
    rng = np.random.default_rng(seed)
    feeds = {}
    for s in specs:
        if s["shape"] is None:
            raise WorkerError("NeedInputs", f"input '{s['name']}' has unknown rank; declare its shape", {"name": s["name"]})
        shape = [batch] + [UNKNOWN_DIM_SIZE if (d is None or d < 0) else int(d) for d in s["shape"][1:]]
        dtype = np.dtype(s["dtype"]) if s["dtype"] != "string" else None
        if dtype is None or dtype.kind in ("U", "S", "O"):
            raise WorkerError("NeedInputs", f"input '{s['name']}' is a {s['dtype']} tensor: provide golden samples", {"name": s["name"]})
        if dtype.kind == "f":
            arr = rng.standard_normal(shape).astype(dtype)
        elif dtype.kind in ("i", "u"):
            arr = rng.integers(0, 10, size=shape).astype(dtype)
        elif dtype.kind == "b":
            arr = rng.random(shape) < 0.5
        elif dtype.kind == "c":
            arr = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dtype)
        else:
            raise WorkerError("NeedInputs", f"cannot generate inputs of dtype {s['dtype']}", {"name": s["name"]})
        feeds[s["name"]] = arr
    return feeds, batch, seed, "generated"


def _write_golden(out_dir, flavour, specs, feeds, outputs, out_kind, meta):
    import numpy as np

    gdir = os.path.join(out_dir, "golden")
    os.makedirs(os.path.join(gdir, "inputs"))
    os.makedirs(os.path.join(gdir, "outputs"))
    entries_in, entries_out = [], []
    for s in specs:
        arr = np.asarray(feeds[s["name"]])
        rel = f"inputs/{_safe_file_name(s['name'])}.npy"
        np.save(os.path.join(gdir, rel), arr, allow_pickle=False)
        entries_in.append({"name": s["name"], "dtype": arr.dtype.name, "shape": list(arr.shape), "file": rel})
    for name, value in outputs:
        arr = np.asarray(value)
        rel = f"outputs/{_safe_file_name(name)}.npy"
        np.save(os.path.join(gdir, rel), arr, allow_pickle=False)
        entries_out.append({"name": name, "dtype": arr.dtype.name, "shape": list(arr.shape), "file": rel})
    doc = {
        "format": 1,
        "flavour": flavour,
        "input_structure": "single" if len(specs) == 1 else "dict",
        "output_structure": out_kind,
        "inputs": entries_in,
        "outputs": entries_out,
        **meta,
    }
    _write_json(os.path.join(gdir, "golden.json"), doc)
    return doc


def m_trace(params):
    _fresh_session()
    slice_dir = _abs_path(params, "slice_dir")
    flavour = _param(params, "flavour", str)
    trainable = bool(_param(params, "trainable", bool, default=True))
    declared = _param(params, "inputs", list, default=None, allow_none=True)
    golden = _param(params, "golden", dict, default={"batch": 2, "seed": 0})
    root = _abs_path(params, "root", allow_none=True)
    out_dir = _prepare_out_dir(params)
    seed = int(golden.get("seed", 0) or 0)
    tf, keras = M.tf, M.keras
    keras.utils.set_random_seed(seed)
    if flavour == "saved-model":
        return _trace_saved_model(slice_dir, trainable, declared, golden, out_dir, seed)
    if flavour not in ("keras3", "tf-keras"):
        raise WorkerError("BadParams", f"unknown flavour '{flavour}'", {"param": "flavour"})
    if flavour == "tf-keras":
        M.tf_keras.utils.set_random_seed(seed)
    meta_path = os.path.join(slice_dir, "piece.json")
    meta = _read_json(meta_path) if os.path.exists(meta_path) else {
        "model_file": "model.keras" if flavour == "keras3" else "model.h5", "code": []
    }
    model = _load_piece_model(slice_dir, meta, flavour, root)
    warns = []
    if not _model_inputs(model):
        if declared is None:
            raise WorkerError("NeedInputs", f"model '{model.name}' has no known inputs (a subclassed model): declare them")
    specs = _resolve_trace_inputs(declared, _input_specs(model))
    single = len(specs) == 1
    model_struct_dict = isinstance(_input_struct(model), dict)

    def to_model_input(inputs):
        """Our __call__ convention (Tensor, or dict by input name) -> what the model was built with."""
        by_name = {specs[0]["name"]: inputs} if single else inputs
        if model_struct_dict:
            return {s["model_name"]: by_name[s["name"]] for s in specs}
        if single:
            return inputs
        return [by_name[s["name"]] for s in specs]

    feeds, batch, seed, source = _golden_inputs(golden, specs)
    feed_struct = feeds[specs[0]["name"]] if single else {s["name"]: feeds[s["name"]] for s in specs}
    if single:
        feed_tensor = tf.convert_to_tensor(feed_struct)
    else:
        feed_tensor = {k: tf.convert_to_tensor(v) for k, v in feed_struct.items()}
    # reference outputs, computed by the Keras model itself, before anything is saved
    ref = model(to_model_input(feed_tensor), training=False)
    out_names = _output_names(model, len(ref) if isinstance(ref, (list, tuple)) else None)
    out_kind, ref_flat = _flatten_outputs(ref, out_names)
    ref_flat = [(n, t.numpy() if hasattr(t, "numpy") else t) for n, t in ref_flat]
    out_names_final = [n for n, _ in ref_flat]

    layers = _all_layers(model)
    has_dropout = any(_is_dropout(l) and float(l.rate) > 0 for l in layers)
    has_bn = any(_is_batch_norm(l) for l in layers)

    # the Reusable SavedModel
    def call(inputs, training=False):
        return model(to_model_input(inputs), training=training)

    call_fn = tf.function(call)
    sig_specs = [
        tf.TensorSpec(shape=[None] + list(_shape_tuple(s["shape"])[1:]) if s["shape"] is not None else None, dtype=s["dtype"], name=s["name"])
        for s in specs
    ]
    arg_spec = sig_specs[0] if single else {s["name"]: sp for s, sp in zip(specs, sig_specs)}
    keras_vars = model.variables
    variables = _unique([_tf_variable(v) for v in keras_vars])
    trainable_vars = _unique([_tf_variable(v) for v in model.trainable_variables]) if trainable else []
    regs = []
    for name, reg, var in _weight_regularizers(model, flavour):
        if var is not None:
            regs.append(_zero_arg_function(reg, _tf_variable(var)))
        else:
            regs.append(_zero_arg_function(reg))
    wrapper = _wrapper_class()(call_fn, variables, trainable_vars, regs)
    call_fn.get_concrete_function(arg_spec, training=True)
    call_fn.get_concrete_function(arg_spec, training=False)
    for r in regs:
        r.get_concrete_function()

    serve = _make_serving(model, specs, to_model_input, out_names, sig_specs, single)
    if _activity_regularizer_count(model):
        warns.append("activity regularizers are not exported (they depend on the inputs)")
    warns += _save_reusable(wrapper, os.path.join(out_dir, "saved_model"), serve)

    golden_doc = _write_golden(
        out_dir, flavour, specs, feeds, ref_flat, out_kind,
        {"seed": seed, "batch": batch, "source": source, "has_dropout": has_dropout, "has_batch_norm": has_bn, "trainable": trainable},
    )
    return {
        "signature": _signature_summary(serve, specs, out_names_final),
        "variables": len(variables),
        "trainable_variables": len(trainable_vars),
        "regularization_losses": len(regs),
        "has_dropout": has_dropout,
        "has_batch_norm": has_bn,
        "golden": {"inputs": golden_doc["inputs"], "outputs": golden_doc["outputs"]},
        "warnings": warns,
    }


def _save_reusable(wrapper, path, serve):
    """tf.saved_model.save, then canonical bytes (exportctl_canonical). Returns warnings."""
    M.tf.saved_model.save(wrapper, path, signatures={"serving_default": serve})
    try:
        import exportctl_canonical

        done = exportctl_canonical.canonicalize(path)
    except Exception as e:  # never fail a trace over reproducibility
        done = {"canonical": False, "reason": f"{type(e).__name__}: {e}"}
    if done.get("canonical"):
        return []
    return [f"saved_model.pb is not reproducible (Export.lock and --locked will see it change): {done.get('reason')}"]


def _make_serving(model_call_target, specs, to_input, out_names, sig_specs, single, call=None):
    tf = M.tf

    def serve(*args):
        inputs = args[0] if single else {s["name"]: a for s, a in zip(specs, args)}
        if call is not None:
            out = call(inputs)
        else:
            out = model_call_target(to_input(inputs), training=False)
        _, flat = _flatten_outputs(out, out_names)
        return {n: t for n, t in flat}

    return tf.function(serve, input_signature=sig_specs).get_concrete_function()


def _signature_summary(concrete, specs, out_names):
    ins = [{"name": s["name"], "shape": [-1] + list(s["shape"][1:]) if s["shape"] is not None else None, "dtype": s["dtype"]} for s in specs]
    outs_struct = concrete.structured_outputs
    outs = []
    for n in out_names:
        t = outs_struct.get(n) if isinstance(outs_struct, dict) else None
        if t is None:
            continue
        outs.append({"name": n, "shape": _shape_list(t.shape), "dtype": t.dtype.name})
    return {"inputs": ins, "outputs": outs}


def _trace_saved_model(slice_dir, trainable, declared, golden, out_dir, seed):
    tf = M.tf
    src_dir = os.path.join(slice_dir, "saved_model")
    obj = tf.saved_model.load(src_dir)
    inferred, _ = _saved_model_io(obj)
    specs = _resolve_trace_inputs(declared, inferred)
    single = len(specs) == 1
    call_src = getattr(obj, "__call__", None)
    use_signature = not list(getattr(call_src, "concrete_functions", []) or [])
    signature = (getattr(obj, "signatures", {}) or {}).get("serving_default")
    if use_signature and signature is None:
        raise WorkerError("UnsupportedModel", "the SavedModel has neither a __call__ function nor a serving_default signature")

    # what the source __call__ expects as inputs
    src_kind = "single"
    if not use_signature:
        args, _ = call_src.concrete_functions[0].structured_input_signature
        first = args[0] if args else None
        src_kind = "dict" if isinstance(first, dict) else "list" if isinstance(first, (list, tuple)) else "single"

    def to_src(inputs):
        if single and src_kind == "single":
            return inputs
        d = {specs[0]["name"]: inputs} if single else inputs
        if src_kind == "dict":
            return {s["model_name"]: d[s["name"]] for s in specs}
        if src_kind == "list":
            return [d[s["name"]] for s in specs]
        return d[specs[0]["name"]]

    feeds, batch, seed, source = _golden_inputs(golden, specs)
    feed = tf.convert_to_tensor(feeds[specs[0]["name"]]) if single else {k: tf.convert_to_tensor(v) for k, v in feeds.items()}

    accepts_training = False
    if use_signature:

        def invoke(inputs, training):
            d = {specs[0]["model_name"]: inputs} if single else {s["model_name"]: inputs[s["name"]] for s in specs}
            return signature(**d)

        ref = invoke(feed, False)
    else:
        try:
            ref = call_src(to_src(feed), training=False)
            accepts_training = True
        except (TypeError, ValueError):
            ref = call_src(to_src(feed))

        def invoke(inputs, training):
            if accepts_training:
                return call_src(to_src(inputs), training=training)
            return call_src(to_src(inputs))

    out_kind, ref_flat = _flatten_outputs(ref, [])
    ref_flat = [(n, t.numpy()) for n, t in ref_flat]
    out_names = [n for n, _ in ref_flat]

    def call(inputs, training=False):
        return invoke(inputs, training)

    call_fn = tf.function(call)
    sig_specs = [
        tf.TensorSpec(shape=([None] + list(_shape_tuple(s["shape"])[1:])) if s["shape"] is not None else None, dtype=s["dtype"], name=s["name"])
        for s in specs
    ]
    arg_spec = sig_specs[0] if single else {s["name"]: sp for s, sp in zip(specs, sig_specs)}
    variables = _unique(list(getattr(obj, "variables", []) or []))
    if not variables:
        variables = _unique([v for v in tf.train.TrackableView(obj).descendants() if isinstance(v, tf.Variable)])
    src_trainable = getattr(obj, "trainable_variables", None)
    if src_trainable is None:
        src_trainable = [v for v in variables if v.trainable]
    trainable_vars = _unique(list(src_trainable)) if trainable else []
    regs = [_zero_arg_function(r) for r in list(getattr(obj, "regularization_losses", []) or [])]
    wrapper = _wrapper_class()(call_fn, variables, trainable_vars, regs)
    call_fn.get_concrete_function(arg_spec, training=True)
    call_fn.get_concrete_function(arg_spec, training=False)
    for r in regs:
        r.get_concrete_function()
    serve = _make_serving(None, specs, None, out_names, sig_specs, single, call=lambda x: invoke(x, False))
    warns = _save_reusable(wrapper, os.path.join(out_dir, "saved_model"), serve)
    golden_doc = _write_golden(
        out_dir, "saved-model", specs, feeds, ref_flat, out_kind,
        {"seed": seed, "batch": batch, "source": source, "has_dropout": None, "has_batch_norm": None, "trainable": trainable},
    )
    warns += [] if accepts_training else [
        "the source has no __call__ with a 'training' argument: training=True and training=False behave the same"
    ]
    return {
        "signature": _signature_summary(serve, specs, out_names),
        "variables": len(variables),
        "trainable_variables": len(trainable_vars),
        "regularization_losses": len(regs),
        "has_dropout": None,
        "has_batch_norm": None,
        "golden": {"inputs": golden_doc["inputs"], "outputs": golden_doc["outputs"]},
        "warnings": warns,
    }


# -----------------------------------------------------------------------------
# validate
# -----------------------------------------------------------------------------


class _Checks:
    def __init__(self):
        self.items = []
        self._mark = time.monotonic()

    def _elapsed(self):
        now = time.monotonic()
        elapsed, self._mark = now - self._mark, now
        return round(elapsed, 3)

    def add(self, name, ok, message, **details):
        details["seconds"] = self._elapsed()
        self.items.append({"name": name, "ok": bool(ok), "message": message, "details": details})
        return ok

    def skip(self, name, reason):
        self.items.append(
            {"name": name, "ok": True, "message": f"skipped: {reason}",
             "details": {"skipped": True, "reason": reason, "seconds": self._elapsed()}}
        )

    def error(self, name, exc):
        self.add(name, False, f"{type(exc).__name__}: {exc}", exception=type(exc).__name__, traceback=_format_frames(exc))


def _compare_arrays(got, ref, atol, rtol):
    """Returns (ok, details) for |got - ref| <= atol + rtol*|ref|."""
    import numpy as np

    got, ref = np.asarray(got), np.asarray(ref)
    details = {"shape": list(got.shape), "expected_shape": list(ref.shape), "dtype": got.dtype.name}
    if got.shape != ref.shape:
        return False, details
    if got.size == 0:
        details.update(max_abs_diff=0.0, index=None, mismatches=0)
        return True, details
    if ref.dtype.kind not in "fc" and got.dtype.kind not in "fc":
        bad = got != ref
        details.update(mismatches=int(bad.sum()), max_abs_diff=None)
        if bad.any():
            idx = np.unravel_index(int(np.argmax(bad)), bad.shape)
            details.update(index=[int(i) for i in idx], got=got[idx].item(), expected=ref[idx].item())
        return not bad.any(), details
    g, r = got.astype(np.float64), ref.astype(np.float64)
    diff = np.abs(g - r)
    nan_mismatch = np.isnan(g) != np.isnan(r)
    both_nan = np.isnan(g) & np.isnan(r)
    diff = np.where(both_nan, 0.0, diff)
    diff = np.where(nan_mismatch, np.inf, diff)
    tol = atol + rtol * np.abs(np.where(np.isnan(r), 0.0, r))
    bad = diff > tol
    idx = np.unravel_index(int(np.argmax(np.where(np.isnan(diff), np.inf, diff))), diff.shape)
    details.update(
        max_abs_diff=float(diff[idx]),
        index=[int(i) for i in idx],
        got=float(g[idx]),
        expected=float(r[idx]),
        tolerance=float(tol[idx]),
        mismatches=int(bad.sum()),
    )
    return not bad.any(), details


def _compare_outputs(out_struct, golden, refs, atol, rtol):
    """Compare an output structure with the golden outputs; returns (ok, message, details)."""
    names = [o["name"] for o in golden["outputs"]]
    if isinstance(out_struct, dict):
        got = {k: out_struct.get(k) for k in names}
    elif isinstance(out_struct, (list, tuple)):
        got = dict(zip(names, list(out_struct))) if len(out_struct) == len(names) else {}
    else:
        got = {names[0]: out_struct} if len(names) == 1 else {}
    per, failures = {}, []
    for n in names:
        if got.get(n) is None:
            per[n] = {"missing": True}
            failures.append(f"output '{n}' is missing")
            continue
        value = got[n].numpy() if hasattr(got[n], "numpy") else got[n]
        ok, d = _compare_arrays(value, refs[n], atol, rtol)
        per[n] = d
        if not ok:
            if d["shape"] != d["expected_shape"]:
                failures.append(f"output '{n}': shape {d['shape']}, expected {d['expected_shape']}")
            elif d.get("max_abs_diff") is None:
                failures.append(f"output '{n}': {d['mismatches']} element(s) differ, first at {d.get('index')}")
            else:
                failures.append(
                    f"output '{n}': max |diff| {d['max_abs_diff']:.3g} at {d['index']} "
                    f"(got {d['got']:.7g}, expected {d['expected']:.7g}) exceeds atol {atol:g} + rtol {rtol:g}*|ref| = {d['tolerance']:.3g}; "
                    f"{d['mismatches']} element(s) out of tolerance"
                )
    if failures:
        return False, "; ".join(failures), per
    worst = max((d.get("max_abs_diff") or 0.0) for d in per.values()) if per else 0.0
    return True, f"{len(names)} output(s) match (max |diff| {worst:.3g})", per


def _flat_float_outputs(out):
    tf = M.tf
    flat = tf.nest.flatten(out)
    return [t for t in flat if hasattr(t, "dtype") and t.dtype.is_floating]


def m_validate(params):
    _fresh_session()
    import numpy as np

    sm_dir = _abs_path(params, "saved_model_dir")
    golden_dir = _abs_path(params, "golden_dir")
    atol = float(_param(params, "atol", float, default=1e-5))
    rtol = float(_param(params, "rtol", float, default=1e-5))
    fine_tune = bool(_param(params, "fine_tune_step", bool, default=True))
    expect_trainable = bool(_param(params, "expect_trainable", bool, default=True))
    require_training = bool(_param(params, "require_training", bool, default=True))
    golden_path = os.path.join(golden_dir, "golden.json")
    if not os.path.exists(golden_path):
        raise FileNotFoundError(f"golden.json not found in {golden_dir}")
    golden = _read_json(golden_path)
    feeds = {i["name"]: np.load(os.path.join(golden_dir, i["file"]), allow_pickle=False) for i in golden["inputs"]}
    refs = {o["name"]: np.load(os.path.join(golden_dir, o["file"]), allow_pickle=False) for o in golden["outputs"]}
    if not os.path.isdir(sm_dir):
        raise FileNotFoundError(f"not a SavedModel directory: {sm_dir}")

    tf = M.tf
    checks = _Checks()
    result = {"ok": False, "checks": checks.items, "regularization_loss_values": [], "hub": None}
    try:
        obj = tf.saved_model.load(sm_dir)
        checks.add("load", True, "tf.saved_model.load succeeded")
    except Exception as e:
        checks.error("load", e)
        return result

    single = golden.get("input_structure", "single") == "single" and len(golden["inputs"]) == 1
    names_in = [i["name"] for i in golden["inputs"]]
    feed = tf.constant(feeds[names_in[0]]) if single else {n: tf.constant(feeds[n]) for n in names_in}

    missing = [a for a in ("__call__", "variables", "trainable_variables", "regularization_losses") if not hasattr(obj, a)]
    checks.add(
        "api", not missing,
        "Reusable SavedModel API present" if not missing else f"missing attribute(s): {', '.join(missing)}",
        missing=missing,
    )
    variables = list(getattr(obj, "variables", []) or [])
    trainable_vars = list(getattr(obj, "trainable_variables", []) or [])
    reg_fns = list(getattr(obj, "regularization_losses", []) or [])
    snapshot = [(v, v.numpy()) for v in variables]

    def restore_variables():
        for v, value in snapshot:
            try:
                v.assign(value)
            except Exception:
                pass

    has_dropout = golden.get("has_dropout")
    has_bn = golden.get("has_batch_norm")
    call_ok = callable(getattr(obj, "__call__", None)) and "__call__" not in missing
    # The Reusable SavedModel API makes `training` optional; exportctl's own packages always
    # have it (require_training), any other SavedModel may do without.
    takes_training = True

    def invoke(inputs, training):
        return obj(inputs, training=training) if takes_training else obj(inputs)

    # __call__(training=False) vs golden, and determinism (before any training=True call)
    out_false = None
    if call_ok:
        try:
            try:
                out_false = obj(feed, training=False)
            except TypeError as e:
                if require_training or "training" not in str(e):
                    raise
                takes_training = False
                out_false = obj(feed)
            ok, msg, per = _compare_outputs(out_false, golden, refs, atol, rtol)
            if not takes_training:
                msg += " (its __call__ takes no training argument, which the Reusable SavedModel API allows)"
            checks.add("call_training_false", ok, msg, outputs=per, atol=atol, rtol=rtol, takes_training=takes_training)
        except Exception as e:
            checks.error("call_training_false", e)
    else:
        checks.skip("call_training_false", "no __call__")

    # serving_default
    try:
        sig = obj.signatures.get("serving_default") if hasattr(obj, "signatures") else None
        if sig is None:
            checks.add("serving_default", False, "no serving_default signature")
        else:
            _, kw = sig.structured_input_signature
            sig_inputs = sorted(kw)
            sig_outputs = sorted(sig.structured_outputs)
            problems = []
            if sorted(names_in) != sig_inputs:
                problems.append(f"inputs {sig_inputs}, expected {sorted(names_in)}")
            if sorted(refs) != sig_outputs:
                problems.append(f"outputs {sig_outputs}, expected {sorted(refs)}")
            if problems:
                checks.add("serving_default", False, "serving_default " + "; ".join(problems), inputs=sig_inputs, outputs=sig_outputs)
            else:
                out = sig(**{n: tf.constant(feeds[n]) for n in names_in})
                ok, msg, per = _compare_outputs(dict(out), golden, refs, atol, rtol)
                checks.add("serving_default", ok, "serving_default: " + msg, outputs=per, inputs=sig_inputs)
    except Exception as e:
        checks.error("serving_default", e)

    # training flag
    if call_ok and out_false is not None:
        try:
            again = invoke(feed, False)
            deterministic = all(
                np.array_equal(a.numpy(), b.numpy()) for a, b in zip(tf.nest.flatten(out_false), tf.nest.flatten(again))
            )
            t1 = invoke(feed, True)
            t2 = invoke(feed, True)
            flat_f = [x.numpy() for x in tf.nest.flatten(out_false)]
            flat_1 = [x.numpy() for x in tf.nest.flatten(t1)]
            flat_2 = [x.numpy() for x in tf.nest.flatten(t2)]
            shapes_ok = [a.shape for a in flat_1] == [a.shape for a in flat_f]
            finite = all(np.isfinite(a).all() for a in flat_1 if a.dtype.kind == "f")
            checks.add(
                "call_training_true", shapes_ok and finite,
                "training=True runs" if shapes_ok and finite else
                ("training=True output shapes differ from training=False" if not shapes_ok else "training=True produced non-finite values"),
                shapes=[list(a.shape) for a in flat_1],
            )
            stochastic = any(not np.array_equal(a, b) for a, b in zip(flat_1, flat_2))
            changes = any(not np.array_equal(a, b) for a, b in zip(flat_1, flat_f)) if shapes_ok else True
            problems = []
            if not deterministic:
                problems.append("training=False is not deterministic (two calls differ)")
            if has_dropout and not stochastic:
                problems.append("the model has dropout but training=True gave identical outputs twice")
            if (has_dropout or has_bn) and not changes:
                problems.append("the model has dropout/batch-norm but training=True and training=False give identical outputs")
            msg = "; ".join(problems) or (
                "training=False deterministic"
                + ("; training=True stochastic" if has_dropout else "")
                + ("; the training flag changes the outputs" if (has_dropout or has_bn) else "")
            )
            checks.add(
                "training_flag", not problems, msg,
                deterministic=deterministic, stochastic=stochastic, training_changes_output=changes,
                has_dropout=has_dropout, has_batch_norm=has_bn,
            )
        except Exception as e:
            checks.error("training_flag", e)
        finally:
            restore_variables()
    else:
        checks.skip("call_training_true", "__call__ unavailable")
        checks.skip("training_flag", "__call__ unavailable")

    # variables
    var_ids = {id(v) for v in variables}
    var_names = {v.name for v in variables}
    outside = [v.name for v in trainable_vars if id(v) not in var_ids and v.name not in var_names]
    checks.add(
        "variables_superset", not outside,
        f"{len(variables)} variables include all {len(trainable_vars)} trainable ones" if not outside
        else f"trainable variables missing from variables: {outside[:10]}",
        variables=len(variables), trainable_variables=len(trainable_vars), missing=outside[:50],
    )
    if expect_trainable:
        checks.add(
            "trainable_variables", bool(trainable_vars),
            f"{len(trainable_vars)} trainable variables" if trainable_vars else "expected trainable variables, found none",
            count=len(trainable_vars),
        )
    else:
        checks.add(
            "trainable_variables", not trainable_vars,
            "no trainable variables (trainable = false)" if not trainable_vars
            else f"trainable = false but {len(trainable_vars)} trainable variables are exported",
            count=len(trainable_vars),
        )

    # regularization losses
    values, bad = [], []
    for i, fn in enumerate(reg_fns):
        try:
            v = fn()
            arr = np.asarray(v.numpy() if hasattr(v, "numpy") else v)
            if arr.shape != () or not np.isfinite(arr).all():
                bad.append(f"#{i}: shape {list(arr.shape)}, value {arr.tolist() if arr.size < 5 else '...'}")
                values.append(float(arr.ravel()[0]) if arr.size else None)
            else:
                values.append(float(arr))
        except Exception as e:
            bad.append(f"#{i}: {type(e).__name__}: {e}")
            values.append(None)
    result["regularization_loss_values"] = values
    checks.add(
        "regularization_losses", not bad,
        f"{len(reg_fns)} regularization loss(es), all finite scalars" if not bad else "; ".join(bad),
        count=len(reg_fns), values=values,
    )

    # optimizer state must not have reached the package
    try:
        keys = [k for k, _ in tf.train.list_variables(os.path.join(sm_dir, "variables", "variables"))]
        slots = [k for k in keys if "OPTIMIZER_SLOT" in k or re.search(r"(^|/)optimizer(/|\.|$)", k)]
        checks.add(
            "no_optimizer_state", not slots,
            f"{len(keys)} checkpoint keys, no optimizer state" if not slots else f"optimizer state in the package: {slots[:5]}",
            checkpoint_keys=len(keys), optimizer_keys=slots[:50],
        )
    except Exception as e:
        checks.error("no_optimizer_state", e)

    # one fine-tuning step
    if not fine_tune:
        checks.skip("fine_tune_step", "fine_tune_step = false")
    elif not trainable_vars:
        checks.skip("fine_tune_step", "no trainable variables")
    elif not call_ok:
        checks.skip("fine_tune_step", "__call__ unavailable")
    else:
        try:
            rng = np.random.default_rng(1234)
            with tf.GradientTape() as tape:
                out = invoke(feed, True)
                flat = _flat_float_outputs(out)
                loss = tf.constant(0.0, tf.float32)
                for t in flat:
                    proj = tf.constant(rng.standard_normal(t.shape.as_list() if t.shape.is_fully_defined() else tf.shape(t).numpy()).astype(np.float32))
                    loss += tf.reduce_mean(tf.cast(t, tf.float32) * proj)
                for fn in reg_fns:
                    loss += tf.cast(fn(), tf.float32)
            grads = tape.gradient(loss, trainable_vars)
            none, zero, unchanged = [], [], []
            for v, g in zip(trainable_vars, grads):
                if g is None:
                    none.append(v.name)
                    continue
                g = tf.convert_to_tensor(g)
                if not bool(tf.reduce_any(g != 0)):
                    zero.append(v.name)
                before = v.numpy()
                v.assign_sub(tf.cast(g, v.dtype) * 0.1)
                if np.array_equal(before, v.numpy()):
                    unchanged.append(v.name)
            problems = []
            if none:
                problems.append(f"{len(none)} variable(s) without gradient: {none[:5]}")
            if zero:
                problems.append(f"{len(zero)} variable(s) with an all-zero gradient: {zero[:5]}")
            if unchanged and len(unchanged) != len(zero):
                problems.append(f"{len(unchanged)} variable(s) unchanged by the step: {unchanged[:5]}")
            checks.add(
                "fine_tune_step", not problems,
                f"one SGD step changed all {len(trainable_vars)} trainable variables" if not problems else "; ".join(problems),
                loss=float(loss.numpy()), no_gradient=none, zero_gradient=zero, unchanged=unchanged,
                trainable_variables=len(trainable_vars),
            )
        except Exception as e:
            checks.error("fine_tune_step", e)
        finally:
            restore_variables()

    # hub.KerasLayer in a tf_keras model
    if _dist_version("tensorflow-hub") is None or (_dist_version("tf-keras") is None and _dist_version("tf_keras") is None):
        checks.skip("hub_keras_layer", "tensorflow_hub / tf_keras not installed")
    else:
        try:
            result["hub"] = _hub_check(sm_dir, golden, feeds, single, checks, len(reg_fns))
        except Exception as e:
            checks.error("hub_keras_layer", e)
    result["ok"] = all(c["ok"] for c in checks.items)
    return result


def _hub_check(sm_dir, golden, feeds, single, checks, reg_count):
    import numpy as np

    tf, tfk, hub = M.tf, M.tf_keras, M.hub
    tfk.utils.set_random_seed(0)
    layer = hub.KerasLayer(sm_dir, trainable=True)
    ins = {}
    for i in golden["inputs"]:
        shape = [None if d < 0 else d for d in i["shape"][1:]]
        ins[i["name"]] = tfk.Input(shape=shape, dtype=i["dtype"], name=i["name"])
    x = next(iter(ins.values())) if single else ins
    out = layer(x)
    flat = [t for t in tf.nest.flatten(out) if t.dtype.is_floating]
    if not flat:
        return checks.add("hub_keras_layer", False, "the layer has no floating-point output to train on") and None
    features = []  # each output as [batch, k]; a random Dense head gives every output a gradient
    for t in flat:
        rank, dims = t.shape.rank, t.shape.as_list()[1:] if t.shape.rank else []
        t = tfk.layers.Lambda(lambda z: tf.cast(z, tf.float32))(t)
        if rank is None or rank <= 1:
            features.append(tfk.layers.Reshape((1,))(t))
        elif all(d is not None for d in dims):
            features.append(tfk.layers.Flatten()(t) if rank > 2 else t)
        else:  # unknown non-batch dims: average them away
            axes = list(range(1, rank))
            features.append(tfk.layers.Lambda(lambda z, axes=axes: tf.reduce_mean(z, axis=axes)[:, None])(t))
    pooled = features
    joined = pooled[0] if len(pooled) == 1 else tfk.layers.Concatenate()(pooled)
    head = tfk.layers.Dense(1)(joined)
    model = tfk.Model(list(ins.values()) if not single else x, head)
    # run_eagerly: a graph-mode fit() leaves ~200 MB per call inside TensorFlow's runtime (MobileNet;
    # the Python objects are freed), which a long-lived worker cannot afford; eager fit does not leak
    model.compile(optimizer=tfk.optimizers.SGD(0.01), loss="mse", run_eagerly=True)
    before = [w.numpy() for w in layer.trainable_weights]
    xs = feeds[golden["inputs"][0]["name"]] if single else [feeds[i["name"]] for i in golden["inputs"]]
    n = len(next(iter(feeds.values())))
    y = np.random.default_rng(0).standard_normal((n, 1)).astype("float32")
    hist = model.fit(xs, y, epochs=1, batch_size=n, verbose=0)
    moved = sum(1 for w, b in zip(layer.trainable_weights, before) if not np.array_equal(w.numpy(), b))
    info = {"trainable_weights": len(layer.trainable_weights), "losses": len(layer.losses), "moved": moved}
    problems = []
    if len(layer.losses) != reg_count:
        problems.append(f"hub.KerasLayer exposes {len(layer.losses)} losses, the SavedModel has {reg_count} regularization_losses")
    if moved != len(before):
        problems.append(f"{len(before) - moved} of {len(before)} trainable weights did not move in one fit step")
    loss = float(hist.history["loss"][-1])
    if not math.isfinite(loss):
        problems.append(f"the fit step's loss is {loss}")
    checks.add(
        "hub_keras_layer", not problems,
        "; ".join(problems) or
        f"hub.KerasLayer(trainable=True) fine-tuned one step: {moved}/{len(before)} trainable weights moved, {len(layer.losses)} losses",
        loss=loss, **info,
    )
    return info


# -----------------------------------------------------------------------------
# debug methods
# -----------------------------------------------------------------------------


def m_debug_sleep(params):
    seconds = float(_param(params, "seconds", float, default=1.0))
    time.sleep(seconds)
    return {"slept": seconds}


def m_debug_raise(params):
    raise ValueError(_param(params, "message", str, default="debug.raise"))


def m_debug_exit(params):
    code = int(_param(params, "code", int, default=0))
    sys.stderr.flush()
    os._exit(code)


def m_debug_segfault(params):
    import ctypes

    sys.stderr.flush()
    ctypes.string_at(0)


def m_debug_print(params):
    print(_param(params, "text", str, default="noise on stdout"))
    return {"printed": True}


METHODS = {"hello": m_hello, "export": m_export, "slice": m_slice, "trace": m_trace, "validate": m_validate}
DEBUG_METHODS = {
    "debug.sleep": m_debug_sleep,
    "debug.raise": m_debug_raise,
    "debug.exit": m_debug_exit,
    "debug.segfault": m_debug_segfault,
    "debug.print": m_debug_print,
}


# -----------------------------------------------------------------------------
# The loop
# -----------------------------------------------------------------------------

_THIS_FILE = os.path.abspath(__file__)


def _frame_label(filename):
    if os.path.abspath(filename) == _THIS_FILE:
        return "worker.py"
    marker = os.sep + "site-packages" + os.sep
    if marker in filename:
        return filename.split(marker, 1)[1]
    return filename


def _format_frames(exc):
    frames = traceback.extract_tb(exc.__traceback__)
    # drop the dispatcher's own frame
    frames = [f for f in frames if not (os.path.abspath(f.filename) == _THIS_FILE and f.name in ("_dispatch", "main"))]
    frames = frames[-TRACEBACK_FRAMES:]
    return [f"{_frame_label(f.filename)}:{f.lineno} in {f.name}" for f in frames]


def _error_payload(exc):
    if isinstance(exc, WorkerError):
        etype, data = exc.code, dict(exc.data)
    else:
        etype, data = type(exc).__name__, {}
    cause = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    if cause is not None and not isinstance(exc, WorkerError):
        data.setdefault("cause", f"{type(cause).__name__}: {cause}")
    if getattr(exc, "exportctl_hint", None):
        data["hint"] = exc.exportctl_hint
    message = str(exc) or etype
    return {"type": etype, "message": message, "traceback": _format_frames(exc), "data": data}


def _send(obj):
    try:
        line = json.dumps(_jsonable(obj), allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as e:  # never leave a request unanswered
        line = json.dumps(
            {"id": obj.get("id"), "ok": False, "error": {"type": "InternalError", "message": f"unserialisable response: {e}", "traceback": [], "data": {}}}
        )
    _RESPONSES.write(line + "\n")
    _RESPONSES.flush()


def _dispatch(request):
    method = request.get("method")
    params = request.get("params") or {}
    if not isinstance(method, str):
        raise WorkerError("BadRequest", "the request has no 'method'")
    if not isinstance(params, dict):
        raise WorkerError("BadRequest", "'params' must be an object")
    fn = METHODS.get(method) or (DEBUG_METHODS.get(method) if DEBUG else None)
    if fn is None:
        known = sorted(METHODS) + (sorted(DEBUG_METHODS) if DEBUG else [])
        raise WorkerError(
            "UnknownMethod",
            f"unknown method '{method}'" + (" (debug methods need EXPORTCTL_WORKER_DEBUG=1)" if method in DEBUG_METHODS else ""),
            {"method": method, "suggestions": _suggest(method, known)},
        )
    return fn(params)


def _exit_with_parent():
    """Ends the worker when exportctl goes away, even by kill -9 (stdin's EOF only comes once
    the current request is done, and the worker must not go on writing for nobody)."""
    parent = os.getppid()

    def watch():
        while True:
            time.sleep(0.25)
            if os.getppid() != parent:
                os._exit(70)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def main():
    _exit_with_parent()
    stdin = sys.stdin.buffer
    while True:
        raw = stdin.readline()
        if not raw:
            break
        text = raw.decode("utf-8", errors="replace").strip()
        if not text:
            continue
        request_id = None
        try:
            request = json.loads(text)
            if not isinstance(request, dict):
                raise WorkerError("BadRequest", "a request must be a JSON object")
            request_id = request.get("id")
            started = time.monotonic()
            result = _dispatch(request)
            log(f"{request.get('method')} #{request_id} ok in {time.monotonic() - started:.2f}s")
            response = {"id": request_id, "ok": True, "result": result}
        except json.JSONDecodeError as e:
            response = {"id": None, "ok": False, "error": {"type": "BadRequest", "message": f"invalid JSON: {e}", "traceback": [], "data": {}}}
        except Exception as e:  # every failure becomes a response; the worker lives on
            payload = _error_payload(e)
            log(f"request #{request_id} failed: {payload['type']}: {payload['message']}")
            response = {"id": request_id, "ok": False, "error": payload}
        try:
            _send(response)
        except BrokenPipeError:
            os._exit(0)
        if request_id is not None and response.get("ok") is not None and text and '"debug.' not in text:
            # Models die with the request; Keras graphs are full of reference cycles. Collect
            # now, after the response is out, so a long-lived worker stays small at no latency.
            gc.collect()
    sys.stderr.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
