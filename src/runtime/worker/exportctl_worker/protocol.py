"""The request loop: reads requests from stdin, dispatches them to the methods (``METHODS``;
``DEBUG_METHODS`` too with EXPORTCTL_WORKER_DEBUG=1), answers each with one line on the
private stdout handle it is given, and exits with its parent; and ``hello``, the warm-up.

docs/worker-protocol.md specifies the protocol. Writes responses only to the handle given to
``main``, logs to stderr; TensorFlow is imported by the methods, through ``modules.M``.
"""

import json
import os
import sys
import threading
import time

from . import phases
from .debug import m_debug_exit, m_debug_print, m_debug_raise, m_debug_segfault, m_debug_sleep
from .errors import WorkerError, _error_payload, log
from .export import m_export
from .litert import m_convert_litert, m_run_litert
from .modules import M, _dist_version, release_memory
from .outline import m_outline
from .params import _jsonable, _suggest
from .slicing import m_slice
from .trace import m_trace
from .validate import m_validate

PROTOCOL_VERSION = 1
DEBUG = os.environ.get("EXPORTCTL_WORKER_DEBUG") == "1"


def m_hello(params):
    tf, keras = M.tf, M.keras
    import numpy as np

    return {
        "protocol": PROTOCOL_VERSION,
        "pid": os.getpid(),
        "python": ".".join(str(x) for x in sys.version_info[:3]),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "tf_keras": _dist_version("tf-keras") or _dist_version("tf_keras"),
        "tensorflow_hub": _dist_version("tensorflow-hub") or _dist_version("tensorflow_hub"),
        "numpy": np.__version__,
        "debug": DEBUG,
    }


METHODS = {
    "hello": m_hello,
    "export": m_export,
    "slice": m_slice,
    "trace": m_trace,
    "validate": m_validate,
    "convert_litert": m_convert_litert,
    "run_litert": m_run_litert,
    "outline": m_outline,
}
DEBUG_METHODS = {
    "debug.sleep": m_debug_sleep,
    "debug.raise": m_debug_raise,
    "debug.exit": m_debug_exit,
    "debug.segfault": m_debug_segfault,
    "debug.print": m_debug_print,
}


def _send(responses, obj):
    try:
        line = json.dumps(_jsonable(obj), allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as e:  # never leave a request unanswered
        line = json.dumps(
            {
                "id": obj.get("id"),
                "ok": False,
                "error": {"type": "InternalError", "message": f"unserialisable response: {e}", "traceback": [], "data": {}},
            }
        )
    responses.write(line + "\n")
    responses.flush()


def _dispatch(request):
    method = request.get("method")
    params = request.get("params") or {}
    if not isinstance(method, str):
        raise WorkerError("BadRequest", "the request has no 'method'")
    if not isinstance(params, dict):
        raise WorkerError("BadRequest", "'params' must be an object")
    fn = METHODS.get(method) or (DEBUG_METHODS.get(method) if DEBUG else None)
    if fn is None:
        known = sorted(METHODS) + (sorted(DEBUG_METHODS) if DEBUG else [])
        raise WorkerError(
            "UnknownMethod",
            f"unknown method '{method}'" + (" (debug methods need EXPORTCTL_WORKER_DEBUG=1)" if method in DEBUG_METHODS else ""),
            {"method": method, "suggestions": _suggest(method, known)},
        )
    phases.reset()
    _reset_peak_memory()
    result = fn(params)
    if isinstance(result, dict):
        result["phases"] = phases.take()
        peak = _peak_memory()
        if peak is not None:
            result["peak_memory"] = peak
    return result


def _exit_with_parent():
    """Ends the worker when exportctl goes away, even by kill -9 (stdin's EOF only comes once
    the current request is done, and the worker must not go on writing for nobody)."""
    parent = os.getppid()

    def watch():
        while True:
            time.sleep(0.25)
            if os.getppid() != parent:
                os._exit(70)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def main(responses):
    """Serves requests until stdin's EOF. ``responses`` is the real stdout, which the entry script
    took over before anything was imported; everything else printed reaches stderr."""
    _exit_with_parent()
    stdin = sys.stdin.buffer
    while True:
        raw = stdin.readline()
        if not raw:
            break
        text = raw.decode("utf-8", errors="replace").strip()
        if not text:
            continue
        request_id = None
        try:
            request = json.loads(text)
            if not isinstance(request, dict):
                raise WorkerError("BadRequest", "a request must be a JSON object")
            request_id = request.get("id")
            started = time.monotonic()
            result = _dispatch(request)
            log(f"{request.get('method')} #{request_id} ok in {time.monotonic() - started:.2f}s")
            response = {"id": request_id, "ok": True, "result": result}
        except json.JSONDecodeError as e:
            response = {
                "id": None,
                "ok": False,
                "error": {"type": "BadRequest", "message": f"invalid JSON: {e}", "traceback": [], "data": {}},
            }
        except Exception as e:  # every failure becomes a response; the worker lives on
            payload = _error_payload(e)
            log(f"request #{request_id} failed: {payload['type']}: {payload['message']}")
            response = {"id": request_id, "ok": False, "error": payload}
        try:
            _send(responses, response)
        except BrokenPipeError:
            os._exit(0)
        if request_id is not None and response.get("ok") is not None and text and '"debug.' not in text:
            # Models die with the request; Keras graphs are full of reference cycles. Collect
            # now, after the response is out, so a long-lived worker stays small at no latency,
            # and hand the freed memory back to the system (glibc keeps it otherwise: the next
            # piece's model would come on top of the last one's).
            release_memory()
    sys.stderr.flush()
    return 0


def _reset_peak_memory():
    """Linux: resets the process's peak resident size, so that each request reports its own."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _peak_memory():
    """The peak resident size since the last reset, in bytes (Linux), else None."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None
