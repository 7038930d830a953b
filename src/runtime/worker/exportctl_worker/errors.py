"""How the worker reports failure: ``WorkerError`` (an error carrying one of the protocol's
own codes and structured data), the error payload and traceback frames sent for any exception
(``_error_payload``, ``_format_frames``), and ``log`` (the worker's own lines on stderr).

Imports nothing from the worker and nothing heavy, so that every other module can import it.
Writes only to stderr.
"""

import os
import sys
import traceback

TRACEBACK_FRAMES = 8

# The package's folder: frames from its files are labelled ``worker/<file>.py``.
_WORKER_DIR = os.path.dirname(os.path.abspath(__file__))
# The request loop's file: its dispatcher frames are left out of tracebacks.
_PROTOCOL_FILE = os.path.join(_WORKER_DIR, "protocol.py")


def log(message):
    sys.stderr.write(f"exportctl-worker: {message}\n")
    sys.stderr.flush()


class WorkerError(Exception):
    """An error with one of the protocol's own codes and structured data."""

    def __init__(self, code, message, data=None):
        super().__init__(message)
        self.code = code
        self.data = data or {}


def _frame_label(filename):
    path = os.path.abspath(filename)
    if os.path.dirname(path) == _WORKER_DIR:
        return "worker/" + os.path.basename(path)
    marker = os.sep + "site-packages" + os.sep
    if marker in filename:
        return filename.split(marker, 1)[1]
    return filename


def _format_frames(exc):
    frames = traceback.extract_tb(exc.__traceback__)
    # drop the dispatcher's own frame
    frames = [f for f in frames if not (os.path.abspath(f.filename) == _PROTOCOL_FILE and f.name in ("_dispatch", "main"))]
    frames = frames[-TRACEBACK_FRAMES:]
    return [f"{_frame_label(f.filename)}:{f.lineno} in {f.name}" for f in frames]


def _error_payload(exc):
    if isinstance(exc, WorkerError):
        etype, data = exc.code, dict(exc.data)
    else:
        etype, data = type(exc).__name__, {}
    cause = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    if cause is not None and not isinstance(exc, WorkerError):
        data.setdefault("cause", f"{type(cause).__name__}: {cause}")
    if getattr(exc, "exportctl_hint", None):
        data["hint"] = exc.exportctl_hint
    message = str(exc) or etype
    return {"type": etype, "message": message, "traceback": _format_frames(exc), "data": data}
