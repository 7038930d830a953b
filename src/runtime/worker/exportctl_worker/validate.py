"""The ``validate`` method: loads a SavedModel and checks it against the Reusable SavedModel
API and the golden outputs trace wrote (calls with and without training, serving_default,
variables, regularization losses, no optimizer state, one fine-tuning step), then as its
consumers use it (``consumers``: hub.KerasLayer in tf_keras, TFSMLayer in Keras 3).

Imports TensorFlow lazily through ``modules.M``; writes only the outputs its checks computed,
under ``outputs_dir``, for exportctl to judge. The SavedModel is loaded once: every check,
hub.KerasLayer and TFSMLayer use that object. Checks that move variables (a training=True call
moves batch-norm statistics) run after every check that computes outputs.
"""

import os
import re

from .checks import Checks, computed, fingerprint, nonzero
from .consumers import HUB, KERAS3, hub_check, hub_outputs, keras3_fit, keras3_outputs
from .modules import M, _dist_version, _fresh_session, release_memory
from .params import _abs_path, _param, _read_json


def _flat_float_outputs(out):
    tf = M.tf
    flat = tf.nest.flatten(out)
    return [t for t in flat if hasattr(t, "dtype") and t.dtype.is_floating]


def m_validate(params):
    # Grappler rewrites every function before its first run (fusing ops, which also changes
    # the last bits of results): for functions each run once or twice that is most of their
    # cost. The Python checks run the functions as written, which is what the reference
    # outputs were computed with (eagerly); the native half checks the optimised graph, as
    # TF Serving runs it. The option is process-wide and would be recorded in every call op a
    # later trace writes: it is unset again afterwards, as a fresh process has it.
    M.tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
    try:
        return _validate(params)
    finally:
        M.tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": None})


