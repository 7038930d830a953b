"""Parameter checking and the small pure helpers of exportctl_worker.params."""

import math
import os
import tempfile
import unittest

from exportctl_worker.errors import WorkerError
from exportctl_worker.params import (
    _abs_path,
    _jsonable,
    _param,
    _prepare_out_dir,
    _recorded_dirs,
    _resolved_dirs,
    _safe_file_name,
    _shape_list,
    _shape_tuple,
    _suggest,
    source_params,
)


class ParamTest(unittest.TestCase):
    def assert_bad_params(self, message, call):
        with self.assertRaises(WorkerError) as caught:
            call()
        self.assertEqual(caught.exception.code, "BadParams")
        self.assertEqual(str(caught.exception), message)
        return caught.exception

    def test_present_values_are_returned(self):
        self.assertEqual(_param({"n": 3}, "n", int), 3)
        self.assertEqual(_param({"s": "x"}, "s", str), "x")
        self.assertEqual(_param({"d": {"a": 1}}, "d", dict), {"a": 1})
        self.assertEqual(_param({"any": [1]}, "any"), [1])

    def test_a_missing_parameter_without_default_is_bad_params(self):
        error = self.assert_bad_params("parameter 'out_dir' is missing", lambda: _param({}, "out_dir", str))
        self.assertEqual(error.data, {"param": "out_dir"})

    def test_null_is_missing_unless_allowed(self):
        self.assert_bad_params("parameter 'flavour' is null", lambda: _param({"flavour": None}, "flavour", str))
        self.assertIsNone(_param({"from": None}, "from", str, default=None, allow_none=True))
        self.assertEqual(_param({"seed": None}, "seed", int, default=0), 0)

    def test_defaults_fill_in_missing_parameters(self):
        self.assertEqual(_param({}, "keras", str, default="auto"), "auto")
        self.assertEqual(_param({}, "custom_objects", list, default=[]), [])
        self.assertIsNone(_param({}, "dropout", (int, float), default=None, allow_none=True))

    def test_the_wrong_type_is_bad_params(self):
        error = self.assert_bad_params("parameter 'seed' has the wrong type (str)", lambda: _param({"seed": "0"}, "seed", int))
        self.assertEqual(error.data, {"param": "seed"})
        self.assert_bad_params("parameter 'to' has the wrong type (int)", lambda: _param({"to": 3}, "to", list))

    def test_a_bool_is_not_a_number(self):
        self.assert_bad_params("parameter 'seed' has the wrong type (bool)", lambda: _param({"seed": True}, "seed", int))
        self.assert_bad_params("parameter 'atol' has the wrong type (bool)", lambda: _param({"atol": False}, "atol", float))
        self.assertIs(_param({"flag": True}, "flag", bool), True)

    def test_an_int_is_accepted_as_a_float(self):
        value = _param({"atol": 1}, "atol", float)
        self.assertIsInstance(value, float)
        self.assertEqual(value, 1.0)
        self.assertEqual(_param({"dropout": 0}, "dropout", (int, float)), 0.0)

    def test_abs_path(self):
        here = os.path.abspath(__file__)
        self.assertEqual(_abs_path({"path": here}, "path"), here)
        self.assert_bad_params(
            "parameter 'path' must be an absolute path: rel/model.keras", lambda: _abs_path({"path": "rel/model.keras"}, "path")
        )
        self.assert_bad_params("parameter 'path' is missing", lambda: _abs_path({}, "path"))
        with self.assertRaises(FileNotFoundError) as caught:
            _abs_path({"path": "/nonexistent/model.keras"}, "path")
        self.assertEqual(str(caught.exception), "path: no such file or directory: /nonexistent/model.keras")
        self.assertEqual(_abs_path({"out": "/nonexistent/out"}, "out", must_exist=False), "/nonexistent/out")
        self.assertIsNone(_abs_path({}, "root", allow_none=True))
        self.assertIsNone(_abs_path({"root": None}, "root", allow_none=True))

    def test_out_dir_must_exist_and_be_empty(self):
        with tempfile.TemporaryDirectory() as tmp:
            self.assertEqual(_prepare_out_dir({"out_dir": tmp}), tmp)
            missing = os.path.join(tmp, "missing")
            with self.assertRaises(WorkerError) as caught:
                _prepare_out_dir({"out_dir": missing})
            self.assertEqual(caught.exception.code, "BadOutDir")
            self.assertEqual(caught.exception.data, {"path": missing})
            self.assertFalse(os.path.exists(missing), "out_dir is never created")
            open(os.path.join(tmp, "leftover"), "w").close()
            with self.assertRaises(WorkerError) as caught:
                _prepare_out_dir({"out_dir": tmp})
            self.assertEqual(caught.exception.code, "BadOutDir")
            self.assertEqual(str(caught.exception), f"out_dir is not empty: {tmp}")


