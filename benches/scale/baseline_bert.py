"""The hand-written alternative to building the BERT-base-sized bert-style project.

What a careful user writes to do the work of its manifest by hand: restore the encoder (and,
for the second variant, the masked-LM head) from the pre-training checkpoint, save the three
pieces (`encoder`, `pooled`, `mlm`) as Reusable SavedModels (`__call__` traced with training
True/False, `variables`, `trainable_variables`, `regularization_losses`) with a
`serving_default` signature, reload each and compare its outputs on the samples with the
Keras model's, load each in `hub.KerasLayer(trainable=True)` in a second process and
fine-tune it one step, and write `model.tar.gz`.

    python baseline_bert.py PROJECT_DIR OUT_DIR

`benches/scale.rs` times it (and its memory) against exportctl in the same run.
"""

import os
import subprocess
import sys
import tarfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
DROPOUT = 0.1


def export(project, out):
    import keras
    import numpy as np
    import tensorflow as tf

    sys.path.insert(0, project)
    import encoder as bert

    samples = dict(np.load(os.path.join(project, "data", "samples.npz")))
    checkpoint = os.path.join(project, "ckpt", "pretrainer")

    class Reusable(tf.train.Checkpoint):
        pass

    def call_fn(piece):
        return tf.function(lambda x, training=False: piece(x, training=training))

    def serve_fn(piece, names):
        specs = [tf.TensorSpec([None, bert.SEQ_LEN], tf.int32, name=k) for k in bert.INPUT_NAMES]

        @tf.function(input_signature=specs)
        def serve(input_word_ids, input_mask, input_type_ids):
            inputs = {"input_word_ids": input_word_ids, "input_mask": input_mask, "input_type_ids": input_type_ids}
            out = piece(inputs, training=False)
            return out if isinstance(out, dict) else {names[0]: out}

        return serve

    def save_piece(name, piece, names):
        for layer in piece.layers:
            if isinstance(layer, keras.layers.Dropout):
                layer.rate = DROPOUT
        specs = {k: tf.TensorSpec([None, bert.SEQ_LEN], tf.int32, name=k) for k in bert.INPUT_NAMES}
        call = call_fn(piece)
        call.get_concrete_function(specs, training=True)
        call.get_concrete_function(specs, training=False)
        wrapper = Reusable()
        wrapper.variables = [v.value for v in piece.variables]
        wrapper.trainable_variables = [v.value for v in piece.trainable_variables]
        wrapper.regularization_losses = []
        wrapper.__call__ = call
        path = os.path.join(out, name, "saved_model")
        tf.saved_model.save(wrapper, path, signatures={"serving_default": serve_fn(piece, names)})
        expected = piece(samples, training=False)
        expected = expected if isinstance(expected, dict) else {names[0]: expected}
        loaded = tf.saved_model.load(path)
        got = loaded(samples, training=False)
        got = got if isinstance(got, dict) else {names[0]: got}
        served = loaded.signatures["serving_default"](**{k: tf.constant(v) for k, v in samples.items()})
        for key, value in expected.items():
            for what, result in (("__call__", got[key]), ("serving_default", served[key])):
                if not np.allclose(result.numpy(), value.numpy(), atol=1e-5, rtol=1e-5):
                    sys.exit(f"{name}: {what} {key} differs")
        with tarfile.open(os.path.join(out, name, "model.tar.gz"), "w:gz") as tar:
            for entry in sorted(os.listdir(path)):
                tar.add(os.path.join(path, entry), arcname=entry)
        del loaded

    encoder, pretrainer = bert.build_encoder()
    tf.train.Checkpoint(encoder=encoder).read(checkpoint).expect_partial()
    save_piece("encoder", encoder, ["pooled_output"])
    pooled = keras.Model(encoder.inputs, encoder.get_layer("pooler").output)
    save_piece("pooled", pooled, ["pooler"])
    del encoder, pretrainer, pooled

    model, pretrainer = bert.build_encoder_with_mlm()
    tf.train.Checkpoint(**pretrainer.checkpoint_items).read(checkpoint).assert_existing_objects_matched()
    save_piece("mlm", model, ["pooled_output"])


def hub_check(project, out):
    """In a second process, as a consumer: each package in hub.KerasLayer, one fit step."""
    import numpy as np
    import tensorflow_hub as hub
    import tf_keras

    samples = dict(np.load(os.path.join(project, "data", "samples.npz")))
    for name in ("encoder", "pooled", "mlm"):
        layer = hub.KerasLayer(os.path.join(out, name, "saved_model"), trainable=True)
        inputs = {k: tf_keras.Input((v.shape[1],), dtype="int32", name=k) for k, v in samples.items()}
        outputs = layer(inputs)
        first = outputs["pooled_output"] if isinstance(outputs, dict) and "pooled_output" in outputs else outputs
        if isinstance(first, dict):
            first = next(iter(first.values()))
        model = tf_keras.Model(inputs, tf_keras.layers.Dense(1)(first))
        model.compile(optimizer="sgd", loss="mse")
        before = [w.numpy() for w in layer.trainable_weights]
        model.fit(samples, np.zeros((len(samples["input_mask"]), 1), "float32"), epochs=1, verbose=0)
        moved = sum(not np.array_equal(b, w.numpy()) for b, w in zip(before, layer.trainable_weights))
        if moved == 0:
            sys.exit(f"{name}: no trainable weight moved")
        del model, layer


if __name__ == "__main__":
    if sys.argv[1] == "--hub":
        hub_check(sys.argv[2], sys.argv[3])
    else:
        project, out = sys.argv[1], sys.argv[2]
        export(project, out)
        subprocess.run([sys.executable, __file__, "--hub", project, out], check=True)
