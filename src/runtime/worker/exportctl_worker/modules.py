"""Lazy, once-only imports of TensorFlow, Keras 3, tf_keras and tensorflow_hub (``M.tf``,
``M.keras``, ``M.tf_keras``, ``M.hub``), the Keras session reset that every model-building
method starts with (``_fresh_session``), and installed distributions' versions.

Importing this module imports none of them: TensorFlow is imported on the first use of
``M.tf``. Reads distribution metadata; writes nothing.
"""

import gc
import importlib.metadata
import logging

from .contract import KERAS3
from .errors import WorkerError
from .phases import phase


class _Modules:
    def __init__(self):
        self._tf = None
        self._keras = None
        self._tf_keras = None
        self._hub = None

    @property
    def tf(self):
        if self._tf is None:
            with phase("import tensorflow"):
                import tensorflow as tf

            tf.get_logger().setLevel(logging.ERROR)
            try:
                import absl.logging

                absl.logging.set_verbosity(absl.logging.ERROR)
            except Exception:  # absl is a TF dependency; tolerate its absence
                pass
            self._tf = tf
        return self._tf

    @property
    def keras(self):
        if self._keras is None:
            self.tf  # noqa: B018 - import TF first, then Keras 3
            with phase("import keras"):
                import keras

            self._keras = keras
        return self._keras

    @property
    def tf_keras(self):
        if self._tf_keras is None:
            self.tf  # noqa: B018
            try:
                with phase("import tf_keras"):
                    import tf_keras
            except ImportError as e:
                raise WorkerError(
                    "MissingPackage",
                    "tf_keras is not installed in this Python environment; it is needed "
                    "for tf-keras models and for the hub.KerasLayer check",
                    {"package": "tf-keras"},
                ) from e
            self._tf_keras = tf_keras
        return self._tf_keras

    @property
    def hub(self):
        if self._hub is None:
            self.tf_keras  # noqa: B018
            with phase("import tensorflow_hub"):
                import tensorflow_hub

            self._hub = tensorflow_hub
        return self._hub

    def keras_for(self, flavour):
        return self.keras if flavour == KERAS3 else self.tf_keras


M = _Modules()


def _fresh_session():
    """Reset Keras' global state (auto-name counters, graph) so that a warm worker names things
    exactly like a fresh one: Keras 3 seed generators are auto-named (seed_generator_<n>) and that
    name lands in the SavedModel's checkpoint. Models never outlive a request, so this is safe."""
    M.keras.backend.clear_session(free_memory=False)
    if M._tf_keras is not None:
        M._tf_keras.backend.clear_session()
    # Grappler options are recorded in every call op a trace writes: as a fresh process has them.
    M.tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": None})


def _dist_version(name):
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def release_memory():
    """Collects garbage (Keras graphs are full of reference cycles) and hands freed memory back
    to the system (glibc keeps it otherwise, and the next model would come on top of it)."""
    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
