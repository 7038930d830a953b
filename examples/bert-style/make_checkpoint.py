"""Writes the pretrainer's checkpoint (ckpt/pretrainer.*) and the golden inputs (data/samples.npz).

Stands in for pre-training: the pretrainer's weights are initialised with a fixed seed and
moved by a few steps of masked-LM training on random token ids, then saved the way Model
Garden saves pre-training checkpoints: `tf.train.Checkpoint(**pretrainer.checkpoint_items)`.
The files are committed (under 1 MB); this script regenerates them:

    python make_checkpoint.py [--epochs N]
"""

import os
import sys

import keras
import numpy as np
import tensorflow as tf

import encoder as bert

HERE = os.path.dirname(os.path.abspath(__file__))


def token_batch(rng, batch):
    """Realistic encoder inputs: ids in the vocabulary, padding at the end, two segments."""
    lengths = rng.integers(4, bert.SEQ_LEN + 1, size=batch)
    positions = np.arange(bert.SEQ_LEN)[None, :]
    mask = (positions < lengths[:, None]).astype("int32")
    word_ids = rng.integers(1, bert.VOCAB, size=(batch, bert.SEQ_LEN)).astype("int32") * mask
    type_ids = ((positions >= (lengths[:, None] // 2)) * mask).astype("int32")
    return {"input_word_ids": word_ids, "input_mask": mask, "input_type_ids": type_ids}


def main() -> None:
    # `--epochs 0` skips the stand-in pre-training (benchmarks at BERT-base size use it).
    epochs = int(sys.argv[sys.argv.index("--epochs") + 1]) if "--epochs" in sys.argv else 2
    keras.utils.set_random_seed(0)
    pretrainer = bert.Pretrainer()
    inputs = bert.encoder_inputs()
    mlm_logits = pretrainer.masked_lm(pretrainer.encoder(inputs)["sequence_output"])
    model = keras.Model(inputs, mlm_logits)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    batch = token_batch(rng, 64)
    if epochs > 0:
        model.fit(batch, batch["input_word_ids"], epochs=epochs, batch_size=16, verbose=0)

    os.makedirs(os.path.join(HERE, "ckpt"), exist_ok=True)
    path = tf.train.Checkpoint(**pretrainer.checkpoint_items).write(os.path.join(HERE, "ckpt", "pretrainer"))
    print(f"wrote {path}")
    samples = token_batch(np.random.default_rng(1), 4)
    np.savez(os.path.join(HERE, "data", "samples.npz"), **samples)
    print("wrote data/samples.npz")


if __name__ == "__main__":
    main()