def _validate(params):
    _fresh_session()
    import numpy as np

    sm_dir = _abs_path(params, "saved_model_dir")
    golden_dir = _abs_path(params, "golden_dir")
    out_dir = _abs_path(params, "outputs_dir", must_exist=False)
    fine_tune = bool(_param(params, "fine_tune_step", bool, default=True))
    expect_trainable = bool(_param(params, "expect_trainable", bool, default=True))
    require_training = bool(_param(params, "require_training", bool, default=True))
    golden_path = os.path.join(golden_dir, "golden.json")
    if not os.path.exists(golden_path):
        raise FileNotFoundError(f"golden.json not found in {golden_dir}")
    golden = _read_json(golden_path)
    feeds = {i["name"]: np.load(os.path.join(golden_dir, i["file"]), allow_pickle=False) for i in golden["inputs"]}
    names_out = [o["name"] for o in golden["outputs"]]
    if not os.path.isdir(sm_dir):
        raise FileNotFoundError(f"not a SavedModel directory: {sm_dir}")

    tf = M.tf
    checks = Checks()
    result = {"ok": False, "checks": checks.items, "regularization_loss_values": [], "hub": None, "keras3": None}
    try:
        obj = tf.saved_model.load(sm_dir)
        checks.add("load", True, "tf.saved_model.load succeeded")
    except Exception as e:
        checks.error("load", e)
        return result

    single = golden.get("input_structure", "single") == "single" and len(golden["inputs"]) == 1
    names_in = [i["name"] for i in golden["inputs"]]
    feed = tf.constant(feeds[names_in[0]]) if single else {n: tf.constant(feeds[n]) for n in names_in}
    # The training checks (one SGD step, hub.KerasLayer's fit) keep every activation for the
    # gradient, and that memory grows with the batch: one example is enough, two where batch
    # normalisation needs batch statistics (or it is not known).
    examples = 1 if golden.get("has_batch_norm") is False else 2
    training_feeds = {n: a[:examples] if a.ndim > 0 else a for n, a in feeds.items()}
    training_feed = tf.constant(training_feeds[names_in[0]]) if single else {n: tf.constant(training_feeds[n]) for n in names_in}

    missing = [a for a in ("__call__", "variables", "trainable_variables", "regularization_losses") if not hasattr(obj, a)]
    checks.add(
        "api",
        not missing,
        "Reusable SavedModel API present" if not missing else f"missing attribute(s): {', '.join(missing)}",
        missing=missing,
    )
    variables = list(getattr(obj, "variables", []) or [])
    trainable_vars = list(getattr(obj, "trainable_variables", []) or [])
    reg_fns = list(getattr(obj, "regularization_losses", []) or [])
    # No snapshot of the variables to restore them after the checks that change them: they run
    # last (training=True calls move batch-norm statistics, the fine-tuning steps move weights),
    # nothing after them reads a weight, and a copy would be one more model in memory.

    has_dropout = golden.get("has_dropout")
    has_bn = golden.get("has_batch_norm")
    call_ok = callable(getattr(obj, "__call__", None)) and "__call__" not in missing  # noqa: B004 - the API's __call__ attribute
    # The Reusable SavedModel API makes `training` optional; exportctl's own packages always
    # have it (require_training), any other SavedModel may do without.
    takes_training = True

    def invoke(inputs, training):
        return obj(inputs, training=training) if takes_training else obj(inputs)

    # __call__(training=False) vs golden, and determinism (before any training=True call)
    out_false = first_run = None
    if call_ok:
        try:
            try:
                out_false = obj(feed, training=False)
            except TypeError as e:
                if require_training or "training" not in str(e):
                    raise
                takes_training = False
                out_false = obj(feed)
            by = "__call__(training=False)" if takes_training else "__call__"
            note = "" if takes_training else "its __call__ takes no training argument, which the Reusable SavedModel API allows"
            first_run = computed(out_false, golden, out_dir, "call_training_false", by)
            checks.add("call_training_false", True, note, computed=first_run, takes_training=takes_training)
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
            if sorted(names_out) != sig_outputs:
                problems.append(f"outputs {sig_outputs}, expected {sorted(names_out)}")
            if problems:
                checks.add(
                    "serving_default", False, "serving_default " + "; ".join(problems), inputs=sig_inputs, outputs=sig_outputs
                )
            else:
                out = sig(**{n: tf.constant(feeds[n]) for n in names_in})
                outputs = computed(dict(out), golden, out_dir, "serving_default", "serving_default")
                del out
                checks.add("serving_default", True, "", computed=outputs, inputs=sig_inputs)
    except Exception as e:
        checks.error("serving_default", e)

    # keras.layers.TFSMLayer in a Keras 3 model, over the object loaded above: its outputs now,
    # before the checks below move the weights (a training=True call moves batch-norm
    # statistics); its fit step last.
    keras3 = None
    has_keras3 = _dist_version("keras") is not None and _dist_version("keras").startswith("3.")
    if has_keras3:
        try:
            keras3 = keras3_outputs(obj, sm_dir, golden, feeds, single, len(trainable_vars), out_dir)
        except Exception as e:
            keras3 = e
        checks.lap(f"check {KERAS3} (outputs)")

    # hub.KerasLayer in a tf_keras model, over the same object: its outputs now, its fit step
    # after the fine-tuning step (whose gradient of the restored functions it reuses).
    hub = None
    has_hub = _dist_version("tensorflow-hub") is not None and (
        _dist_version("tf-keras") is not None or _dist_version("tf_keras") is not None
    )
    if has_hub:
        try:
            hub = hub_outputs(obj, golden, feeds, single, out_dir)
        except Exception as e:
            hub = e
        checks.lap(f"check {HUB} (outputs)")

    # training flag. Each run's outputs are written as they come (a language model's logits
    # over its vocabulary are large: none is kept) and exportctl compares the runs with the
    # piece's tolerance: threaded reductions make two runs of one function differ in their last
    # bits, so equal bits would be the wrong test.
    if call_ok and first_run is not None:
        try:
            shapes_false = [tuple(a.shape) for a in tf.nest.flatten(out_false)]
            out_false = None
            runs = {"false": first_run}
            runs["false_again"] = computed(
                invoke(feed, False), golden, out_dir, "training_flag/false_again", "__call__(training=False), called again"
            )
            t1 = invoke(feed, True)
            flat_1 = tf.nest.flatten(t1)
            shapes_ok = [tuple(a.shape) for a in flat_1] == shapes_false
            finite = all(bool(tf.reduce_all(tf.math.is_finite(a))) for a in flat_1 if a.dtype.is_floating)
            checks.add(
                "call_training_true",
                shapes_ok and finite,
                "training=True runs"
                if shapes_ok and finite
                else (
                    "training=True output shapes differ from training=False"
                    if not shapes_ok
                    else "training=True produced non-finite values"
                ),
                shapes=[list(a.shape) for a in flat_1],
            )
            runs["true"] = computed(t1, golden, out_dir, "training_flag/true", "__call__(training=True)")
            del flat_1, t1
            runs["true_again"] = computed(
                invoke(feed, True), golden, out_dir, "training_flag/true_again", "__call__(training=True), called again"
            )
            checks.add("training_flag", True, "", runs=runs, has_dropout=has_dropout, has_batch_norm=has_bn)
        except Exception as e:
            checks.error("training_flag", e)
    else:
        checks.skip("call_training_true", "__call__ unavailable")
        checks.skip("training_flag", "__call__ unavailable")

    # variables
    var_ids = {id(v) for v in variables}
    var_names = {v.name for v in variables}
    outside = [v.name for v in trainable_vars if id(v) not in var_ids and v.name not in var_names]
    checks.add(
        "variables_superset",
        not outside,
        f"{len(variables)} variables include all {len(trainable_vars)} trainable ones"
        if not outside
        else f"trainable variables missing from variables: {outside[:10]}",
        variables=len(variables),
        trainable_variables=len(trainable_vars),
        missing=outside[:50],
    )
    if expect_trainable:
        checks.add(
            "trainable_variables",
            bool(trainable_vars),
            f"{len(trainable_vars)} trainable variables" if trainable_vars else "expected trainable variables, found none",
            count=len(trainable_vars),
        )
    else:
        checks.add(
            "trainable_variables",
            not trainable_vars,
            "no trainable variables (trainable = false)"
            if not trainable_vars
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
        "regularization_losses",
        not bad,
        f"{len(reg_fns)} regularization loss(es), all finite scalars" if not bad else "; ".join(bad),
        count=len(reg_fns),
        values=values,
    )

    # optimizer state must not have reached the package
    try:
        keys = [k for k, _ in tf.train.list_variables(os.path.join(sm_dir, "variables", "variables"))]
        slots = [k for k in keys if "OPTIMIZER_SLOT" in k or re.search(r"(^|/)optimizer(/|\.|$)", k)]
        checks.add(
            "no_optimizer_state",
            not slots,
            f"{len(keys)} checkpoint keys, no optimizer state" if not slots else f"optimizer state in the package: {slots[:5]}",
            checkpoint_keys=len(keys),
            optimizer_keys=slots[:50],
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
                out = invoke(training_feed, True)
                flat = _flat_float_outputs(out)
                loss = tf.constant(0.0, tf.float32)
                for t in flat:
                    shape = t.shape.as_list() if t.shape.is_fully_defined() else tf.shape(t).numpy()
                    loss += tf.reduce_mean(tf.cast(t, tf.float32) * tf.constant(rng.standard_normal(shape, dtype=np.float32)))
                for fn in reg_fns:
                    loss += tf.cast(fn(), tf.float32)
                del out, flat
            grads = tape.gradient(loss, trainable_vars)
            del tape
            none, zero, unchanged = [], [], []
            for i, v in enumerate(trainable_vars):
                # Each gradient is dropped once applied: the step's memory shrinks as it goes.
                g, grads[i] = grads[i], None
                if g is None:
                    none.append(v.name)
                    continue
                before = fingerprint(v)
                if not nonzero(g):
                    zero.append(v.name)
                if isinstance(g, tf.IndexedSlices):  # an embedding's rows: never made dense
                    v.scatter_sub(tf.IndexedSlices(tf.cast(g.values, v.dtype) * 0.1, g.indices, g.dense_shape))
                else:
                    v.assign_sub(tf.cast(g, v.dtype) * 0.1)
                del g
                if before == fingerprint(v):
                    unchanged.append(v.name)
            problems = []
            if none:
                problems.append(f"{len(none)} variable(s) without gradient: {none[:5]}")
            if zero:
                problems.append(f"{len(zero)} variable(s) with an all-zero gradient: {zero[:5]}")
            if unchanged and len(unchanged) != len(zero):
                problems.append(f"{len(unchanged)} variable(s) unchanged by the step: {unchanged[:5]}")
            checks.add(
                "fine_tune_step",
                not problems,
                f"one SGD step changed all {len(trainable_vars)} trainable variables" if not problems else "; ".join(problems),
                loss=float(loss.numpy()),
                no_gradient=none,
                zero_gradient=zero,
                unchanged=unchanged,
                trainable_variables=len(trainable_vars),
            )
        except Exception as e:
            checks.error("fine_tune_step", e)
        # The gradients go before hub.KerasLayer's fit makes its own.
        grads = None
        release_memory()

    # hub.KerasLayer's fit step
    if not has_hub:
        checks.skip(HUB, "tensorflow_hub / tf_keras not installed")
    elif isinstance(hub, Exception):
        checks.error(HUB, hub)
    else:
        try:
            result["hub"] = hub_check(hub, golden, training_feeds, single, checks, len(reg_fns))
        except Exception as e:
            checks.error(HUB, e)
    hub = None

    # The Keras 3 check's fit step. What the checks above held goes first (the tf_keras model
    # around the hub layer, their gradients); the loaded object stays, inside the TFSMLayer.
    expect = {"trainable": len(trainable_vars), "fine_tune": fine_tune}
    obj = variables = trainable_vars = reg_fns = feed = training_feed = invoke = None
    if M._tf_keras is not None:
        M._tf_keras.backend.clear_session()
    release_memory()
    if not has_keras3:
        checks.skip(KERAS3, "Keras 3 is not installed")
    elif isinstance(keras3, Exception):
        checks.error(KERAS3, keras3)
    else:
        try:
            result["keras3"] = keras3_fit(keras3, golden, training_feeds, single, checks, expect)
        except Exception as e:
            checks.error(KERAS3, e)
        keras3 = None
        M.keras.backend.clear_session(free_memory=False)
    # Provisional: exportctl judges the outputs each check computed, and decides.
    result["ok"] = all(c["ok"] for c in checks.items)
    return result
