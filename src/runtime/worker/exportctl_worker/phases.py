"""Where a request's time goes: named phases, reported to exportctl as ``result["phases"]``
(milliseconds per phase, in the order they first ran). Pure bookkeeping; touches nothing.

    with phase("load"):
        model = load(...)
"""

import contextlib
import time

_current = {}


def reset():
    _current.clear()


@contextlib.contextmanager
def phase(name):
    started = time.monotonic()
    try:
        yield
    finally:
        _current[name] = _current.get(name, 0) + int(round((time.monotonic() - started) * 1000))


def add(name, seconds):
    """Adds ``seconds`` to phase ``name`` (for code that measures time itself)."""
    _current[name] = _current.get(name, 0) + int(round(seconds * 1000))


def take():
    """The phases recorded since the last ``reset``, and a reset."""
    taken = dict(_current)
    _current.clear()
    return taken


def timed(name):
    """A decorator: every call of the function counts as phase ``name``."""

    def wrap(fn):
        def timed_call(*args, **kwargs):
            with phase(name):
                return fn(*args, **kwargs)

        timed_call.__name__ = fn.__name__
        timed_call.__doc__ = fn.__doc__
        return timed_call

    return wrap
