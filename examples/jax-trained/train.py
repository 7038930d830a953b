"""Trains the jax-trained example's model under Keras 3's JAX backend and saves it as
models/classifier.keras.

A tiny Keras 3 functional classifier of the kind people train on JAX today: a Dense layer
with an L2 regularizer, batch normalization, dropout and a softmax head. Nothing in it is
specific to a backend (only `keras.layers`), which is what lets exportctl load the file
under TensorFlow and export it. The backend is chosen before Keras is imported, so this
script trains on JAX whatever your shell or ~/.keras/keras.json say.

Needs `jax` next to `keras` (the managed TensorFlow runtime has neither need nor JAX):
    python3 -m venv /tmp/jaxvenv && /tmp/jaxvenv/bin/pip install "jax[cpu]" "keras==3.15.1"
    /tmp/jaxvenv/bin/python train.py
Runs offline in a few seconds on random data; the committed model file is what it writes.
"""

import os

os.environ["KERAS_BACKEND"] = "jax"

import keras  # noqa: E402
import numpy as np  # noqa: E402

FEATURES, CLASSES = 8, 3


def build_classifier() -> keras.Model:
    inputs = keras.Input(shape=(FEATURES,), name="measurements")
    x = keras.layers.Dense(16, activation="relu", kernel_regularizer=keras.regularizers.L2(1e-3), name="hidden")(inputs)
    x = keras.layers.BatchNormalization(name="hidden_bn")(x)
    x = keras.layers.Dropout(0.2, name="dropout")(x)
    logits = keras.layers.Dense(CLASSES, name="logits")(x)
    probabilities = keras.layers.Softmax(name="probabilities")(logits)
    return keras.Model(inputs, probabilities, name="classifier")


def main() -> None:
    assert keras.backend.backend() == "jax", keras.backend.backend()
    keras.utils.set_random_seed(0)
    model = build_classifier()
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, FEATURES)).astype("float32")
    y = (x[:, :CLASSES].argmax(axis=1)).astype("int64")
    history = model.fit(x, y, epochs=5, batch_size=32, verbose=0)
    here = os.path.dirname(os.path.abspath(__file__))
    out = os.path.join(here, "models", "classifier.keras")
    model.save(out)  # with the optimizer, as training scripts usually do
    # Golden inputs for validation, and JAX's own logits for them: the tests check that the
    # package, run by TensorFlow, computes what JAX computed.
    samples = rng.normal(size=(4, FEATURES)).astype("float32")
    logits = keras.Model(model.input, model.get_layer("logits").output)(samples, training=False)
    np.savez(os.path.join(here, "data", "samples.npz"), measurements=samples)
    np.savez(os.path.join(here, "data", "jax-logits.npz"), measurements=samples, logits=np.asarray(logits))
    accuracy = history.history["accuracy"][-1]
    print(f"trained on {keras.backend.backend()}: accuracy {accuracy:.3f}; wrote {out} ({os.path.getsize(out)} bytes)")


if __name__ == "__main__":
    main()
