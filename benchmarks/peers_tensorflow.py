"""TensorFlow peers, measured beside the TensorFlow reference Transformer at the workload's size.

keras-hub's cached seq2seq decoder, built from its layers with random weights (nothing downloaded):
`TokenAndPositionEmbedding`, `TransformerEncoder` and `TransformerDecoder` with a preallocated
`self_attention_cache` written at the step index and a `cross_attention_cache` filled once, the
way `keras_hub.models.BartSeq2SeqLM.generate` decodes. Greedy, exactly `steps` tokens:

- keras-hub-xla: the whole loop in one `tf.function(jit_compile=True)`, as keras-hub's generate
  runs it on TensorFlow; traced and compiled by the builder, so the timed call is steady-state.
- keras-hub-eager: the same step, called from a Python loop, eagerly.

Beside the TensorFlow reference speech model (SPEECH_PEERS), keras-hub's `WhisperBackbone` built from
a config at the workload's sizes (d_model, heads, FFN, layers, vocabulary, 80 features; random
weights, nothing downloaded) and decoded the same two ways. keras-hub 0.32 has no Whisper `generate`
(no Seq2SeqLM for it), so the loop is BART's above over Whisper's own layers: its encoder sub-model,
`TokenAndPositionEmbedding` at the step index, its `WhisperDecoder` layers with self- and
cross-attention caches, its final LayerNorm and the tied output projection (the token embedding
reversed), as a Whisper Seq2SeqLM would. What its architecture fixes, unlike ours: one stride-2
convolution (1,000 frames -> 500 positions for cross-attention, ours 250), pre-norm, GELU, no encoder
padding mask (the workload's utterances are valid to their end, so none is needed).

Each builder takes (batch, steps) and returns a no-argument callable, or raises `Unavailable`.
"""
from __future__ import annotations

import functools
import os

import numpy as np

from . import workload as W
from .backends import Unavailable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up notices, before it loads


@functools.lru_cache(maxsize=1)
def _keras_hub():
    import keras

    W.pin_framework_threads()  # through the bridge, which loads once keras is imported
    try:
        import keras_hub
    except Exception as exc:  # not installed, or an install that does not load with this Keras
        raise Unavailable(f"keras_hub cannot be imported: {exc!r}") from exc
    return keras_hub


