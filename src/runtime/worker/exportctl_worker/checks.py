"""The record of a validation's checks (``Checks``), what a check computed on the golden inputs
(``computed``: its outputs written as ``.npy`` files, for exportctl to judge), and
``fingerprint``, which tells whether a training step moved a variable, and ``nonzero``, whether
a gradient reaches its variable.

The worker never judges outputs against the reference ones: exportctl compares what every
loader computed by one rule (shape, dtype, ``|got - ref| <= atol + rtol*|ref|``), so a check that
runs the package hands over its outputs with ``computed`` and its own verdict covers only what
else it saw.

Writes only under the outputs folder it is given; imports NumPy lazily and nothing else heavy.
"""

import os
import time
import zlib

from . import phases
from .contract import CHECKS
from .errors import _format_frames


class Checks:
    def __init__(self):
        self.items = []
        self._mark = time.monotonic()

    def _elapsed(self):
        now = time.monotonic()
        elapsed, self._mark = now - self._mark, now
        return round(elapsed, 3)

    def add(self, name, ok, message, computed=None, runs=None, **details):
        """Records a check. ``computed`` (from ``computed()``): outputs exportctl judges too; the
        check then holds only if they match, and ``message`` says what else was seen ("" if
        nothing). ``runs`` (``training_flag``): several runs' ``computed`` records by name,
        which exportctl compares with each other."""
        _known(name)
        details["seconds"] = self._elapsed()
        phases.add(f"check {name}", details["seconds"])
        item = {"name": name, "ok": bool(ok), "message": message, "details": details}
        if computed is not None:
            item["computed"] = computed
        if runs is not None:
            item["runs"] = runs
        self.items.append(item)
        return ok

    def lap(self, phase):
        """Time spent since the last check, on work that is not a check's own (a phase)."""
        phases.add(phase, self._elapsed())

    def skip(self, name, reason):
        _known(name)
        self.items.append(
            {
                "name": name,
                "ok": True,
                "message": f"skipped: {reason}",
                "details": {"skipped": True, "reason": reason, "seconds": self._elapsed()},
            }
        )

    def error(self, name, exc):
        self.add(name, False, f"{type(exc).__name__}: {exc}", exception=type(exc).__name__, traceback=_format_frames(exc))


def _known(name):
    """Every check is one of exportctl's (src/contract.rs): its docs and its help exist."""
    if name not in CHECKS:
        raise ValueError(f"check {name!r} is not in contract.CHECKS: add it to src/contract.rs and docs/validation.md")


def computed(out_struct, golden, out_dir, check, by):
    """Writes what ``by`` (a loader, in words) computed for the golden inputs, one ``.npy`` per
    golden output under ``out_dir/check/``, and returns the check's ``computed`` record:
    ``{"by": by, "outputs": {name: file relative to out_dir, or None when not returned}}``.

    ``out_struct`` is matched to the golden outputs by name (a dict), by position (a list or
    tuple of as many), or is the only output."""
    import numpy as np

    names = [o["name"] for o in golden["outputs"]]
    if isinstance(out_struct, dict):
        got = {k: out_struct.get(k) for k in names}
    elif isinstance(out_struct, (list, tuple)):
        got = dict(zip(names, list(out_struct))) if len(out_struct) == len(names) else {}
    else:
        got = {names[0]: out_struct} if len(names) == 1 else {}
    os.makedirs(os.path.join(out_dir, check), exist_ok=True)
    files = {}
    for i, name in enumerate(names):
        value = got.get(name)
        if value is None:
            files[name] = None
            continue
        file = f"{check}/{i}.npy"
        array = value.numpy() if hasattr(value, "numpy") else np.asarray(value)
        np.save(os.path.join(out_dir, file), np.ascontiguousarray(array), allow_pickle=False)
        files[name] = file
    return {"by": by, "outputs": files}


def fingerprint(variable):
    """What tells whether a training step moved ``variable``: the CRC-32 of its bytes, and their
    count. A change detector, not a digest anyone could attack: a step's change it misses has
    odds of 2**-32, and it runs at memory speed (4 GB/s, against 0.56 GB/s for the BLAKE2 of a
    copy it replaced: at BERT-base size three checks each hash the weights twice). Reads one
    variable at a time, without a second copy of its bytes."""
    import numpy as np

    array = np.ascontiguousarray(variable.numpy())
    return array.nbytes, zlib.crc32(array.reshape(-1).view(np.uint8))


def nonzero(gradient):
    """Whether ``gradient`` (a tensor, ``tf.IndexedSlices`` for an embedding's rows, or ``None``)
    has an element that is not zero: whether the variable it is for gets a gradient at all."""
    if gradient is None:
        return False
    from .modules import M

    values = gradient.values if isinstance(gradient, M.tf.IndexedSlices) else gradient
    return bool(M.tf.reduce_any(M.tf.not_equal(values, 0)))
