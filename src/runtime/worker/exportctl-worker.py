"""exportctl worker: the Python side of exportctl (export, slice, trace, validate).

Run as ``python -u exportctl-worker.py``: exportctl writes this script and the
``exportctl_worker`` package beside it to ``$EXPORTCTL_HOME/worker/<digest>/``. One process
serves many requests, sequentially: newline-delimited JSON requests on stdin, one response
line each on stdout, logs on stderr. docs/worker-protocol.md (in the exportctl repository)
specifies the protocol; ``exportctl_worker/__init__.py`` says which module holds what.

This script prepares the process before anything else is imported, then runs the request loop
(``exportctl_worker.protocol.main``). Its name has a hyphen on purpose: it cannot be
imported, so it never shadows a module of the user's (this folder is first on ``sys.path``).
"""

import os
import sys

# -----------------------------------------------------------------------------
# stdio: keep a private handle on the real stdout, send everything else to stderr.
# This must run before anything imports TensorFlow.
# -----------------------------------------------------------------------------


def _take_stdout():
    sys.stdout.flush()
    fd = os.dup(1)
    os.dup2(2, 1)  # native code writing to fd 1 now reaches stderr
    sys.stdout = sys.stderr
    return os.fdopen(fd, "w", encoding="utf-8", newline="\n")


_RESPONSES = _take_stdout()
sys.dont_write_bytecode = True  # importing user code must not write __pycache__
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Keras 3 runs on TensorFlow here, whatever the user's shell or ~/.keras/keras.json select:
# a model trained on JAX or PyTorch is loaded and exported through TensorFlow.
os.environ["KERAS_BACKEND"] = "tensorflow"
# With oneDNN, TensorFlow allocates tensors from a pool it never gives back: after a training
# check at BERT-base size the worker kept 0.8 GB it no longer used, under every later check.
# The system allocator returns it (same peak per check, same speed, same results).
os.environ.setdefault("TF_ONEDNN_USE_SYSTEM_ALLOCATOR", "1")


def _return_large_blocks():
    """glibc serves a block of 128 KiB or more with its own mapping, returned to the system when
    freed, until a large block is freed: it then raises that threshold to the block's size and
    keeps such blocks in its heap, where what is freed stays resident. A model's activations
    and gradients are such blocks, freed and allocated again at every check: at BERT-base size
    the heap kept 0.2 GB under the peak of each training check. A fixed threshold (setting it
    disables the raising) keeps the peak to what is in use, at the same speed."""
    import ctypes

    if "MALLOC_MMAP_THRESHOLD_" in os.environ:  # the user's own setting
        return
    try:
        ctypes.CDLL("libc.so.6").mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):  # not glibc: its allocator has its own rules
        pass


_return_large_blocks()

import warnings  # noqa: E402

warnings.filterwarnings("ignore", category=DeprecationWarning)
warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", message=r".*HDF5 file.*legacy.*")
warnings.filterwarnings("ignore", message=r".*`build\(\)` was called on layer.*")

from exportctl_worker import protocol  # noqa: E402

if __name__ == "__main__":
    sys.exit(protocol.main(_RESPONSES))
