"""Request parameters and small pure helpers: type-checked parameter access (``_param``,
``_abs_path``), the ``out_dir`` check, recorded (root-relative) directories, JSON files and
values (non-finite floats become null), name suggestions, file names, shapes and dtypes.

Imports no TensorFlow (``_jsonable`` only notices numpy values when numpy is already
imported). Reads and writes only the paths it is given (``_write_json``); never creates
``out_dir``.
"""

import difflib
import json
import math
import os
import re
import sys

from .errors import WorkerError

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


SOURCE_KINDS = ("keras-file", "saved-model", "builder")


def source_params(params):
    """What ``export`` and ``outline`` both read about the model's source, checked once:
    ``(source, kind, path, code_paths, safe_mode, sys_path)``. ``source`` is the request's
    ``source`` object (a builder's ``function``, ``checkpoint`` and ``restore`` are in it),
    ``code_paths`` the custom-object files (absolute, existing), ``sys_path`` the folders the
    user's code imports from (those of the custom-object files and of a builder's file)."""
    source = _param(params, "source", dict)
    kind = _param(source, "kind", str)
    if kind not in SOURCE_KINDS:
        raise WorkerError("BadParams", f"unknown source.kind '{kind}'", {"param": "source.kind"})
    path = _abs_path(source, "path")
    code_paths = list(_param(params, "custom_objects", list, default=[]))
    for p in code_paths:
        if not isinstance(p, str) or not os.path.isabs(p) or not os.path.isfile(p):
            raise WorkerError(
                "BadParams", f"custom object file not found (absolute path expected): {p}", {"param": "custom_objects"}
            )
    safe_mode = bool(_param(params, "safe_mode", bool, default=True))
    sys_path = sorted({os.path.dirname(p) for p in code_paths + ([path] if kind == "builder" else [])})
    return source, kind, path, code_paths, safe_mode, sys_path


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
