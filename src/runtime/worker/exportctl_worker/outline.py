"""The ``outline`` method: a model's layers, where pieces can be cut — what ``exportctl inspect
MODEL`` lists and ``exportctl init MODEL`` proposes pieces from.

Loads the source as ``export`` does (a Keras file, a tf_keras SavedModel directory or a
builder), without its training configuration, and describes it: inputs, outputs with their
final activation, and every top-level layer with its type, output shape, parameters and
whether it is a dropout or batch-norm layer. Writes nothing.
"""

from .contract import TF_KERAS
from .errors import WorkerError
from .introspect import (
    _activation_name,
    _configurable_layers,
    _count_params,
    _graph_nodes,
    _input_specs,
    _is_batch_norm,
    _is_dropout,
    _is_graph_model,
    _is_layer,
    _is_model,
    _layer_inbound,
    _layer_output_shape,
    _output_specs,
    _params,
    _top_level_layers,
)
from .kerasio import _detect_keras_file_flavour, _load_keras, _tf_keras_saved_model
from .modules import _fresh_session
from .params import _param, source_params
from .usercode import _builder_flavour, _load_code, _resolve_builder


def m_outline(params):
    _fresh_session()
    source, kind, path, code_paths, safe_mode, sys_path = source_params(params)
    custom = _load_code(code_paths, sys_path)

    if kind == "keras-file":
        flavour = _detect_keras_file_flavour(path)
        model = _load_keras(path, flavour, custom, False, safe_mode)
    elif kind == "saved-model":
        if not _tf_keras_saved_model(path):
            raise WorkerError(
                "NotKeras",
                f"{path} is a SavedModel without Keras metadata: it has signatures, not layers",
                {"path": path},
            )
        flavour = TF_KERAS
        model = _load_keras(path, flavour, custom, False, safe_mode)
    else:
        function = _param(source, "function", str)
        model = _resolve_builder(path, function, None, None, custom, sys_path)
        flavour = _builder_flavour(model)
    return outline(model, flavour)


def outline(model, flavour):
    """The description of a loaded Keras model (see the module docstring)."""
    graph = _graph_nodes(model) if _is_graph_model(model) else set()
    layers = [_layer_outline(layer, graph) for layer in _top_level_layers(model)]
    outputs = _output_specs(model)
    # Nested models' layers count too: the dropout and batch-norm settings reach them.
    configurable = _configurable_layers(model)
    return {
        "flavour": flavour,
        "model_name": model.name,
        "model_class": type(model).__name__,
        "graph": _is_graph_model(model),
        "inputs": _input_specs(model) or [],
        "outputs": outputs,
        "final_activation": outputs[0]["activation"] if len(outputs) == 1 else None,
        "params": _params(model),
        "layers": layers,
        "dropout_rates": [float(l.rate) for l in configurable if _is_dropout(l)],
        "batch_norms": [{"momentum": float(l.momentum), "epsilon": float(l.epsilon)} for l in configurable if _is_batch_norm(l)],
    }


def _layer_outline(layer, graph):
    weights = list(getattr(layer, "weights", []) or [])
    trainable = list(getattr(layer, "trainable_weights", []) or [])
    activation = getattr(layer, "activation", None) if _is_layer(layer) else None
    return {
        "name": layer.name,
        "class": type(layer).__name__,
        "output_shape": _layer_output_shape(layer, graph) if graph else None,
        "inbound": _layer_inbound(layer, graph) if graph else [],
        "parameters": _count_params(weights),
        "trainable_parameters": _count_params(trainable),
        "activation": _activation_name(activation) if callable(activation) else None,
        "dropout_rate": float(layer.rate) if _is_dropout(layer) else None,
        "batch_norm": ({"momentum": float(layer.momentum), "epsilon": float(layer.epsilon)} if _is_batch_norm(layer) else None),
        "is_model": _is_model(layer),
    }
