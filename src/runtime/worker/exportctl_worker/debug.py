"""Test-only methods (``debug.sleep``, ``debug.raise``, ``debug.exit``, ``debug.segfault``,
``debug.print``), dispatched only when EXPORTCTL_WORKER_DEBUG=1.

They sleep, raise, exit or crash the process on purpose, or print to the (redirected)
stdout; they write no file and import no TensorFlow.
"""

import os
import sys
import time

from .params import _param


def m_debug_sleep(params):
    seconds = float(_param(params, "seconds", float, default=1.0))
    time.sleep(seconds)
    return {"slept": seconds}


def m_debug_raise(params):
    raise ValueError(_param(params, "message", str, default="debug.raise"))


def m_debug_exit(params):
    code = int(_param(params, "code", int, default=0))
    sys.stderr.flush()
    os._exit(code)


def m_debug_segfault(params):
    import ctypes

    sys.stderr.flush()
    ctypes.string_at(0)


def m_debug_print(params):
    print(_param(params, "text", str, default="noise on stdout"))
    return {"printed": True}
