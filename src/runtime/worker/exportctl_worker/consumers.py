"""The consumer checks of ``validate``: a package used the way its consumers use it, inside a
model of their Keras, fine-tuned one ``fit`` step on the training feed.

* ``hub_outputs`` then ``hub_check``: ``hub.KerasLayer(trainable=True)`` in a tf_keras (Keras 2)
  model.
* ``keras3_outputs`` then ``keras3_fit``: ``keras.layers.TFSMLayer(path,
  call_endpoint="serving_default")`` in a Keras 3 functional model (``hub.KerasLayer`` is not a
  Keras 3 layer). TFSMLayer returns a dict of the signature's outputs; with several inputs it is
  subclassed so that its ``call`` passes them to the signature by name (``tfsm_layer``), as
  ``model.md`` shows.

Each computes its outputs on the golden inputs before any check moves a weight (they are written
for exportctl to judge, as every loader's are), and fits its step after the checks that compute.

Both reuse the SavedModel object validate loaded (``hub.KerasLayer`` takes it; TFSMLayer gets it
from its own ``tf.saved_model.load(path)`` call): the weights are in memory once, and the
gradients TensorFlow builds for the restored functions are built once. Both train with in-place
SGD and eager ``fit`` (``run_eagerly``: graph-mode fit leaves memory behind in a long-lived
process), and fingerprint the weights instead of copying them. Neither seeds the global random
generators: ``set_random_seed`` (as ``clear_session``) empties TensorFlow's kernel cache, and
every restored function, its gradient among them, would be instantiated again (4 s of a 5 s
check at BERT-base size). Their Dense heads have seeded initialisers and ``fit`` does not
shuffle, so the reported losses are the same in every build. Imports TensorFlow and both
Kerases lazily through ``modules.M``; writes only what ``hub_outputs`` and ``keras3_outputs`` hand
exportctl.
"""

import contextlib
import math
import os

from .checks import computed, fingerprint, nonzero
from .modules import M

HUB = "hub_keras_layer"
KERAS3 = "keras3_tfsm_layer"


def hub_outputs(obj, golden, feeds, single, out_dir):
    """The first half of the tf_keras check, run before any check moves a weight:
    ``hub.KerasLayer(trainable=True)`` over the SavedModel already loaded (what
    ``hub.load(path)`` returns: loading it again would cost a second copy of the weights and a
    second tracing of the gradient) in a tf_keras functional model, called on the golden inputs
    outside training, as a consumer's ``predict`` calls it. What it returned is written under ``out_dir`` for exportctl
    to judge. Returns the state ``hub_check`` goes on from."""
    tf, tfk, hub = M.tf, M.tf_keras, M.hub
    layer = hub.KerasLayer(obj, trainable=True)
    ins = _inputs(tfk, golden)
    x = next(iter(ins.values())) if single else ins
    model = tfk.Model(x, layer(x))
    names = [i["name"] for i in golden["inputs"]]
    feed = tf.constant(feeds[names[0]]) if single else {n: tf.constant(feeds[n]) for n in names}
    written = computed(model(feed, training=False), golden, out_dir, HUB, "hub.KerasLayer in a tf_keras model")
    return {"layer": layer, "written": written}


def _inputs(keras, golden):
    """A ``keras.Input`` per golden input, by name (either Keras: both take the same arguments)."""
    return {
        i["name"]: keras.Input(shape=tuple(None if d < 0 else d for d in i["shape"][1:]), dtype=i["dtype"], name=i["name"])
        for i in golden["inputs"]
    }


