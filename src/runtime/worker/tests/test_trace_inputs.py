"""How trace merges declared inputs with the model's (exportctl_worker.trace._resolve_trace_inputs)."""

import unittest

from exportctl_worker.errors import WorkerError
from exportctl_worker.trace import _resolve_trace_inputs

IMAGE = {"name": "image", "shape": [-1, 8, 8, 3], "dtype": "float32"}
MASK = {"name": "mask", "shape": [-1, 8], "dtype": "bool"}


class ResolveTraceInputsTest(unittest.TestCase):
    def assert_error(self, code, call, message=None):
        with self.assertRaises(WorkerError) as caught:
            call()
        self.assertEqual(caught.exception.code, code)
        if message is not None:
            self.assertEqual(str(caught.exception), message)
        return caught.exception

    def test_without_declared_inputs_the_models_are_used(self):
        self.assertEqual(
            _resolve_trace_inputs(None, [IMAGE, MASK]),
            [dict(IMAGE, model_name="image"), dict(MASK, model_name="mask")],
        )

    def test_unknown_model_inputs_must_be_declared(self):
        self.assert_error("NeedInputs", lambda: _resolve_trace_inputs(None, None))

    def test_declared_inputs_of_a_model_without_known_inputs(self):
        self.assertEqual(
            _resolve_trace_inputs([{"name": "x", "shape": [-1, 2]}], None),
            [{"name": "x", "shape": [-1, 2], "dtype": "float32", "model_name": "x"}],
        )

    def test_a_single_input_may_be_renamed_and_completes_unknown_dims(self):
        self.assertEqual(
            _resolve_trace_inputs([{"name": "pixels", "shape": [-1, 8, -1, 3]}], [IMAGE]),
            [{"name": "pixels", "shape": [-1, 8, 8, 3], "dtype": "float32", "model_name": "image"}],
        )
        self.assertEqual(
            _resolve_trace_inputs([{"name": "pixels"}], [IMAGE]),
            [{"name": "pixels", "shape": [-1, 8, 8, 3], "dtype": "float32", "model_name": "image"}],
        )

    def test_several_inputs_are_matched_by_name(self):
        declared = [{"name": "mask", "shape": None, "dtype": None}, {"name": "image", "shape": [-1, 8, 8, 3], "dtype": "float16"}]
        self.assertEqual(
            _resolve_trace_inputs(declared, [IMAGE, MASK]),
            [
                {"name": "mask", "shape": [-1, 8], "dtype": "bool", "model_name": "mask"},
                {"name": "image", "shape": [-1, 8, 8, 3], "dtype": "float16", "model_name": "image"},
            ],
        )

    def test_a_different_number_of_inputs_is_a_mismatch(self):
        error = self.assert_error(
            "InputMismatch",
            lambda: _resolve_trace_inputs([{"name": "image"}], [IMAGE, MASK]),
            "1 input(s) declared, the model has 2: ['image', 'mask']",
        )
        self.assertEqual(error.data, {"declared": [{"name": "image"}], "model": [IMAGE, MASK]})

    def test_an_unknown_name_is_a_mismatch_with_suggestions(self):
        self.assert_error(
            "InputMismatch",
            lambda: _resolve_trace_inputs([{"name": "imag"}, {"name": "mask"}], [IMAGE, MASK]),
            "declared input 'imag' is not an input of the model; did you mean ['image']?",
        )
        self.assert_error(
            "InputMismatch",
            lambda: _resolve_trace_inputs([{"name": "zzz"}, {"name": "mask"}], [IMAGE, MASK]),
            "declared input 'zzz' is not an input of the model (inputs: ['image', 'mask'])",
        )

    def test_a_shape_that_disagrees_with_the_model_is_a_mismatch(self):
        self.assert_error(
            "InputMismatch",
            lambda: _resolve_trace_inputs([{"name": "image", "shape": [-1, 8, 8]}], [IMAGE]),
            "input 'image': declared rank 3, the model expects shape [-1, 8, 8, 3]",
        )
        self.assert_error(
            "InputMismatch",
            lambda: _resolve_trace_inputs([{"name": "image", "shape": [-1, 8, 8, 4]}], [IMAGE]),
            "input 'image': declared shape [-1, 8, 8, 4], the model expects [-1, 8, 8, 3]",
        )
        # the batch dimension is not compared
        self.assertEqual(_resolve_trace_inputs([{"name": "image", "shape": [2, 8, 8, 3]}], [IMAGE])[0]["shape"], [2, 8, 8, 3])

    def test_a_declared_input_needs_a_name(self):
        self.assert_error("BadParams", lambda: _resolve_trace_inputs([{"shape": [-1, 2]}], [IMAGE]))
        self.assert_error("BadParams", lambda: _resolve_trace_inputs(["image"], [IMAGE]))


if __name__ == "__main__":
    unittest.main()
