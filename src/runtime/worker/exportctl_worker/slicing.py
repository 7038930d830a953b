"""The ``slice`` method and the cut itself: a piece of an exported model, cut by layer names
(the original layers replayed on fresh inputs, same weights) or taken whole; slice checks the
cut and describes the piece, and writes the cut as ``piece.json`` (trace cuts again from it).

Imports TensorFlow and Keras lazily through ``modules.M``; writes only inside ``out_dir``.
"""

import os
import sys

from . import recipe
from .contract import KERAS3, SAVED_MODEL, TF_KERAS
from .errors import WorkerError
from .introspect import (
    _graph_nodes,
    _history,
    _input_specs,
    _model_facts,
    _model_inputs,
    _model_outputs,
    _node_inputs,
    _node_layer,
    _node_outputs,
    _output_names,
    _output_specs,
    _params,
    _top_level_layers,
)
from .modules import M
from .params import _abs_path, _dtype_name, _param, _prepare_out_dir, _read_json, _shape_list, _shape_tuple, _suggest, _write_json


def _layer_index(model):
    index = {}
    for layer in _top_level_layers(model):
        index.setdefault(layer.name, layer)
    return index


def _find_layer(index, name, kind):
    if not isinstance(name, str):
        raise WorkerError("BadParams", f"'{kind}' must name a layer", {"param": kind})
    if name not in index:
        raise WorkerError(
            "UnknownLayer",
            f"no layer named '{name}' in the model"
            + (f"; did you mean {', '.join(repr(s) for s in _suggest(name, index))}?" if _suggest(name, index) else ""),
            {"name": name, "kind": kind, "suggestions": _suggest(name, index)},
        )
    return index[name]


def _first_call_outputs(layer, graph):
    """Outputs of the layer's first call inside this model's graph."""
    for node in getattr(layer, "_inbound_nodes", None) or []:
        if id(node) in graph:
            return _node_outputs(node)
    raise WorkerError(
        "UnalignedCut",
        f"layer '{layer.name}' is not on any path to the model's outputs",
        {"output": layer.name, "from": None, "path": [layer.name]},
    )


def _plan_cut(start_tensors, out_tensors, out_labels, from_name):
    """Topologically ordered nodes between start tensors and outputs; checks alignment."""
    start_ids = {id(t) for t in start_tensors}
    memo = {}  # id(node) -> (reaches_start, foreign_path or None)
    order = []

    def visit_tensor(t, stack_guard):
        if id(t) in start_ids:
            return True, None
        layer, node_index, _ = _history(t)
        if layer is None:
            return False, ["<unknown tensor>"]
        node = layer._inbound_nodes[node_index]
        key = id(node)
        if key in memo:
            return memo[key]
        if node.is_input:
            memo[key] = (False, [layer.name])
            return memo[key]
        reaches, foreign = False, None
        for parent in _node_inputs(node):
            r, f = visit_tensor(parent, stack_guard)
            reaches = reaches or r
            if f is not None and foreign is None:
                foreign = [layer.name] + f
        memo[key] = (reaches, foreign)
        order.append(node)
        return memo[key]

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 20000))
    for t, label in zip(out_tensors, out_labels):
        reaches, foreign = visit_tensor(t, None)
        if id(t) in start_ids:
            raise WorkerError(
                "UnalignedCut",
                f"output '{label}' is the 'from' layer's own output: the piece would be empty",
                {"output": label, "from": from_name, "path": [label]},
            )
        if from_name is not None and not reaches:
            raise WorkerError(
                "UnalignedCut",
                f"output '{label}' does not depend on 'from' layer '{from_name}' "
                f"(it is computed from {' <- '.join(foreign or [])})",
                {"output": label, "from": from_name, "path": foreign or []},
            )
        if foreign is not None:
            what = f"'from' layer '{from_name}'" if from_name is not None else "the requested inputs"
            raise WorkerError(
                "UnalignedCut",
                f"output '{label}' needs model input '{foreign[-1]}', which bypasses {what}: path {' <- '.join(foreign)}",
                {"output": label, "from": from_name, "path": foreign},
            )
    return order


def _replay(order, mapping):
    """Call every node's layer again on new symbolic tensors (same layer objects, same weights)."""
    tf = M.tf
    for node in order:
        layer = _node_layer(node)
        if hasattr(node, "arguments"):  # Keras 3
            args, kwargs = node.arguments.fill_in(mapping)
        else:  # tf_keras

            def sub(x):
                return mapping.get(id(x), x)

            args = tf.nest.map_structure(sub, list(node.call_args))
            kwargs = tf.nest.map_structure(sub, dict(node.call_kwargs))
        outs = layer(*args, **kwargs)
        flat_new = M.tf.nest.flatten(outs) if not isinstance(outs, (list, tuple)) else list(M.tf.nest.flatten(outs))
        for old, new in zip(_node_outputs(node), flat_new):
            mapping[id(old)] = new


