"""Writes my_mul/: the TF Hub guide's MyMulModel, saved the low-level way (no Keras).

"Exporting a SavedModel" shows this object as the smallest Reusable SavedModel: one variable
v, `__call__` multiplying its input by v, and one regularization loss 0.001 * v**2 — 0.004
for v = 2.0, which exportctl's report and docs must show. The committed my_mul/ is what this
script writes:

    python make_saved_model.py
"""

import os
import shutil

import tensorflow as tf


class MyMulModel(tf.train.Checkpoint):
    def __init__(self, v_init):
        super().__init__()
        self.v = tf.Variable(v_init)
        self.variables = [self.v]
        self.trainable_variables = [self.v]
        self.regularization_losses = [
            tf.function(input_signature=[])(lambda: 0.001 * self.v**2),
        ]

    @tf.function(input_signature=[tf.TensorSpec(shape=None, dtype=tf.float32)])
    def __call__(self, inputs):
        return tf.multiply(inputs, self.v)


def main() -> None:
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "my_mul")
    shutil.rmtree(out, ignore_errors=True)
    tf.saved_model.save(MyMulModel(2.0), out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
