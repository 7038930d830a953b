"""A BERT-style text encoder, exported the way Model Garden's export_tfhub_lib.py does it.

The model that ships (`core_model`, here the encoder with dict inputs) is built on its own,
and its weights come from a checkpoint written during pre-training by a *pretrainer*: an
object that holds the encoder next to the heads only pre-training needs (the masked-LM head)
and names them in `checkpoint_items`. Restoring `encoder` out of that checkpoint, and nothing
else, is what `restore = "encoder"` in Export.toml asks for.

Deliberately tiny (2 layers, hidden size 32, vocabulary 128) so that the committed
checkpoint stays under 1 MB and everything runs in seconds; the structure is the real one.
"""

import keras
from keras import ops

VOCAB = 128
SEQ_LEN = 16
TYPE_VOCAB = 2
HIDDEN = 32
HEADS = 2
LAYERS = 2
INTERMEDIATE = 64
DROPOUT = 0.1

INPUT_NAMES = ("input_word_ids", "input_mask", "input_type_ids")


@keras.saving.register_keras_serializable(package="bert_style")
class PositionEmbedding(keras.layers.Layer):
    """Adds a learned embedding of each position (Model Garden's PositionEmbedding)."""

    def __init__(self, max_length, **kwargs):
        super().__init__(**kwargs)
        self.max_length = max_length

    def build(self, input_shape):
        self.embeddings = self.add_weight(
            name="embeddings", shape=(self.max_length, input_shape[-1]), initializer="glorot_uniform"
        )

    def call(self, inputs):
        length = ops.shape(inputs)[1]
        return inputs + self.embeddings[None, :length, :]

    def get_config(self):
        return {**super().get_config(), "max_length": self.max_length}


@keras.saving.register_keras_serializable(package="bert_style")
class SelfAttentionMask(keras.layers.Layer):
    """[batch, seq] padding mask -> [batch, seq, seq] attention mask."""

    def call(self, mask):
        keep = ops.cast(ops.greater(mask, 0), "float32")
        return ops.cast(keep[:, None, :] * ops.ones_like(keep)[:, :, None], "bool")


@keras.saving.register_keras_serializable(package="bert_style")
class FirstToken(keras.layers.Layer):
    """The [CLS] position: [batch, seq, hidden] -> [batch, hidden]."""

    def call(self, sequence):
        return sequence[:, 0, :]


def _transformer_block(x, attention_mask, i):
    attention = keras.layers.MultiHeadAttention(HEADS, HIDDEN // HEADS, name=f"transformer_{i}_attention")(
        x, x, attention_mask=attention_mask
    )
    attention = keras.layers.Dropout(DROPOUT, name=f"transformer_{i}_attention_dropout")(attention)
    x = keras.layers.LayerNormalization(epsilon=1e-12, name=f"transformer_{i}_attention_norm")(
        keras.layers.Add(name=f"transformer_{i}_attention_residual")([x, attention])
    )
    hidden = keras.layers.Dense(INTERMEDIATE, activation="gelu", name=f"transformer_{i}_intermediate")(x)
    hidden = keras.layers.Dense(HIDDEN, name=f"transformer_{i}_output")(hidden)
    hidden = keras.layers.Dropout(DROPOUT, name=f"transformer_{i}_output_dropout")(hidden)
    return keras.layers.LayerNormalization(epsilon=1e-12, name=f"transformer_{i}_output_norm")(
        keras.layers.Add(name=f"transformer_{i}_output_residual")([x, hidden])
    )


def encoder_inputs():
    return {name: keras.Input(shape=(SEQ_LEN,), dtype="int32", name=name) for name in INPUT_NAMES}


def build_core_encoder():
    """The encoder: dict of int32 [batch, 16] inputs -> pooled_output and sequence_output."""
    inputs = encoder_inputs()
    words = keras.layers.Embedding(VOCAB, HIDDEN, name="word_embeddings")(inputs["input_word_ids"])
    types = keras.layers.Embedding(TYPE_VOCAB, HIDDEN, name="type_embeddings")(inputs["input_type_ids"])
    x = keras.layers.Add(name="embeddings_sum")([words, types])
    x = PositionEmbedding(SEQ_LEN, name="position_embedding")(x)
    x = keras.layers.LayerNormalization(epsilon=1e-12, name="embeddings_norm")(x)
    x = keras.layers.Dropout(DROPOUT, name="embeddings_dropout")(x)
    mask = SelfAttentionMask(name="self_attention_mask")(inputs["input_mask"])
    for i in range(LAYERS):
        x = _transformer_block(x, mask, i)
    pooled = keras.layers.Dense(HIDDEN, activation="tanh", name="pooler")(FirstToken(name="cls_token")(x))
    return keras.Model(inputs, {"pooled_output": pooled, "sequence_output": x}, name="bert_encoder")


def build_masked_lm():
    """The pre-training head: sequence_output -> logits over the vocabulary at every position."""
    sequence = keras.Input(shape=(SEQ_LEN, HIDDEN), name="sequence_output")
    x = keras.layers.Dense(HIDDEN, activation="gelu", name="mlm_transform")(sequence)
    x = keras.layers.LayerNormalization(epsilon=1e-12, name="mlm_norm")(x)
    logits = keras.layers.Dense(VOCAB, name="mlm_logits")(x)
    return keras.Model(sequence, logits, name="masked_lm")


class Pretrainer:
    """What pre-training checkpoints: the encoder and the heads, by name (Model Garden's
    BertPretrainerV2.checkpoint_items)."""

    def __init__(self, encoder=None):
        self.encoder = encoder or build_core_encoder()
        self.masked_lm = build_masked_lm()

    @property
    def checkpoint_items(self):
        return {"encoder": self.encoder, "masked_lm": self.masked_lm}


def build_encoder():
    """Export variant 1: the encoder alone (`restore = "encoder"` takes just its weights)."""
    encoder = build_core_encoder()
    return encoder, Pretrainer(encoder)


def build_encoder_with_mlm():
    """Export variant 2: the encoder plus its masked-LM head, for consumers who continue
    pre-training (every checkpoint item is restored)."""
    pretrainer = Pretrainer()
    inputs = encoder_inputs()
    outputs = pretrainer.encoder(inputs)
    mlm_logits = pretrainer.masked_lm(outputs["sequence_output"])
    model = keras.Model(
        inputs,
        {"pooled_output": outputs["pooled_output"], "sequence_output": outputs["sequence_output"], "mlm_logits": mlm_logits},
        name="bert_encoder_with_mlm",
    )
    return model, pretrainer
