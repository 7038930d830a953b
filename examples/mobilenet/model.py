"""The mobilenet example's model: MobileNetV3-Small for 96x96 images and 10 classes.

The model is built here, by a function the manifest names (`source = "model.py:build"`),
rather than committed: its weights alone are about 6 MB. `weights=None` keeps it offline (no
download; the weights are the seeded initial ones), and the optimizer is attached and built
the way a training script leaves it, so that the export shows what leaving it out saves:
Adam's two slots per weight are twice the model's size.
"""

import keras


def build() -> keras.Model:
    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV3Small(input_shape=(96, 96, 3), weights=None, classes=10)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    model.optimizer.build(model.trainable_variables)
    return model
