"""Error payloads, traceback frame labels and dispatch errors (exportctl_worker.errors and
exportctl_worker.protocol, without starting the loop)."""

import os
import unittest

from exportctl_worker import errors, protocol
from exportctl_worker.errors import WorkerError, _error_payload, _frame_label


class FrameLabelTest(unittest.TestCase):
    def test_the_workers_own_files_are_worker_slash_module(self):
        worker_dir = os.path.dirname(os.path.abspath(errors.__file__))
        self.assertEqual(_frame_label(os.path.join(worker_dir, "trace.py")), "worker/trace.py")
        self.assertEqual(_frame_label(protocol.__file__), "worker/protocol.py")

    def test_site_packages_paths_are_package_relative(self):
        path = os.path.join(os.sep, "venv", "lib", "python3.11", "site-packages", "keras", "src", "ops.py")
        self.assertEqual(_frame_label(path), os.path.join("keras", "src", "ops.py"))

    def test_other_paths_are_kept(self):
        self.assertEqual(_frame_label("/project/custom_layers.py"), "/project/custom_layers.py")


class ErrorPayloadTest(unittest.TestCase):
    def test_a_worker_error_carries_its_code_and_data(self):
        try:
            raise WorkerError("BadOutDir", "out_dir is not empty: /x", {"path": "/x"})
        except WorkerError as e:
            payload = _error_payload(e)
        self.assertEqual(payload["type"], "BadOutDir")
        self.assertEqual(payload["message"], "out_dir is not empty: /x")
        self.assertEqual(payload["data"], {"path": "/x"})
        self.assertEqual(len(payload["traceback"]), 1)
        self.assertRegex(payload["traceback"][0], r"^.*test_errors\.py:\d+ in test_a_worker_error_carries_its_code_and_data$")

    def test_a_python_exception_names_its_class_cause_and_hint(self):
        try:
            try:
                raise KeyError("custom_layer")
            except KeyError as cause:
                error = ValueError("could not load")
                error.exportctl_hint = "list the .py files"
                raise error from cause
        except ValueError as e:
            payload = _error_payload(e)
        self.assertEqual(payload["type"], "ValueError")
        self.assertEqual(payload["data"], {"cause": "KeyError: 'custom_layer'", "hint": "list the .py files"})

    def test_an_empty_message_becomes_the_type(self):
        try:
            raise RuntimeError()
        except RuntimeError as e:
            self.assertEqual(_error_payload(e)["message"], "RuntimeError")


class DispatchTest(unittest.TestCase):
    def test_an_unknown_method_is_named_with_suggestions(self):
        with self.assertRaises(WorkerError) as caught:
            protocol._dispatch({"method": "valdate", "params": {}})
        self.assertEqual(caught.exception.code, "UnknownMethod")
        self.assertEqual(caught.exception.data, {"method": "valdate", "suggestions": ["validate"]})

    def test_a_request_without_method_or_with_bad_params_is_bad_request(self):
        for request in ({"params": {}}, {"method": "hello", "params": [1]}):
            with self.assertRaises(WorkerError) as caught:
                protocol._dispatch(request)
            self.assertEqual(caught.exception.code, "BadRequest")

    def test_dispatch_frames_are_left_out_of_tracebacks(self):
        try:
            protocol._dispatch({"method": "trace", "params": {}})
        except WorkerError as e:
            payload = _error_payload(e)
        self.assertEqual(payload["type"], "BadParams")
        self.assertTrue(payload["traceback"], payload)
        self.assertFalse([f for f in payload["traceback"] if f.startswith("worker/protocol.py:")], payload["traceback"])
        self.assertTrue(payload["traceback"][-1].startswith("worker/params.py:"), payload["traceback"])


if __name__ == "__main__":
    unittest.main()
