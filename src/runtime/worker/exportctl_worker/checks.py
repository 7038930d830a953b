"""The record of a validation's checks (``Checks``), how outputs are compared with the golden
ones (``compare_arrays``, ``compare_outputs``: ``|got - ref| <= atol + rtol*|ref|``, reporting
the largest difference and where), and ``fingerprint``, a digest of a variable's bytes.

Pure but for ``fingerprint`` (which reads a variable) and the phase timings; imports NumPy
lazily and nothing else heavy.
"""

import hashlib
import time

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

    def add(self, name, ok, message, **details):
        _known(name)
        details["seconds"] = self._elapsed()
        phases.add(f"check {name}", details["seconds"])
        self.items.append({"name": name, "ok": bool(ok), "message": message, "details": details})
        return ok

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


def compare_arrays(got, ref, atol, rtol):
    """Returns (ok, details) for |got - ref| <= atol + rtol*|ref|."""
    import numpy as np

    got, ref = np.asarray(got), np.asarray(ref)
    details = {"shape": list(got.shape), "expected_shape": list(ref.shape), "dtype": got.dtype.name}
    if got.shape != ref.shape:
        return False, details
    if got.size == 0:
        details.update(max_abs_diff=0.0, index=None, mismatches=0)
        return True, details
    if ref.dtype.kind not in "fc" and got.dtype.kind not in "fc":
        bad = got != ref
        details.update(mismatches=int(bad.sum()), max_abs_diff=None)
        if bad.any():
            idx = np.unravel_index(int(np.argmax(bad)), bad.shape)
            details.update(index=[int(i) for i in idx], got=got[idx].item(), expected=ref[idx].item())
        return not bad.any(), details
    g, r = got.astype(np.float64), ref.astype(np.float64)
    diff = np.abs(g - r)
    nan_mismatch = np.isnan(g) != np.isnan(r)
    both_nan = np.isnan(g) & np.isnan(r)
    diff = np.where(both_nan, 0.0, diff)
    diff = np.where(nan_mismatch, np.inf, diff)
    tol = atol + rtol * np.abs(np.where(np.isnan(r), 0.0, r))
    bad = diff > tol
    idx = np.unravel_index(int(np.argmax(np.where(np.isnan(diff), np.inf, diff))), diff.shape)
    details.update(
        max_abs_diff=float(diff[idx]),
        index=[int(i) for i in idx],
        got=float(g[idx]),
        expected=float(r[idx]),
        tolerance=float(tol[idx]),
        mismatches=int(bad.sum()),
    )
    return not bad.any(), details


def compare_outputs(out_struct, golden, refs, atol, rtol):
    """Compare an output structure with the golden outputs; returns (ok, message, details)."""
    names = [o["name"] for o in golden["outputs"]]
    if isinstance(out_struct, dict):
        got = {k: out_struct.get(k) for k in names}
    elif isinstance(out_struct, (list, tuple)):
        got = dict(zip(names, list(out_struct))) if len(out_struct) == len(names) else {}
    else:
        got = {names[0]: out_struct} if len(names) == 1 else {}
    per, failures = {}, []
    for n in names:
        if got.get(n) is None:
            per[n] = {"missing": True}
            failures.append(f"output '{n}' is missing")
            continue
        value = got[n].numpy() if hasattr(got[n], "numpy") else got[n]
        ok, d = compare_arrays(value, refs[n], atol, rtol)
        per[n] = d
        if not ok:
            if d["shape"] != d["expected_shape"]:
                failures.append(f"output '{n}': shape {d['shape']}, expected {d['expected_shape']}")
            elif d.get("max_abs_diff") is None:
                failures.append(f"output '{n}': {d['mismatches']} element(s) differ, first at {d.get('index')}")
            else:
                failures.append(
                    f"output '{n}': max |diff| {d['max_abs_diff']:.3g} at {d['index']} "
                    f"(got {d['got']:.7g}, expected {d['expected']:.7g}) "
                    f"exceeds atol {atol:g} + rtol {rtol:g}*|ref| = {d['tolerance']:.3g}; "
                    f"{d['mismatches']} element(s) out of tolerance"
                )
    if failures:
        return False, "; ".join(failures), per
    worst = max((d.get("max_abs_diff") or 0.0) for d in per.values()) if per else 0.0
    return True, f"{len(names)} output(s) match (max |diff| {worst:.3g})", per


def fingerprint(variable):
    """A digest of a variable's bytes (one variable in memory at a time)."""
    return hashlib.blake2b(variable.numpy().tobytes(), digest_size=16).digest()
