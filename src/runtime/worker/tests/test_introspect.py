"""Keras model introspection (exportctl_worker.introspect) on small Keras 3 models built here."""

import unittest

from exportctl_worker.introspect import (
    _apply_overrides,
    _graph_nodes,
    _input_specs,
    _layer_info,
    _model_facts,
    _output_specs,
    _params,
    _regularizers,
    _top_level_layers,
)
from exportctl_worker.modules import M


def tiny_classifier():
    """features -> Dense(relu, L2) -> Dropout -> BatchNormalization -> Dense(softmax)."""
    keras = M.keras
    inputs = keras.Input(shape=(4,), name="features")
    x = keras.layers.Dense(8, activation="relu", kernel_regularizer=keras.regularizers.L2(0.01), name="hidden")(inputs)
    x = keras.layers.Dropout(0.25, name="drop")(x)
    x = keras.layers.BatchNormalization(name="norm")(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="probs")(x)
    return keras.Model(inputs, outputs, name="tiny")


class IntrospectTest(unittest.TestCase):
    def setUp(self):
        M.keras.backend.clear_session()
        self.model = tiny_classifier()

    def test_top_level_layers_in_graph_order_with_the_input_layer(self):
        self.assertEqual([layer.name for layer in _top_level_layers(self.model)], ["features", "hidden", "drop", "norm", "probs"])

    def test_inputs_and_outputs(self):
        self.assertEqual(_input_specs(self.model), [{"name": "features", "shape": [-1, 4], "dtype": "float32"}])
        self.assertEqual(
            _output_specs(self.model), [{"name": "probs", "shape": [-1, 3], "dtype": "float32", "activation": "softmax"}]
        )

    def test_the_output_activation_is_found_through_shape_only_layers(self):
        keras = M.keras
        inputs = keras.Input(shape=(4,), name="x")
        y = keras.layers.Dense(2, name="logits")(inputs)
        y = keras.layers.Activation("sigmoid", name="act")(y)
        y = keras.layers.Reshape((2, 1), name="shape")(y)
        y = keras.layers.Dropout(0.1, name="drop")(y)
        self.assertEqual(_output_specs(keras.Model(inputs, y))[0]["activation"], "sigmoid")
        linear = keras.layers.Dense(2, name="linear")(inputs)
        self.assertEqual(_output_specs(keras.Model(inputs, linear))[0]["activation"], "linear")

    def test_model_facts_count_dropout_batch_norm_and_regularizers(self):
        self.assertEqual(
            _model_facts(self.model, "keras3"),
            {
                "dropout_layers": 1,
                "batch_norm_layers": 1,
                "regularizer_count": 1,
                "activity_regularizers": 0,
                "output_activation": "softmax",
            },
        )

    def test_regularizers_name_the_attribute_class_and_config(self):
        self.assertEqual(
            _regularizers(self.model.get_layer("hidden")), {"kernel_regularizer": {"class": "L2", "config": {"l2": 0.01}}}
        )
        self.assertEqual(_regularizers(self.model.get_layer("probs")), {})

    def test_layer_info(self):
        graph = _graph_nodes(self.model)
        drop = _layer_info(self.model.get_layer("drop"), graph)
        self.assertEqual(drop["class"], "Dropout")
        self.assertEqual(drop["dropout_rate"], 0.25)
        self.assertEqual(drop["inbound"], ["hidden"])
        self.assertEqual(drop["output_shape"], [-1, 8])
        norm = _layer_info(self.model.get_layer("norm"), graph)
        self.assertEqual(norm["batch_norm"], {"momentum": 0.99, "epsilon": 0.001})
        self.assertIsNone(norm["dropout_rate"])
        self.assertFalse(norm["is_model"])
        self.assertFalse(norm["is_op"])

    def test_params(self):
        # hidden 4*8+8, norm 4*8 (half trainable), probs 8*3+3
        self.assertEqual(_params(self.model), {"total": 99, "trainable": 83, "non_trainable": 16})

    def test_overrides_change_only_the_configuration(self):
        self.assertEqual(_apply_overrides(self.model, 0.5, {"momentum": 0.9, "epsilon": None}), 2)
        self.assertEqual(self.model.get_layer("drop").rate, 0.5)
        self.assertEqual(self.model.get_layer("norm").momentum, 0.9)
        self.assertEqual(self.model.get_layer("norm").epsilon, 0.001)


if __name__ == "__main__":
    unittest.main()