class KerasHubSeq2Seq:
    """A post-norm encoder-decoder of keras-hub layers (BART's layout) and its cached greedy step."""

    memory_len = W.SRC_LEN  # encoder positions: the cross-attention caches' length

    def __init__(self):
        import keras

        hub = _keras_hub()
        keras.utils.set_random_seed(W.SEED)
        max_len = max(W.DECODE_LENGTHS)
        self.heads, self.head_dim = W.HEADS, W.D_MODEL // W.HEADS
        self.src_embed = hub.layers.TokenAndPositionEmbedding(W.VOCAB, W.SRC_LEN, W.D_MODEL)
        self.tgt_embed = hub.layers.TokenAndPositionEmbedding(W.VOCAB, max_len, W.D_MODEL)
        self.encoders = [hub.layers.TransformerEncoder(W.FFN, W.HEADS) for _ in range(W.LAYERS)]
        self.decoders = [hub.layers.TransformerDecoder(W.FFN, W.HEADS) for _ in range(W.LAYERS)]
        self.out = keras.layers.Dense(W.VOCAB)
        src, mask = self.source(1)
        self.decode(src, mask, 2)  # builds every layer

    @staticmethod
    def source(batch):
        import tensorflow as tf

        src, valid = W.source(batch)
        return tf.constant(src, tf.int32), tf.constant(np.arange(W.SRC_LEN) < valid[:, None])

    def encode(self, src, mask):
        x = self.src_embed(src)
        for layer in self.encoders:
            x = layer(x, padding_mask=mask)
        return x

    def step(self, token, index, memory, mask, self_caches, cross_caches, fill_cross):
        """One token (batch,) at position `index` -> (next token, updated caches)."""
        from keras import ops

        x = self.tgt_embed(token[:, None], start_index=index)
        new_self, new_cross = [], []
        for layer, self_cache, cross_cache in zip(self.decoders, self_caches, cross_caches):
            x, self_cache, cross_cache = layer(
                x, memory, encoder_padding_mask=mask,
                self_attention_cache=self_cache, self_attention_cache_update_index=index,
                cross_attention_cache=cross_cache, cross_attention_cache_update_index=0 if fill_cross else None,
            )
            new_self.append(self_cache)
            new_cross.append(cross_cache)
        next_token = ops.cast(ops.argmax(self.out(x[:, 0]), axis=-1), "int32")
        return next_token, new_self, new_cross

    def empty_caches(self, batch, length):
        from keras import ops

        return [ops.zeros((batch, 2, length, self.heads, self.head_dim)) for _ in self.decoders]

    def decode(self, src, mask, steps):
        """The loop written for eager execution: (batch, steps) int32 tokens."""
        from keras import ops

        batch = ops.shape(src)[0]
        memory = self.encode(src, mask)
        token = ops.full((batch,), W.BOS, "int32")
        self_caches, cross_caches = self.empty_caches(batch, steps), self.empty_caches(batch, self.memory_len)
        out = []
        for index in range(steps):
            token, self_caches, cross_caches = self.step(
                token, index, memory, mask, self_caches, cross_caches, fill_cross=index == 0)
            out.append(token)
        return ops.stack(out, axis=1)

    def decode_graph(self, src, mask, steps):
        """The same loop as one tf.while_loop (static shapes throughout, so XLA can compile it)."""
        import tensorflow as tf

        batch = tf.shape(src)[0]
        memory = self.encode(src, mask)
        bos = tf.fill((batch,), W.BOS)
        # Step 0 fills the cross-attention caches; later steps only read them.
        token, self_caches, cross_caches = self.step(
            bos, 0, memory, mask, self.empty_caches(batch, steps), self.empty_caches(batch, self.memory_len), True)
        out = tf.TensorArray(tf.int32, size=steps).write(0, token)

        def body(index, token, self_caches, out):
            token, self_caches, _ = self.step(token, index, memory, mask, self_caches, cross_caches, False)
            return index + 1, token, self_caches, out.write(index, token)

        _, _, _, out = tf.while_loop(lambda index, *_: index < steps, body, (1, token, self_caches, out))
        return tf.transpose(out.stack())


