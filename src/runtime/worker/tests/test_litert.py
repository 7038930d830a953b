"""The reading of the LiteRT converter's errors (pure: no TensorFlow)."""

import unittest

from exportctl_worker.litert import _conversion_error, _describe_ops, _layer_of, _unsupported_ops


def _located(kind, op, node, text):
    """One converter diagnostic, as TensorFlow 2.21 writes it."""
    where = f'fused["{op}:", "{node}@__inference_f_8"] at fused["PartitionedCall:", "PartitionedCall"]'
    return f"<unknown>:0: {kind}: loc(callsite({where})): {text}"


# What TensorFlow 2.21's converter says for a model with tf.linalg.det and tf.math.erfinv
# (abridged: the lines the parser reads).
MESSAGE = "\n".join(
    [
        "Could not translate MLIR to FlatBuffer."
        + _located(
            "error",
            "MatrixDeterminant",
            "model_1/det_layer_1/MatrixDeterminant",
            "'tf.MatrixDeterminant' op is neither a custom op nor a flex op",
        ),
        _located("note", "MatrixDeterminant", "model_1/det_layer_1/MatrixDeterminant", "Error code: ERROR_NEEDS_FLEX_OPS"),
        _located("error", "Erfinv", "model_1/erf_1/Erfinv", "'tf.Erfinv' op is neither a custom op nor a flex op"),
        _located("note", "Erfinv", "model_1/erf_1/Erfinv", "Error code: ERROR_NEEDS_CUSTOM_OPS"),
    ]
)


# The LiteRT Reshape's verifier, for a shape with two unknown sizes.
RESHAPE = (
    "'tfl.reshape' op requires 'shape' to have at most one dynamic dimension, but got multiple dynamic dimensions "
    "at indices 0 and 1. You need to set up the unspecified size(s) to avoid this problem, for example,setting "
    "batch size in keras model or setting unspecified input size(s) with fixed ones."
)

# What TensorFlow 2.21's converter says for a Keras 3 SimpleRNN (the lines the parser reads).
TENSOR_LIST = "\n".join(
    [
        _located(
            "error",
            "TensorListReserve",
            "functional_1/simple_rnn_1/TensorArrayV2_1",
            "'tf.TensorListReserve' op requires element_shape to be static during TF Lite transformation pass",
        ),
        _located(
            "error",
            "TensorListReserve",
            "functional_1/simple_rnn_1/TensorArrayV2_1",
            "failed to legalize operation 'tf.TensorListReserve' that was explicitly marked illegal",
        ),
        "<unknown>:0: error: Lowering tensor list ops is failed. Please consider using Select TF ops and disabling "
        "`_experimental_lower_tensor_list_ops` flag in the TFLite converter object.",
    ]
)


class ConverterErrorTest(unittest.TestCase):
    def test_each_op_is_named_with_its_node_and_whether_select_tf_ops_helps(self):
        ops = _unsupported_ops(MESSAGE)
        self.assertEqual(
            ops,
            [
                {"op": "Erfinv", "nodes": ["model_1/erf_1/Erfinv"], "select_tf_ops": False},
                {"op": "MatrixDeterminant", "nodes": ["model_1/det_layer_1/MatrixDeterminant"], "select_tf_ops": True},
            ],
        )

    def test_layers_are_named_without_keras_scope_suffixes(self):
        assert _layer_of("model_1/det_layer_1/MatrixDeterminant") == "det_layer"
        assert _layer_of("Erfinv") is None
        assert _layer_of("functional_1/probit_1/erfinv/Erfinv") == "probit"
        assert _layer_of("probit_1/Erfinv") == "probit"

    def test_the_message_says_what_select_tf_ops_would_do(self):
        lines = _describe_ops(_unsupported_ops(MESSAGE))
        assert lines[0].startswith("`Erfinv` (layer `erf`): SELECT_TF_OPS would not help")
        assert lines[1].startswith("`MatrixDeterminant` (layer `det_layer`): SELECT_TF_OPS would run it")
        error = _conversion_error(MESSAGE)
        assert error.code == "LitertUnsupportedOps"
        assert "Erfinv" in str(error) and "MatrixDeterminant" in str(error)

    def test_other_failures_keep_the_converters_first_error(self):
        error = _conversion_error("blah\n<unknown>:0: error: something odd happened\nmore")
        assert error.code == "LitertConversion"
        assert str(error).endswith("something odd happened")

    def test_a_reshape_to_several_unknown_sizes_is_a_dynamic_shape(self):
        error = _conversion_error(_located("error", "Reshape", "functional_1/reshape_1/Reshape", RESHAPE))
        assert error.code == "LitertDynamicShape"
        assert str(error).endswith("cannot handle the shapes of this model's signature: " + RESHAPE)
        assert "[models.<name>.inputs]" in error.data["hint"]

    def test_a_loop_over_a_tensor_list_names_its_layer_and_is_not_an_input_shape(self):
        error = _conversion_error(TENSOR_LIST)
        assert error.code == "LitertConversion"
        assert str(error) == (
            "the LiteRT converter cannot lower a loop in layer `simple_rnn`: 'tf.TensorListReserve' op requires "
            "element_shape to be static during TF Lite transformation pass"
        )
        assert "unroll=True" in error.data["hint"] and "[models.<name>.inputs]" not in error.data["hint"]

    def test_other_messages_about_shapes_or_dynamic_range_stay_what_they_are(self):
        for text in (
            "'tf.AddV2' op requires the same shape for all operands and results",
            "Couldn't apply dynamic range quantization since unsupported inference_type is passed.",
        ):
            error = _conversion_error(_located("error", "AddV2", "functional_1/add_1/AddV2", text))
            assert error.code == "LitertConversion", text
            assert str(error) == "the LiteRT converter failed: " + text

    def test_a_message_without_diagnostics_is_reported_by_its_first_line(self):
        error = _conversion_error("None is only supported in the 1st dimension. Tensor 'x' has invalid shape '[1, None]'.\n")
        assert error.code == "LitertConversion"
        assert str(error).endswith("Tensor 'x' has invalid shape '[1, None]'.")
