"""The model recipe: how export obtained the model, so that slice and trace obtain the very
same model again from the project's own files, instead of a copy of its weights in the cache.

export writes ``recipe.json`` (the source, the Keras flavour, the user code and where it lives,
safe mode, the model-level dropout/batch-norm overrides); slice writes ``piece.json`` (the cut
and the piece-level overrides). ``construct`` and ``construct_piece`` turn them back into a
model, the same way every time: a fresh Keras session and a fixed seed before anything is built,
so that auto-generated names and initial values do not depend on what the worker did before.

Why no model file: a copy of the weights per export and per slice made the cache hold the model
three times over (a BERT-base project took 3.3 times its packages' size), and writing and
reloading them was a third of the time of export and slice. The source's digests are in the
export's output, so a changed source still invalidates every step built from it.

Imports TensorFlow/Keras lazily through ``modules.M``; reads the source and the export's
``code/``; writes nothing.
"""

import os

from .contract import SAVED_MODEL, TF_KERAS
from .errors import WorkerError
from .introspect import _apply_overrides, _is_graph_model
from .kerasio import _load_keras
from .modules import M, _fresh_session
from .params import _read_json, _recorded_dirs, _resolved_dirs
from .usercode import _load_code, _resolve_builder

RECIPE = "recipe.json"
PIECE = "piece.json"


def recipe(kind, path, function, checkpoint, restore, flavour, code, sys_path, safe_mode, dropout, batch_norm, root):
    """The recipe export writes (paths relative to the project root when inside it)."""
    rel = lambda p: None if p is None else _recorded_dirs([p], root)[0]  # noqa: E731
    return {
        "format": 1,
        "kind": kind,
        "path": rel(path),
        "function": function,
        "checkpoint": rel(checkpoint),
        "restore": restore,
        "flavour": flavour,
        "code": code,
        "python_path": _recorded_dirs(sys_path, root),
        "safe_mode": safe_mode,
        "dropout": dropout,
        "batch_norm": batch_norm,
    }


def read(export_dir):
    path = os.path.join(export_dir, RECIPE)
    if not os.path.exists(path):
        raise WorkerError(
            "BadParams", f"{RECIPE} not found in {export_dir}: not an export of this exportctl", {"param": "export_dir"}
        )
    return _read_json(path)


def construct(export_dir, root):
    """The export's model, rebuilt from its recipe: (flavour, model). A saved-model source
    gives the loaded SavedModel object."""
    r = read(export_dir)
    _fresh_session()
    M.keras.utils.set_random_seed(0)
    flavour = r["flavour"]
    if flavour == TF_KERAS:
        M.tf_keras.utils.set_random_seed(0)
    resolve = lambda p: None if p is None else _resolved_dirs([p], root)[0]  # noqa: E731
    path = resolve(r["path"])
    sys_path = _resolved_dirs(r.get("python_path", []), root)
    custom = _load_code([os.path.join(export_dir, c) for c in r.get("code", [])], sys_path)
    if r["kind"] == "builder":
        model = _resolve_builder(path, r["function"], resolve(r.get("checkpoint")), r.get("restore"), custom, sys_path)
    elif flavour == SAVED_MODEL:
        return flavour, M.tf.saved_model.load(path)
    else:
        model = _load_keras(path, flavour, custom, False, r.get("safe_mode", True))
    _apply_overrides(model, r.get("dropout"), r.get("batch_norm"))
    return flavour, model


def construct_piece(export_dir, slice_dir, root):
    """The piece: the export's model rebuilt, cut as piece.json says, with the piece's
    overrides. Returns (flavour, piece, piece description)."""
    from .slicing import _build_piece  # slicing imports this module

    flavour, model = construct(export_dir, root)
    piece = _read_json(os.path.join(slice_dir, PIECE))
    if flavour == SAVED_MODEL:
        return flavour, model, piece
    from_name, to_names = piece.get("from"), list(piece.get("to") or [])
    if from_name is not None or to_names:
        if not _is_graph_model(model):
            raise WorkerError(
                "UnsupportedCut",
                f"model '{model.name}' is not a functional or Sequential model: it cannot be cut by layer names; "
                "build the piece separately (a builder function) or export it whole",
                {"flavour": flavour},
            )
        model = _build_piece(model, flavour, from_name, to_names)
    _apply_overrides(model, piece.get("dropout"), piece.get("batch_norm"))
    return flavour, model, piece
