"""Canonical SavedModel bytes (imported by trace.py once it has saved a SavedModel).

``tf.saved_model.save`` writes the same model to different bytes depending on what the
process did before: TensorFlow names every traced function with a process-wide counter
(``__inference_call_4024``; ``ops.uid()``), and a few other names come from the same
counter. A persistent worker that traced another piece first therefore writes a different
``saved_model.pb`` (and ``fingerprint.pb``, which hashes it) for the same model.
``canonicalize(export_dir)`` rewrites such a SavedModel so that its bytes depend only on the
model:

What embeds the counter, and what it becomes:

========================================  ===================================================
where                                     rewritten to
========================================  ===================================================
function names: the library's             ``<name without its trailing _<n> groups>_<k>``,
``signature.name``, ``gradient`` entries,  ``k`` the function's position in a traversal that
``registered_gradients``, node ``op``s     never looks at the counter (below); every place
that call a function, ``func`` /           that names a function is renamed with the same
``list.func`` attrs (nested too), string   map: graph and function bodies alike
attrs that hold a function name
(``forward_function_name``...), debug
info's ``original_func_names``, the
object graph's ``concrete_functions``
(map keys, ``SavedFunction``,
``SavedBareConcreteFunction``,
``CapturedTensor``), ``function_aliases``
capture placeholders' numeric             per function (or graph), their rank among the
``_user_specified_name`` (``"3891"``)      numeric names there, as a decimal string
``_gradient_op_type`` /                   ``<prefix>-<k>``, ``k`` the order of first use in
``registered_op_type``                    the canonical traversal
(``CustomGradient-1234``)
========================================  ===================================================

The traversal: the object graph's nodes in order (their concrete functions, in the order the
node lists them), then the graph's nodes, then ``function_aliases`` by alias; each function
is followed, depth first, by the functions its body calls (node order) and its gradient.
Functions nothing reaches come last, by their original counter. None of this depends on the
counter's value, nor on functions that a warm process traced earlier and reused.

The library is then sorted by the new names (TensorFlow writes it sorted by name) and the
file serialized deterministically; ``fingerprint.pb`` is recomputed by TensorFlow's own
fingerprinting (``CreateFingerprintDef``), with its random ``uuid`` replaced by one derived
from the fingerprint's hashes. Variables are untouched (their bytes are made stable by fixed
seeds in the worker).

Safety: after renaming, no old function name may remain anywhere in the file. If one does
(a field this module does not know names functions), the SavedModel is left exactly as
TensorFlow wrote it and the result says why: a valid package that is not reproducible beats
a broken one.

What it touches: ``saved_model.pb`` and ``fingerprint.pb`` inside the directory it is given
(each replaced through a temporary sibling), nothing else. It imports TensorFlow's protobuf
modules, and TensorFlow's fingerprinting, only when called.
"""

import hashlib
import os
import re

# A counter suffix: one or more trailing "_<digits>" groups (__backward_f_12_34 has two).
_COUNTER_SUFFIX = re.compile(r"(?:_\d+)+$")
# A gradient op type: "CustomGradient-1234".
_OP_TYPE = re.compile(r"^(?P<prefix>.*-)(?P<n>\d+)$")
_USER_SPECIFIED_NAME = "_user_specified_name"
_GRADIENT_OP_TYPE = "_gradient_op_type"


def canonicalize(export_dir):
    """Makes the SavedModel in export_dir byte-stable. Returns a dict describing what changed:
    ``{"functions": int, "renamed_functions": int, "canonical": bool, "reason"?: str}``."""
    from tensorflow.core.protobuf import saved_model_pb2

    pb_path = os.path.join(export_dir, "saved_model.pb")
    with open(pb_path, "rb") as f:
        original = f.read()
    sm = saved_model_pb2.SavedModel()
    sm.ParseFromString(original)
    functions = renamed = 0
    leftover = []
    for mg in sm.meta_graphs:
        mapping = _function_mapping(mg)
        functions += len(mapping)
        renamed += sum(1 for old, new in mapping.items() if old != new)
        _apply(mg, mapping)
        leftover += [old for old in mapping if old not in set(mapping.values())]
    data = sm.SerializeToString(deterministic=True)
    stale = sorted({name for name in leftover if name.encode() in data})
    if stale:
        return {
            "functions": functions,
            "renamed_functions": 0,
            "canonical": False,
            "reason": f"saved_model.pb still names {stale[0]} after renaming (a field exportctl does not know)",
        }
    if data != original:
        _write(pb_path, data)
    _write_fingerprint(export_dir)
    return {"functions": functions, "renamed_functions": renamed, "canonical": True}


# -----------------------------------------------------------------------------
# The canonical order of functions
# -----------------------------------------------------------------------------


def _counter_key(name):
    """Orders names by their counter numbers (then by name): the fallback order."""
    suffix = _COUNTER_SUFFIX.search(name)
    numbers = tuple(int(n) for n in suffix.group(0).split("_")[1:]) if suffix else ()
    return (numbers, name)


