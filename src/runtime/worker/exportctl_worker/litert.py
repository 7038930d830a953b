"""LiteRT: ``convert_litert`` turns a traced SavedModel's ``serving_default`` into a
``.tflite`` flatbuffer with TensorFlow's converter; ``run_litert`` runs one with the LiteRT
interpreter (``ai_edge_litert``) on the golden inputs and writes its outputs as ``.npy`` files.

The comparison with the reference outputs is not here: Rust compares them with the same rule
as ``validate`` (``tf::compare``). What is here is what only Python can do, and the reading of
the converter's errors into something a user can act on (``_conversion_error``, pure, tested).
"""

import json
import os
import re

from .errors import WorkerError
from .modules import M
from .params import _abs_path, _param
from .phases import phase

QUANTIZE = ("none", "dynamic", "float16")

# One converter diagnostic per op it could not lower: the op, the node it came from, and
# whether TensorFlow's own kernels (SELECT_TF_OPS, "flex") would run it.
_OP_ERROR = re.compile(
    r"""fused\["(?P<op>[A-Za-z0-9_]+):", "(?P<node>[^"@]+)@[^"]*"\].*Error code: (?P<code>ERROR_NEEDS_(?:FLEX|CUSTOM)_OPS)"""
)
_NOT_SUPPORTED = re.compile(r"'tf\.(?P<op>[A-Za-z0-9_]+)' op is neither a custom op nor a flex op")
# The converter's own words when a dimension the signature leaves unknown is one it needs: a
# Reshape to more than one unknown size. (Most ops convert with unknown sizes; an op that needs
# a known channel count comes out as an op without a LiteRT kernel, above.)
_DYNAMIC_SHAPE = re.compile(r"requires 'shape' to have at most one dynamic dimension")
# A loop over a TensorList (a TensorArray: a Keras RNN layer, tf.map_fn) whose elements' shape is
# not static: fixed input sizes do not help (a Keras 3 RNN layer fails with every input dimension
# fixed), an unrolled RNN layer has no loop.
_TENSOR_LIST = re.compile(r"requires element_shape to be (?:static|1D tensor) during TF Lite transformation pass")
# The node a diagnostic is located at: `fused["TensorListReserve:", "functional_1/gru_1/TensorArrayV2_1@..."]`.
_NODE = re.compile(r'fused\["[A-Za-z0-9_]+:", "(?P<node>[^"@]+)@')


def _unsupported_ops(message):
    """The ops a converter error names as having no LiteRT kernel: a sorted list of
    ``{"op", "nodes", "select_tf_ops"}`` (``select_tf_ops``: TensorFlow's kernels, bundled with
    SELECT_TF_OPS, would run it; otherwise only a custom op would)."""
    found = {}
    for match in _OP_ERROR.finditer(message):
        entry = found.setdefault(
            match["op"], {"op": match["op"], "nodes": [], "select_tf_ops": match["code"] == "ERROR_NEEDS_FLEX_OPS"}
        )
        if match["node"] not in entry["nodes"]:
            entry["nodes"].append(match["node"])
    for match in _NOT_SUPPORTED.finditer(message):
        found.setdefault(match["op"], {"op": match["op"], "nodes": [], "select_tf_ops": None})
    return [found[op] for op in sorted(found)]


def _layer_of(node):
    """The Keras layer a graph node belongs to: Keras 3 suffixes its name scopes with ``_1``
    (``functional_1/probit_1/erfinv/Erfinv``: the op's own scope ``erfinv`` has none), so it is
    the last such scope below the model's, else the node's parent scope."""
    scopes = node.split("/")[:-1]
    if not scopes:
        return None
    layers = [s for s in scopes[1:] if s.endswith("_1")]
    return re.sub(r"_1$", "", layers[-1] if layers else scopes[-1])


