"""Trains the legacy-keras model and saves it as models/iris.h5 (tf_keras, Keras 2's HDF5).

Many published models are still tf_keras `.h5` files. This one is trained the way older
scripts often were: with the Ftrl optimizer and its L1 regularization strength, which lives in
the optimizer, not in the layers, so no SavedModel can carry it. exportctl detects it at export
and warns consumers in the generated documentation. The layers also have an L2 kernel
regularizer (exported as `regularization_losses`) and a dropout layer.

Runs offline in a couple of seconds on random data; the committed .h5 is what it writes:
    python train.py
"""

import os

import numpy as np
import tf_keras as keras

FEATURES, CLASSES = 4, 3


def build() -> keras.Model:
    inputs = keras.Input(shape=(FEATURES,), name="measurements")
    x = keras.layers.Dense(16, activation="relu", kernel_regularizer=keras.regularizers.L2(1e-3), name="hidden")(inputs)
    x = keras.layers.Dropout(0.25, name="dropout")(x)
    logits = keras.layers.Dense(CLASSES, name="logits")(x)
    probabilities = keras.layers.Softmax(name="probabilities")(logits)
    return keras.Model(inputs, probabilities, name="iris")


def main() -> None:
    keras.utils.set_random_seed(0)
    model = build()
    model.compile(
        optimizer=keras.optimizers.Ftrl(learning_rate=0.1, l1_regularization_strength=0.01),
        loss="sparse_categorical_crossentropy",
    )
    rng = np.random.default_rng(0)
    x = rng.normal(size=(150, FEATURES)).astype("float32")
    y = (x[:, 0] > 0).astype("int64") + (x[:, 1] > 0).astype("int64")
    model.fit(x, y, epochs=5, batch_size=16, verbose=0)
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "models", "iris.h5")
    model.save(out, save_format="h5")  # with the optimizer, as training scripts usually do
    print(f"wrote {out} ({os.path.getsize(out)} bytes)")


if __name__ == "__main__":
    main()
