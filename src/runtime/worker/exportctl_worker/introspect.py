"""Model introspection, Keras 3 and tf_keras alike: layers and graph nodes, inputs and
outputs (names, specs, the activation producing an output), regularizers, parameter counts,
dropout and batch-norm facts and overrides, bit-for-bit weight comparison; and the input and
output specs of a restored SavedModel.

Reads the models it is given; changes only dropout / batch-norm attributes
(``_apply_overrides``). Touches no file. TensorFlow only through ``modules.M``.
"""

from .contract import KERAS3
from .errors import WorkerError
from .modules import M
from .params import _dtype_name, _shape_list
from .phases import timed

_DROPOUT_CLASSES = {"Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianDropout", "AlphaDropout"}
_BATCH_NORM_CLASSES = {"BatchNormalization", "BatchNormalizationBase", "SyncBatchNormalization"}
_PASSTHROUGH_CLASSES = {
    "Flatten",
    "Reshape",
    "Identity",
    "Permute",
    "Masking",
    "ActivityRegularization",
    "GaussianNoise",
    "Cropping1D",
    "Cropping2D",
    "Cropping3D",
    "RepeatVector",
} | _DROPOUT_CLASSES
_ACTIVATION_LAYERS = {
    "Softmax": "softmax",
    "ReLU": "relu",
    "LeakyReLU": "leaky_relu",
    "PReLU": "prelu",
    "ELU": "elu",
    "ThresholdedReLU": "thresholded_relu",
}
_OP_ACTIVATIONS = {
    "argmax": "argmax",
    "topk": "top_k",
    "top_k": "top_k",
    "softmax": "softmax",
    "sigmoid": "sigmoid",
    "logsoftmax": "log_softmax",
    "log_softmax": "log_softmax",
    "argsort": "argsort",
}


def _mro_names(obj):
    return {c.__name__ for c in type(obj).__mro__}


def _is_keras_class(obj):
    return any(c.__module__.startswith(("keras.", "tf_keras.")) for c in type(obj).__mro__ if c is not object)


def _is_dropout(layer):
    return bool(_mro_names(layer) & _DROPOUT_CLASSES) and _is_keras_class(layer) and hasattr(layer, "rate")


def _is_batch_norm(layer):
    return bool(_mro_names(layer) & _BATCH_NORM_CLASSES) and _is_keras_class(layer) and hasattr(layer, "momentum")


def _is_model(layer):
    return any(
        c.__name__ in ("Model", "Functional", "Sequential") and c.__module__.startswith(("keras.", "tf_keras."))
        for c in type(layer).__mro__
    )


def _is_layer(obj):
    """False for a Keras 3 operation in a functional graph that is not a Layer (keras.ops.add ...)."""
    return "Layer" in _mro_names(obj)


def _all_layers(model):
    """Every layer below model (nested ones included), deduplicated."""
    return list(model._flatten_layers(include_self=False, recursive=True))


def _configurable_layers(model):
    """The layers a dropout / batch-norm setting applies to: the model's own layers and, through
    nested models, theirs. Not the private sublayers of other layers (MultiHeadAttention's
    attention dropout): their owner's get_config() rebuilds them, so a rate set on them would
    not survive a save, and they are not the model's dropout layers for consumers either."""
    found = []
    for layer in getattr(model, "layers", None) or []:
        found.append(layer)
        if _is_model(layer):
            found.extend(_configurable_layers(layer))
    return found


def _history(tensor):
    h = getattr(tensor, "_keras_history", None)
    if h is None:
        return None, None, None
    return h[0], h[1], h[2]


def _node_layer(node):
    return getattr(node, "operation", None) or getattr(node, "layer", None)


def _node_inputs(node):
    if hasattr(node, "keras_inputs"):  # tf_keras
        return list(node.keras_inputs)
    return list(node.input_tensors)  # Keras 3


def _node_outputs(node):
    outs = node.outputs
    if isinstance(outs, (list, tuple)):
        return list(outs)
    return list(M.tf.nest.flatten(outs))


def _model_inputs(model):
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        return None
    if not inputs:
        return None
    return list(inputs)


def _model_outputs(model):
    try:
        outputs = model.outputs
    except (AttributeError, ValueError):
        return None
    if not outputs:
        return None
    return list(outputs)


