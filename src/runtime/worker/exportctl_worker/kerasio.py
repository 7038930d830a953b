"""Keras files: flavour detection, loading (with a hint for the usual failures), saving
(``model.keras`` rewritten to reproducible bytes, or ``model.h5``), what the source's
optimizer held, and loading the model of an export or slice directory with its code.

Imports Keras lazily through ``modules.M``; writes only the model file it is asked to save
(and a temporary sibling while rewriting it).
"""

import json
import os
import re
import zipfile

from .phases import timed
from .errors import WorkerError
from .modules import M
from .params import _resolved_dirs
from .usercode import _load_code

FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
FIXED_DATE_SAVED = "1980-01-01@00:00:00"


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
    raise WorkerError("BadSource", f"unsupported model file extension: {path} (expected .keras, .h5 or .hdf5)", {"path": path})


@timed("load model")
def _load_keras(path, flavour, custom, compile=False, safe_mode=True):
    try:
        if flavour == "keras3":
            return M.keras.saving.load_model(path, custom_objects=custom, compile=compile, safe_mode=safe_mode)
        if path.endswith(".keras"):
            return M.tf_keras.models.load_model(path, custom_objects=custom, compile=compile, safe_mode=safe_mode)
        return M.tf_keras.models.load_model(path, custom_objects=custom, compile=compile)
    except Exception as e:
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
            k: (
                ids.setdefault(v, len(ids) + 1)
                if k == "shared_object_id" and isinstance(v, int)
                else _renumber_shared_objects(v, ids)
            )
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_renumber_shared_objects(v, ids) for v in node]
    return node


@timed("save model")
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


def _load_piece_model(model_dir, meta, flavour, root=None):
    code = [os.path.join(model_dir, c) for c in meta.get("code", [])]
    custom = _load_code(code, _resolved_dirs(meta.get("python_path", []), root))
    return _load_keras(os.path.join(model_dir, meta["model_file"]), flavour, custom, False, meta.get("safe_mode", True))
