"""Canonical SavedModel bytes (imported by exportctl_worker.py from its own folder).

Placeholder: see exportctl issue "Reproducible packages". `canonicalize(export_dir)` rewrites a
SavedModel written by tf.saved_model.save so that its bytes do not depend on what the process
traced before.
"""


def canonicalize(export_dir):
    """Makes the SavedModel in export_dir byte-stable. Returns a dict describing what changed."""
    return {"renamed_functions": 0}