def hub_check(state, golden, feeds, single, checks, reg_count):
    """The second half, run after the fine_tune_step check (whose gradient of the restored
    functions it reuses): the layer of ``hub_outputs`` in a tf_keras model, fine-tuned one
    ``fit`` step; its losses are the SavedModel's regularization losses. Records the check."""
    import numpy as np

    tf, tfk = M.tf, M.tf_keras
    layer, written = state["layer"], state["written"]
    ins = _inputs(tfk, golden)
    x = next(iter(ins.values())) if single else ins
    out = layer(x)
    flat = [t for t in tf.nest.flatten(out) if t.dtype.is_floating]
    if not flat:
        return checks.add(HUB, False, "the layer has no floating-point output to train on", computed=written) and None
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
    head = tfk.layers.Dense(1, kernel_initializer=tfk.initializers.GlorotUniform(seed=0))(joined)
    model = tfk.Model(list(ins.values()) if not single else x, head)
    # run_eagerly: a graph-mode fit() leaves ~200 MB per call inside TensorFlow's runtime (MobileNet;
    # the Python objects are freed), which a long-lived worker cannot afford; eager fit does not leak
    # The legacy SGD updates each variable in place; the current one stages every update at once,
    # a second copy of the model in memory.
    model.compile(optimizer=tfk.optimizers.legacy.SGD(0.01), loss="mse", run_eagerly=True)
    # A digest per weight, not a copy: the model is not held twice.
    before = [fingerprint(w) for w in layer.trainable_weights]
    xs = feeds[golden["inputs"][0]["name"]] if single else [feeds[i["name"]] for i in golden["inputs"]]
    n = len(next(iter(feeds.values())))
    y = np.random.default_rng(0).standard_normal((n, 1)).astype("float32")
    hist = model.fit(xs, y, epochs=1, batch_size=n, shuffle=False, verbose=0)
    moved = sum(1 for w, b in zip(layer.trainable_weights, before) if fingerprint(w) != b)
    info = {"trainable_weights": len(layer.trainable_weights), "losses": len(layer.losses), "moved": moved}
    problems = []
    if len(layer.losses) != reg_count:
        problems.append(
            f"hub.KerasLayer exposes {len(layer.losses)} losses, the SavedModel has {reg_count} regularization_losses"
        )
    if moved != len(before):
        problems.append(f"{len(before) - moved} of {len(before)} trainable weights did not move in one fit step")
    loss = float(hist.history["loss"][-1])
    if not math.isfinite(loss):
        problems.append(f"the fit step's loss is {loss}")
    checks.add(
        HUB,
        not problems,
        "; ".join(problems)
        or (
            f"hub.KerasLayer(trainable=True) fine-tuned one step: {moved}/{len(before)} trainable weights moved, "
            f"{len(layer.losses)} losses"
        ),
        computed=written,
        loss=loss,
        **info,
    )
    return info


def tfsm_layer(path, single, trainable):
    """``keras.layers.TFSMLayer`` over ``serving_default``, as ``model.md`` tells Keras 3 users to
    write it. TFSMLayer passes its input to the endpoint as one positional argument, which a
    signature of several named inputs refuses: with several inputs, ``call`` passes the dict by
    name instead."""
    keras = M.keras
    if single:
        return keras.layers.TFSMLayer(path, call_endpoint="serving_default", trainable=trainable)

    class ServingLayer(keras.layers.TFSMLayer):
        def call(self, inputs):
            return self.call_endpoint_fn(**inputs)

    return ServingLayer(path, call_endpoint="serving_default", trainable=trainable)


def keras3_outputs(obj, sm_dir, golden, feeds, single, trainable, out_dir):
    """The first half of the Keras 3 check, run before any check moves a weight: TFSMLayer as
    its users write it, over ``obj`` (what ``tf.saved_model.load(sm_dir)`` returned, which
    TFSMLayer would call again: the weights stay in memory once) in a Keras 3 functional model,
    called on the golden inputs (serving_default computes with ``training=False``); what it returned is written under
    ``out_dir`` for exportctl to judge. Returns the state ``keras3_fit`` goes on from."""
    keras = M.keras
    if keras.backend.backend() != "tensorflow":
        return {"failed": f"Keras runs on {keras.backend.backend()}: TFSMLayer needs TensorFlow"}
    with _loading_gives(obj, sm_dir):
        layer = tfsm_layer(sm_dir, single, trainable=trainable > 0)
    names = [i["name"] for i in golden["inputs"]]
    feed = feeds[names[0]] if single else {n: feeds[n] for n in names}
    ins = _inputs(keras, golden)
    x = next(iter(ins.values())) if single else ins
    model = keras.Model(x, layer(x))
    outputs = model(feed, training=False)
    problems = []
    if not isinstance(outputs, dict):
        problems.append(f"TFSMLayer returned {type(outputs).__name__}, not the dict of serving_default's outputs")
        outputs = {}
    written = computed(outputs, golden, out_dir, KERAS3, "keras.layers.TFSMLayer in a Keras 3 model")
    return {"layer": layer, "written": written, "problems": problems}


@contextlib.contextmanager
def _loading_gives(obj, sm_dir):
    """``tf.saved_model.load(sm_dir)`` returns ``obj`` (already loaded from it) while inside."""
    saved_model = M.tf.saved_model
    load = saved_model.load
    wanted = os.path.realpath(sm_dir)

    def reuse(export_dir, *args, **kwargs):
        if not args and not kwargs and os.path.realpath(os.fspath(export_dir)) == wanted:
            return obj
        return load(export_dir, *args, **kwargs)

    saved_model.load = reuse
    try:
        yield
    finally:
        saved_model.load = load


