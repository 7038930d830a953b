"""The hand-written alternative to `exportctl -C examples/mobilenet build`.

What a careful user writes when exporting the example by hand, doing the same work as the
manifest: build the model (the same `model.py:build`), leave the optimizer out, apply the
manifest's dropout and batch-norm settings, cut the two pieces by layer name, save each as a
Reusable SavedModel (`__call__` traced with training True/False, `variables`,
`trainable_variables`, `regularization_losses`) with a `serving_default` signature, reload each
package and compare its outputs with the Keras model's, load each in `hub.KerasLayer(trainable=True)`
in a second process and fine-tune it one step, and write `model.tar.gz`.

With `--litert`, also what the manifest's LiteRT variant does: convert `classification` with
dynamic-range quantization (`tf.lite.TFLiteConverter`), run `model.tflite` with the LiteRT
interpreter (`ai_edge_litert`) on the same images and compare its logits with the Keras
model's within 0.1, and list the ops it uses.

    python baseline_mobilenet.py EXAMPLE_DIR OUT_DIR [--litert]

`benches/cold_build.rs` times it against exportctl in the same run.
"""

import os
import subprocess
import sys
import tarfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

PIECES = {"classification": "flatten", "feature-vector": "global_average_pooling2d"}
DROPOUT = 0.1
MOMENTUM, EPSILON = 0.99, 0.001
ATOL = RTOL = 1e-4
LITERT_PIECE, LITERT_TOL = "classification", 0.1


def export(example, out, litert):
    import numpy as np
    import tensorflow as tf
    import keras

    sys.path.insert(0, example)
    import model as model_py

    model = model_py.build()
    # The optimizer stays out: only the layers' weights are saved below.
    for layer in model.layers:
        if isinstance(layer, keras.layers.Dropout):
            layer.rate = DROPOUT
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum, layer.epsilon = MOMENTUM, EPSILON

    class Reusable(tf.train.Checkpoint):
        pass

    def regularizer_fn(reg, var):
        return tf.function(lambda: reg(var), input_signature=[])

    def call_fn(piece):
        return tf.function(lambda x, training=False: piece(x, training=training))

    def serve_fn(piece, spec):
        return tf.function(lambda image: {"output_0": piece(image, training=False)}, input_signature=[spec])

    rng = np.random.default_rng(0)
    images = rng.standard_normal((2, 96, 96, 3)).astype("float32")
    for name, layer_name in PIECES.items():
        piece = keras.Model(model.inputs, model.get_layer(layer_name).output, name=name)
        call = call_fn(piece)
        spec = tf.TensorSpec([None, 96, 96, 3], tf.float32, name="image")
        call.get_concrete_function(spec, training=True)
        call.get_concrete_function(spec, training=False)
        wrapper = Reusable()
        wrapper.variables = [v.value for v in piece.variables]
        wrapper.trainable_variables = [v.value for v in piece.trainable_variables]
        wrapper.regularization_losses = [
            regularizer_fn(layer.kernel_regularizer, layer.kernel.value)
            for layer in piece.layers
            if getattr(layer, "kernel_regularizer", None) is not None
        ]
        wrapper.__call__ = call
        serve = serve_fn(piece, spec)
        path = os.path.join(out, name, "saved_model")
        tf.saved_model.save(wrapper, path, signatures={"serving_default": serve.get_concrete_function()})

        expected = piece(images, training=False).numpy()
        loaded = tf.saved_model.load(path)
        got = loaded(tf.constant(images), training=False).numpy()
        served = loaded.signatures["serving_default"](image=tf.constant(images))["output_0"].numpy()
        for what, value in (("__call__", got), ("serving_default", served)):
            if not np.allclose(value, expected, atol=ATOL, rtol=RTOL):
                sys.exit(f"{name}: {what} differs from Keras by {np.abs(value - expected).max()}")

        with tarfile.open(os.path.join(out, name, "model.tar.gz"), "w:gz") as tar:
            for entry in sorted(os.listdir(path)):
                tar.add(os.path.join(path, entry), arcname=entry)

        if litert and name == LITERT_PIECE:
            convert_and_check(path, os.path.join(out, name, "model.tflite"), images, expected)


def convert_and_check(saved_model, tflite, images, expected):
    """model.tflite with int8 weights, run by the LiteRT interpreter, within LITERT_TOL."""
    import numpy as np
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    with open(tflite, "wb") as f:
        f.write(converter.convert())
    interpreter = Interpreter(model_path=tflite, num_threads=1)
    got = interpreter.get_signature_runner("serving_default")(image=images)["output_0"]
    if not np.allclose(got, expected, atol=LITERT_TOL, rtol=LITERT_TOL):
        sys.exit(f"{LITERT_PIECE}: LiteRT differs from Keras by {np.abs(got - expected).max()}")
    ops = sorted({d["op_name"] for d in interpreter._get_ops_details()})
    print(f"{LITERT_PIECE}: model.tflite {os.path.getsize(tflite)} bytes, ops {ops}")


def hub_check(out):
    """In a second process, as a consumer: each package in hub.KerasLayer, one fit step."""
    import numpy as np
    import tensorflow_hub as hub
    import tf_keras

    images = np.random.default_rng(0).standard_normal((2, 96, 96, 3)).astype("float32")
    for name in PIECES:
        layer = hub.KerasLayer(os.path.join(out, name, "saved_model"), trainable=True)
        model = tf_keras.Sequential([tf_keras.Input((96, 96, 3)), layer, tf_keras.layers.Flatten(), tf_keras.layers.Dense(1)])
        model.compile(optimizer="sgd", loss="mse")
        before = [w.numpy() for w in layer.trainable_weights]
        model.fit(images, np.zeros((2, 1), "float32"), epochs=1, verbose=0)
        moved = sum(not np.array_equal(b, w.numpy()) for b, w in zip(before, layer.trainable_weights))
        if moved != len(before):
            sys.exit(f"{name}: {len(before) - moved} trainable weights did not move")


if __name__ == "__main__":
    if sys.argv[1] == "--hub":
        hub_check(sys.argv[2])
    else:
        example, out = sys.argv[1], sys.argv[2]
        export(example, out, litert="--litert" in sys.argv[3:])
        subprocess.run([sys.executable, __file__, "--hub", out], check=True)
