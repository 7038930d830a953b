"""The ``trace`` method: a piece becomes a Reusable SavedModel (``__call__`` with and without
training, variables, regularization losses, a ``serving_default`` signature) rewritten to
canonical bytes by ``canonical.py``, with golden inputs and outputs (``golden/``).

Imports TensorFlow and Keras lazily through ``modules.M``; writes only inside ``out_dir``.
"""

import os

from . import recipe
from .contract import FLAVOURS, SAVED_MODEL, TF_KERAS
from .errors import WorkerError
from .introspect import (
    _activity_regularizer_count,
    _all_layers,
    _input_specs,
    _input_struct,
    _is_batch_norm,
    _is_dropout,
    _model_inputs,
    _output_names,
    _saved_model_io,
    _weight_regularizers,
)
from .modules import M, _fresh_session
from .params import (
    _abs_path,
    _param,
    _prepare_out_dir,
    _safe_file_name,
    _shape_list,
    _shape_tuple,
    _suggest,
    _write_json,
)
from .phases import phase

UNKNOWN_DIM_SIZE = 8  # size used for unknown non-batch dims of generated inputs


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
        raise mismatch(
            f"{len(declared)} input(s) declared, the model has {len(model_inputs)}: {[m['name'] for m in model_inputs]}"
        )
    if len(declared) == 1 and single_rename:
        pairs = [(declared[0], model_inputs[0])]
    else:
        by_name = {m["name"]: m for m in model_inputs}
        pairs = []
        for d in declared:
            if d["name"] not in by_name:
                raise mismatch(
                    f"declared input '{d['name']}' is not an input of the model"
                    + (
                        f"; did you mean {_suggest(d['name'], by_name)}?"
                        if _suggest(d["name"], by_name)
                        else f" (inputs: {sorted(by_name)})"
                    )
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
            raise WorkerError(
                "NeedInputs", f"input '{s['name']}' is a {s['dtype']} tensor: provide golden samples", {"name": s["name"]}
            )
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
    export_dir = _abs_path(params, "export_dir")
    flavour = _param(params, "flavour", str)
    trainable = bool(_param(params, "trainable", bool, default=True))
    declared = _param(params, "inputs", list, default=None, allow_none=True)
    golden = _param(params, "golden", dict, default={"batch": 2, "seed": 0})
    root = _abs_path(params, "root", allow_none=True)
    out_dir = _prepare_out_dir(params)
    seed = int(golden.get("seed", 0) or 0)
    tf, keras = M.tf, M.keras
    if flavour not in FLAVOURS:
        raise WorkerError("BadParams", f"unknown flavour '{flavour}'", {"param": "flavour"})
    # The piece, built again from the export's recipe and the slice's cut (recipe.py); the
    # golden seed only from here on, so the model is the same whatever the seed.
    _, model, _ = recipe.construct_piece(export_dir, slice_dir, root)
    keras.utils.set_random_seed(seed)
    if flavour == TF_KERAS:
        M.tf_keras.utils.set_random_seed(seed)
    if flavour == SAVED_MODEL:
        return _trace_saved_model(model, trainable, declared, golden, out_dir, seed)
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
    with phase("reference outputs"):
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
        tf.TensorSpec(
            shape=[None] + list(_shape_tuple(s["shape"])[1:]) if s["shape"] is not None else None,
            dtype=s["dtype"],
            name=s["name"],
        )
        for s in specs
    ]
    arg_spec = sig_specs[0] if single else {s["name"]: sp for s, sp in zip(specs, sig_specs)}
    keras_vars = model.variables
    variables = _unique([_tf_variable(v) for v in keras_vars])
    trainable_vars = _unique([_tf_variable(v) for v in model.trainable_variables]) if trainable else []
    regs = []
    for _name, reg, var in _weight_regularizers(model, flavour):
        if var is not None:
            regs.append(_zero_arg_function(reg, _tf_variable(var)))
        else:
            regs.append(_zero_arg_function(reg))
    wrapper = _wrapper_class()(call_fn, variables, trainable_vars, regs)
    with phase("trace"):
        call_fn.get_concrete_function(arg_spec, training=True)
        call_fn.get_concrete_function(arg_spec, training=False)
        for r in regs:
            r.get_concrete_function()
        serve = _make_serving(model, specs, to_model_input, out_names, sig_specs, single)
    if _activity_regularizer_count(model):
        warns.append("activity regularizers are not exported (they depend on the inputs)")
    warns += _save_reusable(wrapper, os.path.join(out_dir, "saved_model"), serve)

    with phase("golden"):
        golden_doc = _write_golden(
            out_dir,
            flavour,
            specs,
            feeds,
            ref_flat,
            out_kind,
            {
                "seed": seed,
                "batch": batch,
                "source": source,
                "has_dropout": has_dropout,
                "has_batch_norm": has_bn,
                "trainable": trainable,
            },
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
    """tf.saved_model.save, then canonical bytes (canonical.py). Returns warnings."""
    with phase("save saved_model"):
        M.tf.saved_model.save(wrapper, path, signatures={"serving_default": serve})
    try:
        from . import canonical

        with phase("canonicalise"):
            done = canonical.canonicalize(path)
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
    ins = [
        {"name": s["name"], "shape": [-1] + list(s["shape"][1:]) if s["shape"] is not None else None, "dtype": s["dtype"]}
        for s in specs
    ]
    outs_struct = concrete.structured_outputs
    outs = []
    for n in out_names:
        t = outs_struct.get(n) if isinstance(outs_struct, dict) else None
        if t is None:
            continue
        outs.append({"name": n, "shape": _shape_list(t.shape), "dtype": t.dtype.name})
    return {"inputs": ins, "outputs": outs}


def _trace_saved_model(obj, trainable, declared, golden, out_dir, seed):
    tf = M.tf
    inferred, _ = _saved_model_io(obj)
    specs = _resolve_trace_inputs(declared, inferred)
    single = len(specs) == 1
    call_src = getattr(obj, "__call__", None)  # noqa: B004 - the restored tf.function, for its concrete functions
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
        tf.TensorSpec(
            shape=([None] + list(_shape_tuple(s["shape"])[1:])) if s["shape"] is not None else None,
            dtype=s["dtype"],
            name=s["name"],
        )
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
        out_dir,
        SAVED_MODEL,
        specs,
        feeds,
        ref_flat,
        out_kind,
        {"seed": seed, "batch": batch, "source": source, "has_dropout": None, "has_batch_norm": None, "trainable": trainable},
    )
    warns += (
        []
        if accepts_training
        else ["the source has no __call__ with a 'training' argument: training=True and training=False behave the same"]
    )
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
