"""Errors that name a layer tied to another Keras backend (exportctl_worker.backends), from
exceptions made here: no Keras, JAX or PyTorch needed."""

import unittest

from exportctl_worker.backends import backend_error, import_error

# Stands in for keras.layers.Layer: backends.py recognises a layer by its base class's name
# and module.
Layer = type("Layer", (), {"__module__": "keras.src.layers.layer"})


class JaxSoftplus(Layer):
    name = "softplus"

    def call(self, x):
        raise ModuleNotFoundError("No module named 'jax'", name="jax")


class Plain(Layer):
    name = "plain"

    def call(self, x):
        raise ValueError("shapes do not match")


def _raised(fn):
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - the exception is the test's subject
        return e
    raise AssertionError("nothing raised")


class BackendErrorTest(unittest.TestCase):
    def test_a_layer_calling_jax_is_named_with_where_its_call_is(self):
        def rebuild():  # as Keras calls each layer while rebuilding a functional model
            try:
                JaxSoftplus().call(None)
            except ModuleNotFoundError as e:
                raise ValueError("Could not deserialize the model") from e

        error = backend_error(_raised(rebuild))
        self.assertIsNotNone(error)
        self.assertEqual(error.code, "BackendSpecific")
        self.assertEqual(
            str(error), "layer `softplus` (JaxSoftplus) runs JAX code (`jax`) in its `call`, which cannot run on TensorFlow"
        )
        self.assertEqual((error.data["layer"], error.data["class"], error.data["package"]), ("softplus", "JaxSoftplus", "jax"))
        self.assertIn("keras.ops", error.data["hint"])
        self.assertIn("JaxSoftplus.call is at test_backends.py:", error.data["hint"])

    def test_other_failures_of_a_layer_are_left_alone(self):
        self.assertIsNone(backend_error(_raised(lambda: Plain().call(None))))


class ImportErrorTest(unittest.TestCase):
    def test_a_file_importing_torch_says_pytorch(self):
        error = import_error(ModuleNotFoundError("No module named 'torch'", name="torch"), "/project/layers.py")
        self.assertEqual(error.code, "BackendSpecific")
        expected = "layers.py imports `torch` (PyTorch), which exportctl's TensorFlow runtime"
        self.assertTrue(str(error).startswith(expected), str(error))

    def test_other_missing_modules_are_left_alone(self):
        self.assertIsNone(import_error(ModuleNotFoundError("No module named 'sklearn'", name="sklearn"), "/project/layers.py"))


if __name__ == "__main__":
    unittest.main()