def _is_graph_model(model):
    inputs, outputs = _model_inputs(model), _model_outputs(model)
    if not inputs or not outputs:
        return False
    if getattr(model, "_is_graph_network", True) is False:  # tf_keras subclassed
        return False
    return all(_history(t)[0] is not None for t in inputs + outputs)


def _input_struct(model):
    """The structure the model was built with: dict (keys), or flat."""
    for attr in ("_inputs_struct", "_nested_inputs"):
        s = getattr(model, attr, None)
        if isinstance(s, dict):
            return s
    functional = getattr(model, "_functional", None)
    if functional is not None:
        return _input_struct(functional)
    return None


def _input_names(model):
    inputs = _model_inputs(model)
    if inputs is None:
        return None
    struct = _input_struct(model)
    if isinstance(struct, dict):
        return list(struct.keys())
    names = []
    for t in inputs:
        layer = _history(t)[0]
        names.append(layer.name if layer is not None else getattr(t, "name", f"input_{len(names)}"))
    return names


def _input_specs(model):
    inputs = _model_inputs(model)
    if inputs is None:
        return None
    struct = _input_struct(model)
    tensors = list(struct.values()) if isinstance(struct, dict) else inputs
    return [
        {"name": n, "shape": _shape_list(t.shape), "dtype": _dtype_name(t.dtype)} for n, t in zip(_input_names(model), tensors)
    ]


def _output_struct(model):
    for attr in ("_outputs_struct", "_nested_outputs"):
        st = getattr(model, attr, None)
        if isinstance(st, dict):
            return st
    functional = getattr(model, "_functional", None)
    if functional is not None:
        return _output_struct(functional)
    return None


def _output_names(model, count=None):
    """Output names: the keys of a dict-structured output (in flattening order, i.e. sorted),
    else the producing layers' names; output_<i> when nothing better is known."""
    struct = _output_struct(model)
    names = None
    if isinstance(struct, dict):
        names = sorted(struct)
    if names is None:
        try:
            names = list(model.output_names)
        except (AttributeError, ValueError, TypeError):
            names = None
    if not names:
        outputs = _model_outputs(model) or []
        names = [(_history(t)[0].name if _history(t)[0] is not None else f"output_{i}") for i, t in enumerate(outputs)]
    if count is not None and len(names) != count:
        names = [f"output_{i}" for i in range(count)]
    return _dedupe(names)


def _dedupe(names):
    seen, out = {}, []
    for n in names:
        if n in seen:
            seen[n] += 1
            n = f"{n}_{seen[n]}"
        else:
            seen[n] = 0
        out.append(n)
    return out


def _activation_name(fn):
    if fn is None:
        return "linear"
    name = getattr(fn, "__name__", None)
    if name is None:
        name = type(fn).__name__
    name = name.lower()
    return {"softmax_v2": "softmax", "log_softmax_v2": "log_softmax"}.get(name, name)


def _tensor_activation(tensor, depth=0):
    """The activation that produces a symbolic tensor (see module docstring)."""
    layer, node_index, tensor_index = _history(tensor)
    if layer is None or depth > 50:
        return "linear"
    cls = type(layer).__name__
    mro = _mro_names(layer)
    if "Activation" in mro and hasattr(layer, "activation"):
        return _activation_name(layer.activation)
    for k, v in _ACTIVATION_LAYERS.items():
        if k in mro:
            return v
    if cls == "TFOpLambda" or hasattr(layer, "symbol"):
        symbol = str(getattr(layer, "symbol", "")).split(".")[-1].lower()
        if symbol in _OP_ACTIVATIONS:
            return _OP_ACTIVATIONS[symbol]
        if symbol in ("relu", "tanh", "elu", "selu", "gelu", "silu", "swish"):
            return symbol
    if "Lambda" in mro and cls != "TFOpLambda":
        return "lambda"
    if cls.lower() in _OP_ACTIVATIONS and not hasattr(layer, "kernel"):
        return _OP_ACTIVATIONS[cls.lower()]
    if _is_model(layer):
        inner = _model_outputs(layer)
        if inner and tensor_index is not None and tensor_index < len(inner):
            return _tensor_activation(inner[tensor_index], depth + 1)
        return "linear"
    if cls in _PASSTHROUGH_CLASSES or mro & _DROPOUT_CLASSES:
        try:
            node = layer._inbound_nodes[node_index]
            ins = _node_inputs(node)
            if len(ins) == 1:
                return _tensor_activation(ins[0], depth + 1)
        except (IndexError, AttributeError):
            pass
        return "linear"
    act = getattr(layer, "activation", None)
    if callable(act) or act is None and hasattr(layer, "activation"):
        return _activation_name(act)
    return "linear"


