"""Canonical SavedModel bytes (exportctl_worker.canonical): the same model saved twice in one
process, with TensorFlow's function counter moved on in between, ends up byte-identical."""

import os
import tempfile
import unittest

from exportctl_worker import canonical
from exportctl_worker.modules import M


def save_tiny_module(path):
    """A fresh tf.Module with a variable, a traced __call__ and a serving signature."""
    tf = M.tf

    class Scale(tf.Module):
        def __init__(self):
            super().__init__()
            self.scale = tf.Variable(2.0, name="scale")

        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])
        def __call__(self, x):
            return {"y": tf.nn.softmax(x * self.scale)}

    module = Scale()
    tf.saved_model.save(module, path, signatures={"serving_default": module.__call__.get_concrete_function()})


def read(path):
    with open(path, "rb") as f:
        return f.read()


class CanonicalTest(unittest.TestCase):
    def test_two_saves_of_one_model_canonicalize_to_the_same_bytes(self):
        with tempfile.TemporaryDirectory() as tmp:
            first, second = os.path.join(tmp, "first"), os.path.join(tmp, "second")
            save_tiny_module(first)
            save_tiny_module(second)
            pb = "saved_model.pb"
            # TensorFlow's process-wide counter numbers the second save's functions differently.
            self.assertNotEqual(read(os.path.join(first, pb)), read(os.path.join(second, pb)))

            for path in (first, second):
                done = canonical.canonicalize(path)
                self.assertTrue(done["canonical"], done)
                self.assertGreater(done["functions"], 0, done)
            self.assertEqual(read(os.path.join(first, pb)), read(os.path.join(second, pb)))
            self.assertEqual(read(os.path.join(first, "fingerprint.pb")), read(os.path.join(second, "fingerprint.pb")))
            self.assertFalse([name for name in os.listdir(first) if name.endswith(".tmp")])

            # the canonical SavedModel still loads and computes
            loaded = M.tf.saved_model.load(second)
            out = loaded.signatures["serving_default"](x=M.tf.constant([[0.0, 0.0, 0.0]]))
            self.assertAlmostEqual(float(M.tf.reduce_sum(out["y"])), 1.0, places=5)

    def test_canonicalizing_twice_changes_nothing(self):
        with tempfile.TemporaryDirectory() as tmp:
            save_tiny_module(tmp)
            canonical.canonicalize(tmp)
            once = read(os.path.join(tmp, "saved_model.pb")), read(os.path.join(tmp, "fingerprint.pb"))
            self.assertTrue(canonical.canonicalize(tmp)["canonical"])
            self.assertEqual((read(os.path.join(tmp, "saved_model.pb")), read(os.path.join(tmp, "fingerprint.pb"))), once)


if __name__ == "__main__":
    unittest.main()
