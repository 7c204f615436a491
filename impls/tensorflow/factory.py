"""`make_model(spec)`: the reference family named by `spec.family`, in `spec.dtype`, built; holding
the canonical weights of `spec.weights` when it names a file (docs/weights.md)."""
import contextlib

import keras
import numpy as np

from conformance import canonical
from conformance.sources import kind_of
from conformance.spec import Unsupported

from .. import reference_factory
from .bahdanau import AttentionDecoder, MemoryAttentionDecoder
from .canonical import load_canonical
from .captioning import CaptioningEncoder, GridAttentionDecoder
from .d2l import EncoderDecoder
from .recurrent import Seq2SeqDecoder, Seq2SeqEncoder
from .speech import SpeechDecoder, SpeechEncoder
from .transformer import TransformerDecoder, TransformerEncoder


def recurrent(cell):
    def build(s):
        return (
            Seq2SeqEncoder(cell, s.src_vocab, s.embed_size, s.num_hiddens, s.num_layers, s.dropout),
            Seq2SeqDecoder(cell, s.tgt_vocab, s.embed_size, s.num_hiddens, s.num_layers, s.dropout),
        )

    return build


def bahdanau(s):
    return (
        Seq2SeqEncoder("gru", s.src_vocab, s.embed_size, s.num_hiddens, s.num_layers, s.dropout),
        AttentionDecoder(s.tgt_vocab, s.embed_size, s.num_hiddens, s.num_layers, s.dropout),
    )


def transformer_encoder(s):
    return TransformerEncoder(
        s.src_vocab, s.num_hiddens, s.ffn_num_hiddens, s.num_heads, s.num_layers, s.dropout, s.max_len
    )


def transformer(s):
    decoder = TransformerDecoder(
        s.tgt_vocab, s.num_hiddens, s.ffn_num_hiddens, s.num_heads, s.num_layers, s.dropout, s.max_len
    )
    return transformer_encoder(s), decoder


def mixed(s):
    return transformer_encoder(s), MemoryAttentionDecoder(s.tgt_vocab, s.embed_size, s.num_hiddens, s.num_layers, s.dropout)


def speech(s):
    encoder = SpeechEncoder(s.num_features, s.num_hiddens, s.ffn_num_hiddens, s.num_heads, s.num_layers, s.dropout, s.max_len)
    decoder = SpeechDecoder(s.tgt_vocab, s.num_hiddens, s.ffn_num_hiddens, s.num_heads, s.num_layers, s.dropout, s.max_len)
    return encoder, decoder


def captioning(s):
    return (CaptioningEncoder(s.channels, s.num_hiddens, s.num_layers),
            GridAttentionDecoder(s.tgt_vocab, s.embed_size, s.num_hiddens, s.num_layers, s.dropout))


BUILDERS = {
    "rnn": recurrent("rnn"),
    "gru": recurrent("gru"),
    "lstm": recurrent("lstm"),
    "bahdanau": bahdanau,
    "transformer": transformer,
    "mixed": mixed,
    "speech": speech,
    "captioning": captioning,
}
DTYPES = ("float32", "float64")


@contextlib.contextmanager
def dtype_policy(dtype):
    """Layers take the global policy when they are constructed; the previous one is restored after."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(dtype)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def smallest_source(spec) -> tuple:
    """(source, d2l's *args) of one example and one step (conformance/sources.py): a token or a frame
    with its valid length, or an image of the spec's size, which has none."""
    kind, lengths = kind_of(spec.family), (np.ones(1, dtype=np.int32),)
    if kind == "frames":
        return np.zeros((1, 1, spec.num_features), spec.dtype), lengths
    if kind == "images":
        return np.zeros((1, spec.channels, spec.height, spec.width), spec.dtype), ()
    return np.zeros((1, 1), dtype=np.int32), lengths


def make_model(spec):
    if spec.family not in BUILDERS:
        raise Unsupported(f"no TensorFlow reference for family {spec.family!r}")
    if spec.dtype not in DTYPES:
        raise Unsupported(f"dtype {spec.dtype!r} is not one of {sorted(DTYPES)}")
    keras.utils.set_random_seed(spec.seed)
    with dtype_policy(spec.dtype):
        model = EncoderDecoder(*BUILDERS[spec.family](spec))
        # Keras creates weights on the first call: one source step and one target token build every layer.
        one = np.zeros((1, 1), dtype=np.int32)
        src, lengths = smallest_source(spec)
        model(src, one, *lengths, training=False)
    if spec.weights is not None:
        # Assigned in place, before any decoding loop is traced: tf.function reads variables, not copies.
        load_canonical(model, canonical.load(spec.weights, spec))
    return model


factory = reference_factory(make_model)  # what --impl=tensorflow runs