def _describe_ops(ops):
    lines = []
    for entry in ops:
        layers = sorted({layer for layer in (_layer_of(n) for n in entry["nodes"]) if layer})
        where = f" (layer {', '.join(f'`{layer}`' for layer in layers)})" if layers else ""
        if entry["select_tf_ops"] is True:
            verdict = "SELECT_TF_OPS would run it with TensorFlow's kernel"
        elif entry["select_tf_ops"] is False:
            verdict = "SELECT_TF_OPS would not help: TensorFlow's kernels do not include it either, only a custom op would"
        else:
            verdict = "no LiteRT kernel"
        lines.append(f"`{entry['op']}`{where}: {verdict}")
    return lines


def m_convert_litert(params):
    saved_model_dir = _abs_path(params, "saved_model_dir")
    out_path = _param(params, "out_path", str)
    quantize = _param(params, "quantize", str)
    if quantize not in QUANTIZE:
        raise WorkerError("BadParams", f"quantize must be one of {', '.join(QUANTIZE)}, got {quantize!r}")
    tf = M.tf
    with phase("convert"):
        converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir, signature_keys=["serving_default"])
        if quantize in ("dynamic", "float16"):
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantize == "float16":
            converter.target_spec.supported_types = [tf.float16]
        try:
            flatbuffer = converter.convert()
        except Exception as e:  # the converter's own ConverterError, or MLIR's
            raise _conversion_error(str(e)) from None
    with phase("write"):
        with open(out_path, "wb") as f:
            f.write(flatbuffer)
    return {"bytes": len(flatbuffer)}


def _conversion_error(message):
    ops = _unsupported_ops(message)
    if ops:
        flex = [o["op"] for o in ops if o["select_tf_ops"]]
        hint = (
            "LiteRT's built-in kernels cover the common layers; rewrite the layers named here with ops it has, "
            "or leave `litert` out of this piece's `formats`"
        )
        if flex and len(flex) == len(ops):
            hint += (
                ". SELECT_TF_OPS would convert it, but the model then needs the TensorFlow ops delegate (the "
                "`tensorflow-lite-select-tf-ops` library, megabytes more) on the device; exportctl does not build such models"
            )
        return WorkerError(
            "LitertUnsupportedOps",
            "the model uses op(s) LiteRT has no kernel for: " + "; ".join(_describe_ops(ops)),
            {"ops": ops, "hint": hint},
        )
    errors = _errors(message)
    dynamic = next((e for e in errors if _DYNAMIC_SHAPE.search(e)), None)
    if dynamic:
        return WorkerError(
            "LitertDynamicShape",
            "the LiteRT converter cannot handle the shapes of this model's signature: " + _without_location(dynamic),
            {
                "hint": "LiteRT needs every dimension but the batch known: declare the inputs with fixed sizes in "
                "`[models.<name>.inputs]` (e.g. `shape = [-1, 128]` rather than `[-1, -1]`) so trace writes a signature with them"
            },
        )
    loop = next((e for e in errors if _TENSOR_LIST.search(e)), None)
    if loop:
        node = _NODE.search(loop)
        layer = _layer_of(node["node"]) if node else None
        return WorkerError(
            "LitertConversion",
            "the LiteRT converter cannot lower a loop"
            + (f" in layer `{layer}`" if layer else "")
            + ": "
            + _without_location(loop),
            {
                "hint": "a loop over a TensorArray (a Keras RNN layer, tf.map_fn) converts only when its elements' shape "
                "is static; an RNN layer with `unroll=True` and a fixed number of time steps has no loop"
            },
        )
    return WorkerError(
        "LitertConversion",
        "the LiteRT converter failed: " + (_without_location(errors[0]) if errors else _first_line(message)),
        {"hint": "run with -v to see the converter's full output; `exportctl validate` checks the SavedModel itself"},
    )


def _errors(message):
    """The converter's error diagnostics, in order: what follows `error:` on each line."""
    return [line.split("error:", 1)[1].strip() for line in message.splitlines() if "error:" in line]


def _without_location(error):
    """An error without its MLIR location (`loc(callsite(fused[...] at ...)): `), at most 600 characters."""
    if error.startswith("loc("):
        depth, quoted = 0, False
        for i, c in enumerate(error):
            if c == '"':
                quoted = not quoted
            elif not quoted and c in "()":
                depth += 1 if c == "(" else -1
                if depth == 0:
                    error = error[i + 1 :].lstrip(":").strip()
                    break
    return error[:600]