def _build_piece(model, flavour, from_name, to_names):
    kmod = M.keras_for(flavour)
    index = _layer_index(model)
    graph = _graph_nodes(model)
    from_layer = _find_layer(index, from_name, "from") if from_name is not None else None
    out_layers = [_find_layer(index, n, "to") for n in to_names]
    if out_layers:
        out_tensors, out_labels = [], []
        for layer in out_layers:
            outs = _first_call_outputs(layer, graph)
            out_tensors += outs
            out_labels += [layer.name] if len(outs) == 1 else [f"{layer.name}[{i}]" for i in range(len(outs))]
    else:
        out_tensors = _model_outputs(model)
        out_labels = _output_names(model, len(out_tensors))
    if from_layer is not None:
        start = _first_call_outputs(from_layer, graph)
        names = [from_layer.name] if len(start) == 1 else [f"{from_layer.name}_{i}" for i in range(len(start))]
    else:
        start = _model_inputs(model)
        names = [_history(t)[0].name for t in start]
    order = _plan_cut(start, out_tensors, out_labels, from_name)
    # only inputs that are used (from=None: the model inputs the outputs depend on)
    used = set()
    for node in order:
        for t in _node_inputs(node):
            used.add(id(t))
    used |= {id(t) for t in out_tensors}
    mapping, new_inputs = {}, []
    for t, name in zip(start, names):
        if id(t) not in used and from_layer is None:
            continue
        shape = _shape_tuple(_shape_list(t.shape))
        new = kmod.Input(shape=shape[1:], dtype=_dtype_name(t.dtype), name=name)
        mapping[id(t)] = new
        new_inputs.append(new)
    _replay(order, mapping)
    new_outputs = [mapping[id(t)] for t in out_tensors]
    return kmod.Model(
        inputs=new_inputs[0] if len(new_inputs) == 1 else new_inputs,
        outputs=new_outputs[0] if len(new_outputs) == 1 else new_outputs,
        name=model.name,
    )


def m_slice(params):
    """Checks the cut on the model built again from the export's recipe, describes the piece,
    and writes ``piece.json`` (the cut and the piece-level overrides): trace builds the piece
    from it. No copy of the weights is written."""
    export_dir = _abs_path(params, "export_dir")
    flavour = _param(params, "flavour", str)
    from_name = _param(params, "from", str, default=None, allow_none=True)
    to_names = _param(params, "to", list, default=[])
    if isinstance(to_names, str):
        to_names = [to_names]
    dropout = _param(params, "dropout", (int, float), default=None, allow_none=True)
    batch_norm = _param(params, "batch_norm", dict, default=None, allow_none=True)
    root = _abs_path(params, "root", allow_none=True)
    out_dir = _prepare_out_dir(params)
    inventory_path = os.path.join(export_dir, "inventory.json")
    meta = _read_json(inventory_path) if os.path.exists(inventory_path) else {}
    warns = []
    piece_meta = {"from": from_name, "to": list(to_names), "dropout": dropout, "batch_norm": batch_norm}

    if flavour == SAVED_MODEL:
        if from_name is not None or to_names:
            raise WorkerError(
                "UnsupportedCut",
                "a SavedModel source has no layers: only the whole model can be a piece (no 'from'/'to')",
                {"flavour": flavour},
            )
        if dropout is not None or batch_norm:
            warns.append("dropout/batch-norm overrides cannot be applied to a SavedModel source; ignored")
        _write_json(os.path.join(out_dir, recipe.PIECE), {**piece_meta, "dropout": None, "batch_norm": None})
        return {
            "inputs": meta.get("inputs", []),
            "outputs": meta.get("outputs", []),
            "layers": 0,
            "params": meta.get("params", {"total": 0, "trainable": 0, "non_trainable": 0}),
            "dropout_layers": None,
            "batch_norm_layers": None,
            "regularizer_count": meta.get("regularizer_count"),
            "activity_regularizers": None,
            "output_activation": None,
            "warnings": warns,
        }
    if flavour not in (KERAS3, TF_KERAS):
        raise WorkerError("BadParams", f"unknown flavour '{flavour}'", {"param": "flavour"})
    _write_json(os.path.join(out_dir, recipe.PIECE), piece_meta)
    _, piece, _ = recipe.construct_piece(export_dir, out_dir, root)
    facts = _model_facts(piece, flavour)
    return {
        "inputs": _input_specs(piece) or [],
        "outputs": _output_specs(piece),
        "layers": len(piece.layers),
        "params": _params(piece),
        "warnings": warns,
        **facts,
    }