class HelperTest(unittest.TestCase):
    def test_suggest_close_names_and_substrings(self):
        self.assertEqual(_suggest("dense", ["dense_1", "dropout", "conv"]), ["dense_1"])
        self.assertEqual(_suggest("valdate", ["hello", "validate", "trace"]), ["validate"])
        # difflib finds close names, best first; a name that contains the query (or the reverse) comes after
        self.assertEqual(_suggest("proj", ["projection_head", "head", "proj_b"]), ["proj_b", "projection_head"])
        self.assertEqual(_suggest("xyz", ["dense", "conv"]), [])
        self.assertEqual(_suggest("dense", ["dense_1", "dense_1"]), ["dense_1"], "candidates are deduplicated")
        self.assertEqual(len(_suggest("d", [f"d{i}" for i in range(20)])), 5)

    def test_jsonable_turns_non_finite_floats_into_null(self):
        self.assertEqual(
            _jsonable({"nan": math.nan, "inf": math.inf, "-inf": -math.inf, "x": 1.5, "list": [math.nan, 2, (3.0, None)]}),
            {"nan": None, "inf": None, "-inf": None, "x": 1.5, "list": [None, 2, [3.0, None]]},
        )
        self.assertEqual(_jsonable({1: True, "s": "text"}), {"1": True, "s": "text"})

    def test_jsonable_converts_numpy_values(self):
        import numpy as np

        self.assertEqual(
            _jsonable({"i": np.int64(3), "f": np.float32(0.5), "nan": np.float64("nan"), "b": np.bool_(True)}),
            {"i": 3, "f": 0.5, "nan": None, "b": True},
        )
        self.assertEqual(_jsonable(np.array([[1.0, np.inf]])), [[1.0, None]])
        self.assertEqual(_jsonable(object.__new__(Opaque)), "opaque")

    def test_shapes(self):
        self.assertEqual(_shape_list((None, 3, 4)), [-1, 3, 4])
        self.assertIsNone(_shape_list(None))
        self.assertEqual(_shape_tuple([-1, 3, None]), (None, 3, None))
        self.assertIsNone(_shape_tuple(None))

    def test_recorded_dirs_are_relative_to_root_when_inside_it(self):
        self.assertEqual(_recorded_dirs(["/p/models/code", "/elsewhere"], "/p"), ["models/code", "/elsewhere"])
        self.assertEqual(_recorded_dirs(["/p/code"], None), ["/p/code"])
        self.assertEqual(_resolved_dirs(["models/code", "/elsewhere"], "/q"), ["/q/models/code", "/elsewhere"])

    def test_safe_file_name(self):
        self.assertEqual(_safe_file_name("input:0/a b"), "input_0_a_b")
        self.assertEqual(_safe_file_name(""), "_")


class Opaque:
    def __str__(self):
        return "opaque"


if __name__ == "__main__":
    unittest.main()


class SourceParamsTest(unittest.TestCase):
    """export and outline read the model's source through one function."""

    def test_a_builder_imports_from_its_folder_and_the_custom_objects_folders(self):
        with tempfile.TemporaryDirectory() as tmp:
            builder = os.path.join(tmp, "models", "encoder.py")
            custom = os.path.join(tmp, "layers", "custom.py")
            for f in (builder, custom):
                os.makedirs(os.path.dirname(f))
                open(f, "w").close()
            params = {"source": {"kind": "builder", "path": builder, "function": "build"}, "custom_objects": [custom]}
            source, kind, path, code, safe_mode, sys_path = source_params(params)
            self.assertEqual((kind, path, code, safe_mode), ("builder", builder, [custom], True))
            self.assertEqual(source["function"], "build")
            self.assertEqual(sys_path, sorted([os.path.dirname(builder), os.path.dirname(custom)]))

    def test_an_unknown_kind_or_a_relative_custom_object_file_is_refused(self):
        with tempfile.TemporaryDirectory() as tmp:
            with self.assertRaises(WorkerError) as caught:
                source_params({"source": {"kind": "onnx", "path": tmp}})
            self.assertEqual((caught.exception.code, str(caught.exception)), ("BadParams", "unknown source.kind 'onnx'"))
            with self.assertRaises(WorkerError) as caught:
                source_params({"source": {"kind": "saved-model", "path": tmp}, "custom_objects": ["custom.py"]})
            self.assertIn("absolute path expected", str(caught.exception))
