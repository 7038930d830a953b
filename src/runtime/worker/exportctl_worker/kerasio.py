"""Keras files: flavour detection, loading (with a hint for the usual failures), and what the
source's optimizer held.

Imports Keras lazily through ``modules.M``; reads model files, writes nothing.
"""

import json
import os
import re
import zipfile

from .backends import backend_error
from .contract import KERAS3, TF_KERAS
from .errors import WorkerError
from .modules import M
from .phases import timed


def _detect_keras_file_flavour(path):
    lower = path.lower()
    if lower.endswith((".h5", ".hdf5")):
        return TF_KERAS
    if lower.endswith(".keras"):
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
                if "metadata.json" in names:
                    meta = json.loads(z.read("metadata.json"))
                    version = str(meta.get("keras_version", ""))
                    if version.startswith("2."):
                        return TF_KERAS
                    if version.startswith("3."):
                        return KERAS3
        except zipfile.BadZipFile as e:
            raise WorkerError("BadSource", f"{path} is not a valid .keras (zip) file: {e}", {"path": path}) from e
        return KERAS3
    raise WorkerError("BadSource", f"unsupported model file extension: {path} (expected .keras, .h5 or .hdf5)", {"path": path})


@timed("load model")
def _load_keras(path, flavour, custom, compile=False, safe_mode=True):
    try:
        if flavour == KERAS3:
            return M.keras.saving.load_model(path, custom_objects=custom, compile=compile, safe_mode=safe_mode)
        if path.endswith(".keras"):
            return M.tf_keras.models.load_model(path, custom_objects=custom, compile=compile, safe_mode=safe_mode)
        return M.tf_keras.models.load_model(path, custom_objects=custom, compile=compile)
    except Exception as e:
        converted = backend_error(e)
        if converted is not None:
            raise converted from e
        text = str(e)
        if any(
            k in text
            for k in ("Unknown layer", "could not be deserialized", "Could not locate", "Unknown object", "custom_objects")
        ):
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
    for key in (
        "l1_regularization_strength",
        "l2_regularization_strength",
        "l2_shrinkage_regularization_strength",
        "weight_decay",
    ):
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