def _first_line(message):
    return message.strip().splitlines()[0][:600] if message.strip() else "no message"


def _interpreter():
    try:
        import importlib

        importlib.invalidate_caches()  # the extra may have been installed after this worker started
        with phase("import ai_edge_litert"):
            from ai_edge_litert.interpreter import Interpreter
    except ImportError as e:
        raise WorkerError(
            "MissingPackage",
            f"ai_edge_litert cannot be imported ({e}); the LiteRT steps run models with its interpreter",
            {"hint": "pip install ai-edge-litert==2.3.0 into this Python, or let exportctl manage the runtime"},
        ) from None
    return Interpreter


def m_run_litert(params):
    import numpy as np

    model_path = _abs_path(params, "model_path")
    golden_dir = _abs_path(params, "golden_dir")
    out_dir = _param(params, "out_dir", str)
    with open(os.path.join(golden_dir, "golden.json")) as f:
        golden = json.load(f)
    Interpreter = _interpreter()
    with phase("load"):
        # One thread: the same kernels in the same order, so the same bits on every run.
        interpreter = Interpreter(model_path=model_path, num_threads=1)
        signatures = interpreter.get_signature_list()
        if "serving_default" not in signatures:
            raise WorkerError(
                "LitertSignature",
                f"the LiteRT model has no `serving_default` signature (it has {', '.join(sorted(signatures)) or 'none'})",
                {"hint": "convert-litert converts `serving_default`; run `exportctl clean --cache` and build again"},
            )
        runner = interpreter.get_signature_runner("serving_default")
        inputs = runner.get_input_details()
        outputs = runner.get_output_details()

    def described(entries):
        return [
            {
                "name": name,
                "dtype": np.dtype(d["dtype"]).name,
                "shape": [int(x) for x in (d["shape_signature"] if len(d.get("shape_signature", [])) else d["shape"])],
            }
            for name, d in sorted(entries.items())
        ]

    expected = [t["name"] for t in golden["inputs"]]
    if sorted(expected) != sorted(inputs):
        raise WorkerError(
            "LitertSignature",
            "the LiteRT model's inputs are not the SavedModel's: LiteRT has "
            + ", ".join(f"`{n}`" for n in sorted(inputs))
            + "; serving_default has "
            + ", ".join(f"`{n}`" for n in expected),
            {
                "hint": "feed a LiteRT model by name through `get_signature_runner('serving_default')`, never by the "
                "position of `get_input_details()`: the flat order of a converted model's inputs is not the signature's "
                "(dict inputs are sorted)"
            },
        )
    feeds = {}
    with phase("read golden"):
        for t in golden["inputs"]:
            feeds[t["name"]] = np.load(os.path.join(golden_dir, t["file"]), allow_pickle=False)
    for name, array in feeds.items():
        want = np.dtype(inputs[name]["dtype"])
        if array.dtype != want:
            raise WorkerError(
                "LitertSignature",
                f"input `{name}`: the LiteRT model takes {want.name}, the golden input is {array.dtype.name}",
                {
                    "hint": 'quantize = "dynamic" and "float16" keep float32 inputs; '
                    "a model with integer inputs must be fed integers"
                },
            )
    with phase("run"):
        got = runner(**feeds)
    os.makedirs(out_dir, exist_ok=True)
    written = []
    with phase("write"):
        for name in sorted(got):
            file = f"{len(written)}.npy"
            np.save(os.path.join(out_dir, file), np.ascontiguousarray(got[name]), allow_pickle=False)
            written.append({"name": name, "file": file})
    # The model's own ops: the interpreter that ran it had XNNPACK replace them by `DELEGATE`.
    from ai_edge_litert.interpreter import OpResolverType

    plain = Interpreter(model_path=model_path, experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    ops = sorted({d["op_name"] for d in plain._get_ops_details() if d.get("op_name")})
    return {"inputs": described(inputs), "outputs": described(outputs), "results": written, "ops": ops}
