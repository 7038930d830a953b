"""The ``export`` method: a Keras file, a SavedModel directory or a builder is loaded (its
training configuration left out unless asked for), with the model-level dropout and batch-norm
overrides applied, and described: ``inventory.json`` (layers, inputs, outputs, facts), the
user's code under ``code/``, and ``recipe.json``, how slice and trace obtain the same model
again (see ``recipe``). No copy of the weights is written.

Imports TensorFlow and Keras lazily through ``modules.M``; runs the user's code; writes only
inside ``out_dir``.
"""

import os
import shutil
import warnings

from . import recipe
from .contract import KERAS3, SAVED_MODEL, TF_KERAS
from .errors import WorkerError, log
from .introspect import (
    _apply_overrides,
    _graph_nodes,
    _input_specs,
    _is_graph_model,
    _layer_info,
    _model_facts,
    _output_specs,
    _params,
    _saved_model_io,
    _top_level_layers,
)
from .kerasio import _detect_keras_file_flavour, _load_keras, _optimizer_info, _tf_keras_saved_model
from .modules import M, _fresh_session
from .params import _abs_path, _param, _prepare_out_dir, _recorded_dirs, _write_json, source_params
from .usercode import _builder_flavour, _copy_code, _load_code, _resolve_builder


def m_export(params):
    _fresh_session()
    source, kind, path, code_paths, safe_mode, sys_path = source_params(params)
    keras_choice = _param(params, "keras", str, default="auto")
    if keras_choice not in ("auto", KERAS3, TF_KERAS):
        raise WorkerError("BadParams", f"unknown keras '{keras_choice}'", {"param": "keras"})
    include_optimizer = bool(_param(params, "include_optimizer", bool, default=False))
    dropout = _param(params, "dropout", (int, float), default=None, allow_none=True)
    batch_norm = _param(params, "batch_norm", dict, default=None, allow_none=True)
    seed = int(_param(params, "seed", int, default=0))
    root = _abs_path(params, "root", allow_none=True)
    out_dir = _prepare_out_dir(params)

    M.keras.utils.set_random_seed(seed)  # seed-generator states created while loading
    warns = []
    custom = _load_code(code_paths, sys_path)

    if kind == "saved-model":
        if not os.path.isdir(path):
            raise WorkerError("BadSource", f"not a SavedModel directory: {path}", {"path": path})
        if keras_choice == KERAS3:
            raise WorkerError(
                "BadParams",
                "Keras 3 cannot load a SavedModel directory as a model; use keras = 'auto' or 'tf-keras'",
                {"param": "keras"},
            )
        use_keras = keras_choice == TF_KERAS or (keras_choice == "auto" and _tf_keras_saved_model(path))
        if use_keras:
            try:
                return _export_keras(
                    TF_KERAS,
                    lambda compile: _load_keras(path, TF_KERAS, custom, compile, safe_mode),
                    params_common(
                        include_optimizer,
                        dropout,
                        batch_norm,
                        out_dir,
                        code_paths,
                        sys_path,
                        kind,
                        warns,
                        custom,
                        safe_mode,
                        root,
                        path=path,
                    ),
                )
            except WorkerError:
                raise
            except Exception as e:
                if keras_choice == TF_KERAS:
                    raise
                log(
                    f"tf_keras could not load {path} as a Keras model ({type(e).__name__}: {e}); "
                    "exporting it as a plain SavedModel"
                )
                warns.append(
                    f"the tf_keras SavedModel could not be loaded as a Keras model ({type(e).__name__}: {e}); "
                    "exported as a plain SavedModel, so it cannot be sliced by layer names"
                )
                for name in os.listdir(out_dir):
                    full = os.path.join(out_dir, name)
                    shutil.rmtree(full) if os.path.isdir(full) else os.remove(full)
        return _export_saved_model(path, out_dir, dropout, batch_norm, warns, root)

    if kind == "keras-file":
        flavour = keras_choice if keras_choice != "auto" else _detect_keras_file_flavour(path)
        loader = lambda compile: _load_keras(path, flavour, custom, compile, safe_mode)  # noqa: E731
        return _export_keras(
            flavour,
            loader,
            params_common(
                include_optimizer,
                dropout,
                batch_norm,
                out_dir,
                code_paths,
                sys_path,
                kind,
                warns,
                custom,
                safe_mode,
                root,
                path=path,
            ),
        )

    # builder
    function = _param(source, "function", str)
    checkpoint = _abs_path(source, "checkpoint", must_exist=False, allow_none=True)
    if checkpoint is not None and not (os.path.exists(checkpoint) or os.path.exists(checkpoint + ".index")):
        raise FileNotFoundError(f"checkpoint not found: {checkpoint} (neither a directory nor a prefix with .index)")
    restore = _param(source, "restore", str, default=None, allow_none=True)
    model = _resolve_builder(path, function, checkpoint, restore, custom, sys_path)
    flavour = _builder_flavour(model)
    if keras_choice != "auto" and keras_choice != flavour:
        raise WorkerError("BadParams", f"keras = '{keras_choice}' but the builder returned a {flavour} model", {"param": "keras"})
    custom.update(_load_code([path], sys_path))
    return _export_keras(
        flavour,
        lambda compile: model,
        params_common(
            include_optimizer,
            dropout,
            batch_norm,
            out_dir,
            code_paths + [path],
            sys_path,
            kind,
            warns,
            custom,
            safe_mode,
            root,
            path=path,
            function=function,
            checkpoint=checkpoint,
            restore=restore,
        ),
    )