def _function_mapping(mg):
    """old name -> canonical name, for every function of the meta graph's library."""
    library = mg.graph_def.library
    bodies = {f.signature.name: f for f in library.function}
    if not bodies:
        return {}
    gradients = {g.function_name: g.gradient_func for g in library.gradient}
    registered = {r.registered_op_type: r.gradient_func for r in library.registered_gradients}
    order, seen = [], set()

    def visit(name):
        stack = [name]
        while stack:
            current = stack.pop()
            if current not in bodies or current in seen:
                continue
            seen.add(current)
            order.append(current)
            calls = []
            for node in bodies[current].node_def:
                calls += _node_references(node, bodies, registered)
            calls += _attr_references(bodies[current].attr, bodies)
            if current in gradients:
                calls.append(gradients[current])
            stack.extend(reversed(calls))  # depth first, in body order

    for node in mg.object_graph_def.nodes:
        kind = node.WhichOneof("kind")
        if kind == "function":
            for name in node.function.concrete_functions:
                visit(name)
        elif kind == "bare_concrete_function":
            visit(node.bare_concrete_function.concrete_function_name)
        elif kind == "captured_tensor":
            visit(node.captured_tensor.concrete_function)
    for node in mg.graph_def.node:
        for name in _node_references(node, bodies, registered):
            visit(name)
    for alias in sorted(mg.meta_info_def.function_aliases):
        visit(mg.meta_info_def.function_aliases[alias])
    for name in sorted(bodies, key=_counter_key):
        visit(name)

    mapping = {}
    for k, name in enumerate(order):
        base = _COUNTER_SUFFIX.sub("", name) or name
        mapping[name] = f"{base}_{k}"
    return mapping


def _node_references(node, bodies, registered):
    """Function names a node refers to, in a fixed order: its op, its attrs (by key), and the
    gradient registered for its _gradient_op_type."""
    refs = [node.op] if node.op in bodies else []
    refs += _attr_references(node.attr, bodies)
    op_type = node.attr.get(_GRADIENT_OP_TYPE)
    if op_type is not None and op_type.s.decode(errors="replace") in registered:
        refs.append(registered[op_type.s.decode(errors="replace")])
    return refs


def _attr_references(attrs, bodies):
    refs = []
    for key in sorted(attrs):
        refs += _value_references(attrs[key], bodies)
    return refs


def _value_references(value, bodies):
    kind = value.WhichOneof("value")
    if kind == "func":
        return [value.func.name] + _attr_references(value.func.attr, bodies)
    if kind == "s":
        name = value.s.decode(errors="replace")
        return [name] if name in bodies else []
    if kind == "list":
        refs = []
        for func in value.list.func:
            refs += [func.name] + _attr_references(func.attr, bodies)
        for s in value.list.s:
            name = s.decode(errors="replace")
            if name in bodies:
                refs.append(name)
        return refs
    return []


# -----------------------------------------------------------------------------
# Renaming
# -----------------------------------------------------------------------------


class _Renamer:
    def __init__(self, functions, op_types):
        self.functions = functions
        self.functions_bytes = {old.encode(): new.encode() for old, new in functions.items()}
        self.op_types = op_types

    def name(self, name):
        return self.functions.get(name, name)

    def node(self, node, numeric_names):
        if node.op in self.functions:
            node.op = self.functions[node.op]
        for key in node.attr:
            self.attr(key, node.attr[key], numeric_names)
        info = node.experimental_debug_info
        if info.original_func_names:
            renamed = [self.name(n) for n in info.original_func_names]
            del info.original_func_names[:]
            info.original_func_names.extend(renamed)

    def attr(self, key, value, numeric_names):
        kind = value.WhichOneof("value")
        if kind == "func":
            self.func(value.func, numeric_names)
        elif kind == "s":
            if key == _GRADIENT_OP_TYPE:
                value.s = self.op_types.get(value.s.decode(errors="replace"), value.s.decode(errors="replace")).encode()
            elif key == _USER_SPECIFIED_NAME and value.s.decode(errors="replace") in numeric_names:
                value.s = numeric_names[value.s.decode(errors="replace")].encode()
            else:
                value.s = self.functions_bytes.get(value.s, value.s)
        elif kind == "list":
            for func in value.list.func:
                self.func(func, numeric_names)
            if value.list.s:
                renamed = [self.functions_bytes.get(s, s) for s in value.list.s]
                del value.list.s[:]
                value.list.s.extend(renamed)

    def func(self, func, numeric_names):
        func.name = self.name(func.name)
        for key in func.attr:
            self.attr(key, func.attr[key], numeric_names)


def _numeric_names(attr_maps):
    """Capture placeholders are named by the counter ("3891"): rank them, in counter order."""
    found = set()
    for attrs in attr_maps:
        value = attrs.get(_USER_SPECIFIED_NAME)
        if value is not None and value.WhichOneof("value") == "s" and value.s.isdigit():
            found.add(value.s.decode())
    return {name: str(rank) for rank, name in enumerate(sorted(found, key=int))}


