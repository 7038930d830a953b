"""Trains the quickstart model and saves it as models/classifier.keras.

A small Keras 3 functional classifier with everything a Hub export has to get right: an L2
weight regularizer (must become `regularization_losses`), batch normalization and dropout
(their settings must be documented, `training=True/False` must behave differently), a softmax
head (consumers want the logits before it) and an Adam optimizer (must not reach a package).

Runs offline in a few seconds on random data; the committed model file is what it writes.
    python train.py
"""

import os

import keras
import numpy as np

FEATURES, CLASSES = 16, 10


def build_classifier() -> keras.Model:
    inputs = keras.Input(shape=(FEATURES,), name="features")
    x = keras.layers.Dense(64, activation="relu", kernel_regularizer=keras.regularizers.L2(1e-4), name="hidden")(inputs)
    x = keras.layers.BatchNormalization(name="hidden_bn")(x)
    x = keras.layers.Dropout(0.3, name="dropout")(x)
    x = keras.layers.Dense(32, activation="relu", name="embedding")(x)
    logits = keras.layers.Dense(CLASSES, name="logits")(x)
    probabilities = keras.layers.Activation("softmax", name="probabilities")(logits)
    return keras.Model(inputs, probabilities, name="classifier")


def main() -> None:
    keras.utils.set_random_seed(0)
    model = build_classifier()
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, FEATURES)).astype("float32")
    y = (x[:, :CLASSES].argmax(axis=1)).astype("int64")
    model.fit(x, y, epochs=3, batch_size=32, verbose=0)
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "models", "classifier.keras")
    model.save(out)  # with the optimizer, as training scripts usually do
    print(f"wrote {out} ({os.path.getsize(out)} bytes)")


if __name__ == "__main__":
    main()