def _output_specs(model):
    outputs = _model_outputs(model)
    if outputs is None:
        return []
    names = _output_names(model, len(outputs))
    return [
        {"name": n, "shape": _shape_list(t.shape), "dtype": _dtype_name(t.dtype), "activation": _tensor_activation(t)}
        for n, t in zip(names, outputs)
    ]


def _regularizers(layer):
    regs = {}
    for key, value in sorted(vars(layer).items()):
        if key.startswith("_") or not key.endswith("_regularizer") or value is None:
            continue
        entry = {"class": type(value).__name__}
        if hasattr(value, "get_config"):
            try:
                entry["config"] = value.get_config()
            except Exception:  # a custom regularizer without config
                entry["config"] = None
        regs[key] = entry
    if not _is_model(layer):  # Keras 3: regularizers given to add_weight() directly (custom layers)
        attached = {id(v) for v in vars(layer).values() if v is not None}
        for v in list(getattr(layer, "_trainable_variables", [])) + list(getattr(layer, "_non_trainable_variables", [])):
            reg = getattr(v, "regularizer", None)
            if reg is not None and id(reg) not in attached:
                entry = {"class": type(reg).__name__}
                try:
                    entry["config"] = reg.get_config()
                except Exception:
                    entry["config"] = None
                regs[f"weight:{v.name}"] = entry
    return regs


def _graph_nodes(model):
    """ids of the nodes that make up a functional/Sequential model's own graph.

    A layer can have several inbound nodes (Keras 3 Sequential models are built twice on load;
    shared layers are called several times): only the ones in this set belong to this model."""
    ids = set()
    stack = list(_model_outputs(model) or [])
    while stack:
        layer, node_index, _ = _history(stack.pop())
        if layer is None:
            continue
        node = layer._inbound_nodes[node_index]
        if id(node) in ids:
            continue
        ids.add(id(node))
        if not node.is_input:
            stack.extend(_node_inputs(node))
    return ids


def _model_node(layer, graph):
    """The first node of layer that belongs to the graph (or its first node, if none does)."""
    nodes = getattr(layer, "_inbound_nodes", None) or []
    for node in nodes:
        if id(node) in graph:
            return node
    return nodes[0] if nodes else None


def _layer_output_shape(layer, graph):
    node = _model_node(layer, graph)
    if node is None:
        return None
    outs = _node_outputs(node)
    shapes = [_shape_list(t.shape) for t in outs]
    if len(shapes) == 1:
        return shapes[0]
    return shapes


def _layer_inbound(layer, graph):
    node = _model_node(layer, graph)
    if node is None:
        return []
    names = []
    for t in _node_inputs(node):
        parent = _history(t)[0]
        if parent is not None and parent.name not in names:
            names.append(parent.name)
    return names


def _top_level_layers(model):
    """Top-level layers/ops of a model in graph order, input layers included."""
    layers = []
    ops = getattr(model, "operations", None)
    try:
        layers = list(ops) if ops is not None else list(model.layers)
    except Exception:  # a Sequential without inputs, etc.
        layers = list(getattr(model, "layers", []))
    inputs = _model_inputs(model) or []
    known = {id(l) for l in layers}
    input_layers = []
    for t in inputs:
        layer = _history(t)[0]
        if layer is not None and id(layer) not in known:
            input_layers.append(layer)
            known.add(id(layer))
    return input_layers + layers


def _layer_info(layer, graph):
    info = {
        "name": layer.name,
        "class": type(layer).__name__,
        "output_shape": _layer_output_shape(layer, graph),
        "inbound": _layer_inbound(layer, graph),
        "regularizers": _regularizers(layer),
        "dropout_rate": float(layer.rate) if _is_dropout(layer) else None,
        "batch_norm": ({"momentum": float(layer.momentum), "epsilon": float(layer.epsilon)} if _is_batch_norm(layer) else None),
        "is_model": _is_model(layer),
        "is_op": not _is_layer(layer),
    }
    if info["is_model"]:
        inner = _graph_nodes(layer)
        info["layers"] = [_layer_info(l, inner) for l in _top_level_layers(layer)]
    return info


def _count_params(weights):
    total = 0
    seen = set()
    for w in weights:
        if id(w) in seen:
            continue
        seen.add(id(w))
        n = 1
        for d in w.shape:
            n *= int(d)
        total += n
    return total