def _op_type_mapping(mg, order):
    """_gradient_op_type values ("CustomGradient-1234") -> "<prefix>-<k>", k by first use in the
    canonical order (graph first, then the functions)."""
    library = mg.graph_def.library
    bodies = {f.signature.name: f for f in library.function}
    seen = []
    nodes = list(mg.graph_def.node)
    for name in order:
        nodes += list(bodies[name].node_def)
    for node in nodes:
        value = node.attr.get(_GRADIENT_OP_TYPE)
        if value is not None and value.WhichOneof("value") == "s":
            text = value.s.decode(errors="replace")
            if _OP_TYPE.match(text) and text not in seen:
                seen.append(text)
    for r in sorted(library.registered_gradients, key=lambda r: _counter_key(r.registered_op_type)):
        if _OP_TYPE.match(r.registered_op_type) and r.registered_op_type not in seen:
            seen.append(r.registered_op_type)
    return {text: f"{_OP_TYPE.match(text).group('prefix')}{k}" for k, text in enumerate(seen)}


def _apply(mg, mapping):
    if not mapping:
        return
    library = mg.graph_def.library
    order = sorted(mapping, key=lambda old: int(mapping[old].rsplit("_", 1)[1]))
    renamer = _Renamer(mapping, _op_type_mapping(mg, order))

    graph_numeric = _numeric_names([n.attr for n in mg.graph_def.node])
    for node in mg.graph_def.node:
        renamer.node(node, graph_numeric)

    for fdef in library.function:
        numeric = _numeric_names([fdef.arg_attr[i].attr for i in fdef.arg_attr] + [n.attr for n in fdef.node_def])
        fdef.signature.name = renamer.name(fdef.signature.name)
        for key in fdef.attr:
            renamer.attr(key, fdef.attr[key], numeric)
        for i in fdef.arg_attr:
            attrs = fdef.arg_attr[i].attr
            for key in attrs:
                renamer.attr(key, attrs[key], numeric)
        for node in fdef.node_def:
            renamer.node(node, numeric)
    functions = sorted(library.function, key=lambda f: f.signature.name)
    copies = [type(f)() for f in functions]
    for copy, f in zip(copies, functions):
        copy.CopyFrom(f)
    del library.function[:]
    library.function.extend(copies)

    gradients = sorted((renamer.name(g.function_name), renamer.name(g.gradient_func)) for g in library.gradient)
    del library.gradient[:]
    for function_name, gradient_func in gradients:
        library.gradient.add(function_name=function_name, gradient_func=gradient_func)
    registered = sorted(
        (renamer.op_types.get(r.registered_op_type, r.registered_op_type), renamer.name(r.gradient_func))
        for r in library.registered_gradients
    )
    del library.registered_gradients[:]
    for op_type, gradient_func in registered:
        library.registered_gradients.add(registered_op_type=op_type, gradient_func=gradient_func)

    aliases = mg.meta_info_def.function_aliases
    for alias in list(aliases):
        aliases[alias] = renamer.name(aliases[alias])

    graph = mg.object_graph_def
    for node in graph.nodes:
        kind = node.WhichOneof("kind")
        if kind == "function":
            renamed = [renamer.name(n) for n in node.function.concrete_functions]
            del node.function.concrete_functions[:]
            node.function.concrete_functions.extend(renamed)
        elif kind == "bare_concrete_function":
            bare = node.bare_concrete_function
            bare.concrete_function_name = renamer.name(bare.concrete_function_name)
        elif kind == "captured_tensor":
            node.captured_tensor.concrete_function = renamer.name(node.captured_tensor.concrete_function)
    entries = {renamer.name(name): graph.concrete_functions[name] for name in graph.concrete_functions}
    copies = {}
    for name, value in entries.items():
        copy = type(value)()
        copy.CopyFrom(value)
        copies[name] = copy
    graph.concrete_functions.clear()
    for name, value in copies.items():
        graph.concrete_functions[name].CopyFrom(value)


# -----------------------------------------------------------------------------
# Files
# -----------------------------------------------------------------------------


def _write(path, data):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _write_fingerprint(export_dir):
    """fingerprint.pb as TensorFlow computes it for the rewritten saved_model.pb, with its random
    uuid replaced by one derived from its hashes. Skipped when TensorFlow wrote none."""
    path = os.path.join(export_dir, "fingerprint.pb")
    if not os.path.exists(path):
        return
    from tensorflow.core.protobuf import fingerprint_pb2
    from tensorflow.python.saved_model.pywrap_saved_model import fingerprinting

    fp = fingerprint_pb2.FingerprintDef()
    fp.ParseFromString(fingerprinting.CreateFingerprintDef(export_dir))
    if fp.uuid:
        basis = (
            f"{fp.saved_model_checksum}:{fp.graph_def_program_hash}:{fp.signature_def_hash}:"
            f"{fp.saved_object_graph_hash}:{fp.checkpoint_hash}"
        )
        fp.uuid = str(int(hashlib.sha256(basis.encode()).hexdigest()[:32], 16))
    _write(path, fp.SerializeToString(deterministic=True))
