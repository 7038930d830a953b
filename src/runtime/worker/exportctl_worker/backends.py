"""Code tied to a Keras backend other than TensorFlow.

The worker runs Keras 3 on TensorFlow (the entry script sets ``KERAS_BACKEND=tensorflow``), so a
``.keras`` file trained on JAX or PyTorch loads like any other as long as its layers are
backend-neutral: ``keras.layers``, and custom layers written with ``keras.ops``. A layer whose
``call`` uses ``jax.numpy`` or ``torch`` cannot run on TensorFlow; loading the model calls it
(a functional model is rebuilt layer by layer) and fails deep inside Keras. ``backend_error``
turns that exception into one that names the layer and says why; ``import_error`` does the same
for a custom-objects file that imports such a package at its top.

Pure: reads exceptions, their tracebacks and the frames' variables; imports nothing heavy.
"""

import os
import sys
import types

from .errors import WorkerError

# Top-level packages that belong to one backend, and the backend's name.
BACKEND_PACKAGES = {"jax": "JAX", "jaxlib": "JAX", "flax": "JAX", "optax": "JAX", "torch": "PyTorch"}

_HINT = (
    "exportctl loads Keras 3 models on TensorFlow. Write the layer with keras.ops instead "
    "(keras.ops.logaddexp rather than jax.numpy.logaddexp, say): it then runs on every backend, "
    "the model still trains on {backend}, and it exports"
)


def _root(module_name):
    return (module_name or "").split(".", 1)[0]


def _chain(exc, limit=8):
    """The exception and those it was raised from or during, innermost last."""
    seen = []
    while exc is not None and len(seen) < limit and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen


def _frames(exc):
    tb = exc.__traceback__
    while tb is not None:
        yield tb.tb_frame, tb.tb_lineno
        tb = tb.tb_next


def _frame_package(frame):
    """The backend package whose file a frame runs, if any."""
    path = frame.f_code.co_filename
    for marker in (os.sep + "site-packages" + os.sep, os.sep + "dist-packages" + os.sep):
        if marker in path:
            top = path.split(marker, 1)[1].split(os.sep, 1)[0]
            return top if top in BACKEND_PACKAGES else None
    return None


def _module_package(namespace):
    """The backend package of a module bound in a frame's variables, if any."""
    for value in list(namespace.values()):
        name = value.__name__ if isinstance(value, types.ModuleType) else None
        if name and _root(name) in BACKEND_PACKAGES:
            return _root(name)
    return None


def _layer_of(frame):
    """The Keras layer whose ``call`` a frame runs: (name, class name), or None."""
    if frame.f_code.co_name != "call":
        return None
    layer = frame.f_locals.get("self")
    if layer is None:
        return None
    mro = type(layer).__mro__
    is_layer = any(c.__name__ == "Layer" and c.__module__.split(".", 1)[0] in ("keras", "tf_keras") for c in mro)
    return (getattr(layer, "name", "?"), type(layer).__name__) if is_layer else None


def backend_error(exc):
    """A ``WorkerError`` naming the layer, when ``exc`` comes from a layer's ``call`` that uses
    another backend's package; otherwise None."""
    layer = package = None
    where = None
    for e in _chain(exc):
        if isinstance(e, ImportError) and _root(getattr(e, "name", None)) in BACKEND_PACKAGES:
            package = package or _root(e.name)
        for frame, line in _frames(e):
            found = _layer_of(frame)
            if found is not None and type(frame.f_locals.get("self")).__module__.split(".", 1)[0] not in ("keras", "tf_keras"):
                layer, where = found, (frame.f_code.co_filename, line)
                package = package or _module_package(frame.f_locals) or _module_package(frame.f_globals)
            package = package or _frame_package(frame)
    if layer is None or package is None:
        return None
    name, cls = layer
    backend = BACKEND_PACKAGES[package]
    return WorkerError(
        "BackendSpecific",
        f"layer `{name}` ({cls}) runs {backend} code (`{package}`) in its `call`, which cannot run on TensorFlow",
        {
            "layer": name,
            "class": cls,
            "package": package,
            "file": where[0],
            "line": where[1],
            "hint": _HINT.format(backend=backend) + f" ({cls}.call is at {os.path.basename(where[0])}:{where[1]})",
        },
    )


def import_error(exc, path):
    """A ``WorkerError`` for a user file that imports another backend's package, or None."""
    if not isinstance(exc, ImportError) or _root(getattr(exc, "name", None)) not in BACKEND_PACKAGES:
        return None
    package = _root(exc.name)
    backend = BACKEND_PACKAGES[package]
    line = None
    for frame, lineno in _frames(exc):
        if os.path.abspath(frame.f_code.co_filename) == os.path.abspath(path):
            line = lineno
    at = f"{os.path.basename(path)}:{line}" if line else os.path.basename(path)
    return WorkerError(
        "BackendSpecific",
        f"{at} imports `{package}` ({backend}), which exportctl's TensorFlow runtime ({sys.executable}) does not have",
        {"package": package, "file": path, "line": line, "hint": _HINT.format(backend=backend)},
    )