def _params(model):
    trainable = _count_params(model.trainable_weights)
    non_trainable = _count_params(model.non_trainable_weights)
    return {"total": trainable + non_trainable, "trainable": trainable, "non_trainable": non_trainable}


def _weight_regularizers(model, flavour):
    """(name, zero-arg callable computing the loss) for every weight regularizer."""
    out = []
    if flavour == KERAS3:
        seen = set()
        for v in model.weights:
            reg = getattr(v, "regularizer", None)
            if reg is None or id(v) in seen:
                continue
            seen.add(id(v))
            out.append((v.path, reg, v))
    else:
        seen = set()
        for layer in [model] + _all_layers(model):
            for fn in getattr(layer, "_callable_losses", []):
                if id(fn) in seen:
                    continue
                seen.add(id(fn))
                out.append((f"{layer.name}/loss_{len(out)}", fn, None))
    return out


def _activity_regularizer_count(model):
    return sum(1 for l in _all_layers(model) if getattr(l, "activity_regularizer", None) is not None)


@timed("inspect model")
def _model_facts(model, flavour):
    outputs = _output_specs(model)
    return {
        "dropout_layers": sum(1 for l in _configurable_layers(model) if _is_dropout(l)),
        "batch_norm_layers": sum(1 for l in _configurable_layers(model) if _is_batch_norm(l)),
        "regularizer_count": len(_weight_regularizers(model, flavour)),
        "activity_regularizers": _activity_regularizer_count(model),
        "output_activation": outputs[0]["activation"] if outputs else None,
    }


def _apply_overrides(model, dropout, batch_norm):
    """Set dropout rates / batch-norm hyper-parameters: attributes only, never a weight.
    Traced functions read them from the layers when the SavedModel is written."""
    changed = 0
    if dropout is not None:
        dropout = float(dropout)
        if not 0.0 <= dropout < 1.0:
            raise WorkerError("BadParams", f"dropout must be in [0, 1): {dropout}", {"param": "dropout"})
        for layer in _configurable_layers(model):
            if _is_dropout(layer):
                layer.rate = dropout
                changed += 1
    if batch_norm:
        momentum, epsilon = batch_norm.get("momentum"), batch_norm.get("epsilon")
        for layer in _configurable_layers(model):
            if _is_batch_norm(layer):
                if momentum is not None:
                    layer.momentum = float(momentum)
                if epsilon is not None:
                    layer.epsilon = float(epsilon)
                changed += 1
    return changed


def _saved_model_io(obj):
    """Infer ([Spec] | None, [Spec] | None) for inputs and outputs of a restored SavedModel:
    inputs from its __call__ trace (else serving_default), outputs from serving_default."""
    tf = M.tf
    inputs, outputs = None, None
    sig = getattr(obj, "signatures", {}) or {}
    call = getattr(obj, "__call__", None)  # noqa: B004 - the restored tf.function, for its concrete functions
    concrete = list(getattr(call, "concrete_functions", []) or [])
    if concrete:
        args, kwargs = concrete[0].structured_input_signature
        first = args[0] if args else None
        if isinstance(first, tf.TensorSpec):
            inputs = [{"name": first.name or "inputs", "shape": _shape_list(first.shape), "dtype": first.dtype.name}]
        elif isinstance(first, dict):
            inputs = [
                {"name": k, "shape": _shape_list(v.shape), "dtype": v.dtype.name}
                for k, v in sorted(first.items())
                if isinstance(v, tf.TensorSpec)
            ]
        elif isinstance(first, (list, tuple)):
            inputs = [
                {"name": v.name or f"input_{i}", "shape": _shape_list(v.shape), "dtype": v.dtype.name}
                for i, v in enumerate(first)
                if isinstance(v, tf.TensorSpec)
            ]
    if "serving_default" in sig:
        fn = sig["serving_default"]
        _, kw = fn.structured_input_signature
        sig_inputs = [{"name": k, "shape": _shape_list(v.shape), "dtype": v.dtype.name} for k, v in sorted(kw.items())]
        if inputs is None:
            inputs = sig_inputs
        outs = fn.structured_outputs
        if isinstance(outs, dict):
            outputs = [{"name": k, "shape": _shape_list(v.shape), "dtype": v.dtype.name} for k, v in sorted(outs.items())]
    return inputs, outputs
