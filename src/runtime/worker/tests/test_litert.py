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
