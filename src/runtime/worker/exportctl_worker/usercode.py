"""User code: importing custom-object files under private module names (same content, same
module), collecting the classes and functions they define, copying them into an output's
``code/``, and builders (calling a builder function, restoring its checkpoint, telling which
Keras its model belongs to).

Runs the user's code (that is its purpose) and puts the user's own directories on
``sys.path`` for their sibling imports; imports TensorFlow lazily through ``modules.M``;
writes only ``out_dir/code/``.
"""

import hashlib
import importlib.util
import os
import re
import shutil
import sys

from .backends import backend_error, import_error
from .contract import KERAS3, TF_KERAS
from .errors import WorkerError
from .modules import M
from .params import _suggest
from .phases import timed

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
    except BaseException as e:
        sys.modules.pop(module_name, None)
        converted = import_error(e, path)
        if converted is not None:
            raise converted from e
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


@timed("build model")
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
    try:
        returned = fn()
    except Exception as e:
        converted = backend_error(e)
        if converted is not None:
            raise converted from e
        raise
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
        return KERAS3
    tfk = sys.modules.get("tf_keras")
    if tfk is not None and isinstance(model, tfk.Model):
        return TF_KERAS
    # tf_keras may be reached through tf.keras with TF_USE_LEGACY_KERAS=1
    if any(c.__module__.startswith("tf_keras.") for c in type(model).__mro__):
        return TF_KERAS
    raise WorkerError(
        "UnsupportedModel",
        f"the builder returned a {type(model).__module__}.{type(model).__name__}, not a keras.Model or tf_keras.Model",
    )