class KerasHubWhisper(KerasHubSeq2Seq):
    """keras-hub's WhisperBackbone at the workload's sizes, decoded by KerasHubSeq2Seq's loops."""

    memory_len = W.FRAMES // 2  # one stride-2 convolution (kernel 3, padded by 1)

    def __init__(self):
        import keras

        hub = _keras_hub()
        keras.utils.set_random_seed(W.SEED)
        self.heads, self.head_dim = W.HEADS, W.D_MODEL // W.HEADS
        self.backbone = hub.models.WhisperBackbone(
            vocabulary_size=W.VOCAB, num_layers=W.LAYERS, num_heads=W.HEADS, hidden_dim=W.D_MODEL,
            intermediate_dim=W.FFN, num_mels=W.FEATURES, max_encoder_sequence_length=W.FRAMES,
            max_decoder_sequence_length=max(W.DECODE_LENGTHS))
        # Its encoder alone: the functional graph from the features to the encoder's output.
        self.encoder = keras.Model(self.backbone.input["encoder_features"],
                                   self.backbone.output["encoder_sequence_output"])
        self.decoders = self.backbone.decoder_transformer_layers

    @staticmethod
    def source(batch):
        import tensorflow as tf

        frames, valid = W.source(batch, "speech")
        assert (valid == W.FRAMES).all()  # Whisper takes no encoder mask: every frame must be valid
        return tf.constant(frames, tf.float32), None

    def encode(self, src, mask):
        return self.encoder(src)

    def step(self, token, index, memory, mask, self_caches, cross_caches, fill_cross):
        """One token (batch,) at position `index` -> (next token, updated caches)."""
        from keras import ops

        logits, new_self, new_cross = self.step_logits(token, index, memory, self_caches, cross_caches, fill_cross)
        return ops.cast(ops.argmax(logits, axis=-1), "int32"), new_self, new_cross

    def step_logits(self, token, index, memory, self_caches, cross_caches, fill_cross):
        """One token (batch,) at position `index` -> ((batch, vocab) logits, updated caches)."""
        x = self.backbone.decoder_embeddings(token[:, None], start_index=index)
        new_self, new_cross = [], []
        for layer, self_cache, cross_cache in zip(self.decoders, self_caches, cross_caches):
            x, self_cache, cross_cache = layer(
                x, memory,
                self_attention_cache=self_cache, self_attention_cache_update_index=index,
                cross_attention_cache=cross_cache, cross_attention_cache_update_index=0 if fill_cross else None,
            )
            new_self.append(self_cache)
            new_cross.append(cross_cache)
        x = self.backbone.decoder_layer_norm(x)
        return self.backbone.token_embedding(x[:, 0], reverse=True), new_self, new_cross  # tied LM head

    def logits(self, frames, tokens):
        """The backbone's own uncached forward: (batch, len(tokens), vocab) for teacher-forced `tokens`."""
        from keras import ops

        out = self.backbone({"encoder_features": frames, "decoder_token_ids": tokens,
                             "decoder_padding_mask": ops.ones_like(tokens)})
        return self.backbone.token_embedding(out["decoder_sequence_output"], reverse=True)


@functools.lru_cache(maxsize=1)
def _model():
    return KerasHubSeq2Seq()


@functools.lru_cache(maxsize=1)
def _whisper():
    return KerasHubWhisper()


def _xla(model, batch, steps):
    import tensorflow as tf

    src, mask = model.source(batch)
    compiled = tf.function(model.decode_graph, jit_compile=True)
    compiled(src, mask, steps)  # trace and compile here, not in the timed call
    return lambda: compiled(src, mask, steps).numpy()


def _eager(model, batch, steps):
    src, mask = model.source(batch)
    return lambda: np.asarray(model.decode(src, mask, steps))


def keras_hub_whisper_xla(batch, steps):
    return _xla(_whisper(), batch, steps)


def keras_hub_whisper_eager(batch, steps):
    return _eager(_whisper(), batch, steps)


def keras_hub_xla(batch, steps):
    import tensorflow as tf

    model = _model()
    src, mask = model.source(batch)
    compiled = tf.function(model.decode_graph, jit_compile=True)
    compiled(src, mask, steps)  # trace and compile here, not in the timed call
    return lambda: compiled(src, mask, steps).numpy()


def keras_hub_eager(batch, steps):
    model = _model()
    src, mask = model.source(batch)
    return lambda: np.asarray(model.decode(src, mask, steps))


PEERS = {  # name: (label, builder); all sit beside the TensorFlow reference Transformer
    "keras-hub-xla": ("keras-hub cached decoder, one XLA-compiled tf.function", keras_hub_xla),
    "keras-hub-eager": ("keras-hub cached decoder, eager", keras_hub_eager),
}
SPEECH_PEERS = {  # beside the TensorFlow reference speech model
    "keras-hub-whisper-xla": ("keras-hub Whisper, cached loop in one XLA-compiled tf.function",
                              keras_hub_whisper_xla),
    "keras-hub-whisper-eager": ("keras-hub Whisper, cached loop, eager", keras_hub_whisper_eager),
}
FAMILY_PEERS = {"transformer": PEERS, "speech": SPEECH_PEERS}
