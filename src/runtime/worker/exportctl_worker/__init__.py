"""The exportctl worker's code, one module per concern (docs/worker-protocol.md specifies the
protocol it speaks; the entry script ``exportctl-worker.py`` beside this folder runs it):

* ``protocol``: the request loop, dispatch, responses, the exit-with-parent watchdog, ``hello``.
* ``errors``: ``WorkerError``, error payloads and traceback frames, ``log``.
* ``modules``: lazy imports of TensorFlow, Keras, tf_keras, tensorflow_hub (``M``).
* ``params``: parameter checking and small pure helpers (JSON, names, shapes, dtypes).
* ``usercode``: custom-object files and builders.
* ``introspect``: what a Keras model (or a restored SavedModel) holds.
* ``kerasio``: loading Keras files, what their optimizer held.
* ``backends``: errors that name a layer tied to another Keras backend (JAX, PyTorch).
* ``recipe``: building the export's model (and a slice's piece) again from the project's files.
* ``phases``: where a request's time goes.
* ``export``, ``slicing``, ``trace``, ``validate``: one module per method; ``debug``: the
  test-only methods.
* ``checks``: validate's record of checks and how outputs are compared with the golden ones.
* ``consumers``: validate's consumer checks, hub.KerasLayer (tf_keras) and TFSMLayer (Keras 3).
* ``canonical``: canonical SavedModel bytes.

Importing the package imports nothing: each module imports what it needs, and TensorFlow is
imported only on first use, through ``modules.M``.
"""