def params_common(
    include_optimizer,
    dropout,
    batch_norm,
    out_dir,
    code_paths,
    sys_path,
    kind,
    warns,
    custom=None,
    safe_mode=True,
    root=None,
    path=None,
    function=None,
    checkpoint=None,
    restore=None,
):
    return {
        "path": path,
        "function": function,
        "checkpoint": checkpoint,
        "restore": restore,
        "root": root,
        "custom": custom or {},
        "safe_mode": safe_mode,
        "include_optimizer": include_optimizer,
        "dropout": dropout,
        "batch_norm": batch_norm,
        "out_dir": out_dir,
        "code_paths": code_paths,
        "sys_path": sys_path,
        "kind": kind,
        "warnings": warns,
    }


def _export_keras(flavour, loader, p):
    """Loads the model once (with its training configuration, to learn what the optimizer held),
    applies the overrides and describes it. No copy of it is written: slice and trace build it
    again from the recipe (recipe.py)."""
    out_dir, warns = p["out_dir"], p["warnings"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model = loader(True)
            compiled = True
        except Exception as e:
            if p["kind"] == "builder":
                raise
            log(f"loading with compile=True failed ({type(e).__name__}: {e}); loading without compiling")
            warns.append(f"the model's training configuration could not be restored ({type(e).__name__}: {e})")
            model = loader(False)
            compiled = False
    for w in caught:
        if "Skipping variable loading for optimizer" not in str(w.message):
            log(f"warning while loading: {w.message}")
    optimizer = _optimizer_info(model, caught) if compiled else None
    _apply_overrides(model, p["dropout"], p["batch_norm"])
    code = _copy_code(p["code_paths"], out_dir)
    facts = _model_facts(model, flavour)
    if facts["activity_regularizers"]:
        warns.append(
            f"{facts['activity_regularizers']} activity regularizer(s) cannot be exported as regularization_losses "
            "(they depend on the inputs)"
        )
    if not _is_graph_model(model):
        warns.append("the model is not functional or Sequential: it can only be exported whole (no from/to cuts)")
    result = {
        "flavour": flavour,
        "model_name": model.name,
        "layers": [_layer_info(l, _graph_nodes(model)) for l in _top_level_layers(model)],
        "inputs": _input_specs(model) or [],
        "outputs": _output_specs(model),
        "params": _params(model),
        "optimizer": optimizer,
        "warnings": warns,
        **facts,
    }
    _write_json(
        os.path.join(out_dir, "inventory.json"),
        {
            **result,
            "code": code,
            "python_path": _recorded_dirs(p["sys_path"], p["root"]),
            "source_kind": p["kind"],
            "safe_mode": p["safe_mode"],
        },
    )
    _write_json(
        os.path.join(out_dir, recipe.RECIPE),
        recipe.recipe(
            p["kind"],
            p["path"],
            p.get("function"),
            p.get("checkpoint"),
            p.get("restore"),
            flavour,
            code,
            p["sys_path"],
            p["safe_mode"],
            p["dropout"],
            p["batch_norm"],
            p["root"],
        ),
    )
    return result


def _export_saved_model(path, out_dir, dropout, batch_norm, warns, root):
    tf = M.tf
    obj = tf.saved_model.load(path)
    if dropout is not None or batch_norm:
        warns.append("dropout/batch-norm overrides cannot be applied to a SavedModel source; ignored")
    inputs, outputs = _saved_model_io(obj)
    variables = list(getattr(obj, "variables", []) or [])
    trainable = list(getattr(obj, "trainable_variables", []) or [])

    def count(vs):
        return sum(int(v.shape.num_elements() or 0) for v in vs)

    total, train = count(variables), count(trainable)
    result = {
        "flavour": SAVED_MODEL,
        "model_name": None,
        "layers": [],
        "inputs": inputs or [],
        "outputs": [dict(o, activation=None) for o in (outputs or [])],
        "params": {"total": total, "trainable": train, "non_trainable": max(total - train, 0)},
        "optimizer": None,
        "output_activation": None,
        "dropout_layers": None,
        "batch_norm_layers": None,
        "regularizer_count": len(list(getattr(obj, "regularization_losses", []) or [])),
        "activity_regularizers": None,
        "warnings": warns,
    }
    _write_json(os.path.join(out_dir, "inventory.json"), {**result, "code": [], "python_path": [], "source_kind": "saved-model"})
    _write_json(
        os.path.join(out_dir, recipe.RECIPE),
        recipe.recipe("saved-model", path, None, None, None, SAVED_MODEL, [], [], True, None, None, root),
    )
    return result