def keras3_fit(state, golden, training_feeds, single, checks, expect):
    """The second half, run last: the trainable variables exposed as the layer's trainable
    weights, and for a fine-tunable piece one ``fit`` step of a Keras 3 functional model around
    the layer, giving every one a gradient and moving weights. Records the check.

    ``expect``: ``trainable`` (the number of ``trainable_variables`` the SavedModel has; 0 for
    a frozen piece), ``fine_tune`` (the fit step is wanted)."""
    import numpy as np

    if "failed" in state:
        return checks.add(KERAS3, False, state["failed"]) and None
    layer, written, problems = state["layer"], state["written"], state["problems"]
    trainable = len(layer.trainable_weights)
    if trainable != expect["trainable"]:
        problems.append(
            f"TFSMLayer exposes {trainable} trainable weights, the SavedModel has {expect['trainable']} trainable_variables"
        )
    info = {"trainable_weights": trainable, "reached": 0, "moved": 0}
    loss = None
    if trainable and expect["fine_tune"] and not problems:
        reached, unreached, moved, loss = _fit_one_step(layer, golden, training_feeds, single)
        info.update(reached=reached, moved=moved)
        if unreached:
            problems.append(
                f"{len(unreached)} of {trainable} trainable weights get no gradient through TFSMLayer: {unreached[:5]}"
            )
        elif moved == 0:
            problems.append(f"one fit step moved none of the {trainable} trainable weights")
        if not math.isfinite(loss):
            problems.append(f"the fit step's loss is {loss}")
    if problems:
        message = "; ".join(problems)
    elif info["moved"]:
        # serving_default runs in inference mode: in a deep network whose batch-norm statistics
        # are barely trained, some gradients are too small to change a float32 in one step.
        # Each weight getting a gradient is what fine-tuning needs.
        message = f"all {trainable} trainable weights get a gradient, one fit step moved {info['moved']}"
    else:
        message = f"{trainable} trainable weights"
    details = dict(info)
    if loss is not None:
        details["loss"] = float(np.float64(loss))
    checks.add(KERAS3, not problems, message, computed=written, **details)
    return info


def _noting_sgd(learning_rate, reached):
    """Keras 3's SGD, noting in ``reached`` (by ``id`` of the variable) whether the gradient it
    applies to each variable is non-zero, before applying it: the fit step itself says where its
    gradients went, without a second forward and backward pass to find out."""

    class NotingSGD(M.keras.optimizers.SGD):
        def apply_gradients(self, grads_and_vars):
            pairs = list(grads_and_vars)
            for g, v in pairs:
                reached[id(v)] = nonzero(g)
            return super().apply_gradients(pairs)

    return NotingSGD(learning_rate)


def _fit_one_step(layer, golden, feeds, single):
    """One ``fit`` step of a Keras 3 model around ``layer`` on ``feeds`` with random targets;
    returns (how many trainable weights get a non-zero gradient, the names of those that do
    not, how many the step moved, the loss)."""
    import numpy as np

    keras = M.keras
    ins = _inputs(keras, golden)
    outputs = layer(next(iter(ins.values())) if single else ins)
    features = []  # each floating output as [batch, k]: a random Dense head gives each a gradient
    for name in sorted(outputs):
        t = outputs[name]
        if "float" not in str(t.dtype):
            continue
        t = keras.ops.cast(t, "float32") if str(t.dtype) != "float32" else t
        rank, dims = len(t.shape), t.shape[1:]
        if rank <= 1:
            features.append(keras.layers.Reshape((1,))(t))
        elif all(d is not None for d in dims):
            features.append(keras.layers.Flatten()(t) if rank > 2 else t)
        else:  # unknown non-batch dimensions: averaged away
            features.append(keras.layers.Lambda(lambda z, axes=tuple(range(1, rank)): keras.ops.mean(z, axis=axes)[:, None])(t))
    if not features:
        raise ValueError("serving_default has no floating-point output to train on")
    joined = features[0] if len(features) == 1 else keras.layers.Concatenate()(features)
    model = keras.Model(ins, keras.layers.Dense(1, kernel_initializer=keras.initializers.GlorotUniform(seed=0))(joined))
    # Plain SGD updates each variable in place (no slots); eager, not compiled by XLA: one step
    # does not pay for a compilation, and leaves nothing behind in a long-lived process.
    reached = {}
    model.compile(optimizer=_noting_sgd(0.01, reached), loss="mse", run_eagerly=True, jit_compile=False)
    before = [fingerprint(w) for w in layer.trainable_weights]
    n = len(next(iter(feeds.values())))
    xs = {i["name"]: feeds[i["name"]] for i in golden["inputs"]}
    y = np.random.default_rng(0).standard_normal((n, 1)).astype("float32")
    history = model.fit(xs, y, epochs=1, batch_size=n, shuffle=False, verbose=0)
    unreached = [w.name for w in layer.trainable_weights if not reached.get(id(w), False)]
    moved = sum(1 for w, b in zip(layer.trainable_weights, before) if fingerprint(w) != b)
    return len(layer.trainable_weights) - len(unreached), unreached, moved, float(history.history["loss"][-1])
