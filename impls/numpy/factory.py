"""`make_model(spec)`: the NumPy specification of `spec.family` in `spec.dtype`, on the canonical
weights of `spec.weights`, or on `conformance.canonical.random_weights(spec, spec.seed)` without them."""
from __future__ import annotations

from conformance import canonical
from conformance.spec import Unsupported

from .. import reference_factory
from .bahdanau import AttentionDecoder, MemoryAttentionDecoder
from .captioning import CaptioningEncoder, GridAttentionDecoder
from .model import NumpySeq2Seq
from .recurrent import Seq2SeqDecoder, Seq2SeqEncoder
from .speech import SpeechDecoder, SpeechEncoder
from .transformer import TransformerDecoder, TransformerEncoder


def recurrent(cell):
    return lambda s: (Seq2SeqEncoder(cell, s.num_hiddens, s.num_layers), Seq2SeqDecoder(cell))


BUILDERS = {
    "rnn": recurrent("rnn"),
    "gru": recurrent("gru"),
    "lstm": recurrent("lstm"),
    "bahdanau": lambda s: (Seq2SeqEncoder("gru", s.num_hiddens, s.num_layers), AttentionDecoder()),
    "transformer": lambda s: (TransformerEncoder(s.num_layers, s.num_heads), TransformerDecoder(s.num_layers, s.num_heads)),
    "mixed": lambda s: (TransformerEncoder(s.num_layers, s.num_heads), MemoryAttentionDecoder(s.num_layers)),
    "speech": lambda s: (SpeechEncoder(s.num_layers, s.num_heads), SpeechDecoder(s.num_layers, s.num_heads)),
    "captioning": lambda s: (CaptioningEncoder(s.num_layers), GridAttentionDecoder(s.num_layers)),
}
DTYPES = ("float64", "float32")


def make_model(spec):
    if spec.family not in BUILDERS:
        raise Unsupported(f"no NumPy specification of family {spec.family!r}")
    if spec.dtype not in DTYPES:
        raise Unsupported(f"dtype {spec.dtype!r} is not one of {list(DTYPES)}")
    if spec.device != "cpu":
        raise Unsupported(f"the NumPy specification runs on the cpu only, not on {spec.device}")
    # Dropout is not modelled: the specification is the model in evaluation mode.
    encoder, decoder = BUILDERS[spec.family](spec)
    if spec.weights is None:
        return NumpySeq2Seq(encoder, decoder, canonical.random_weights(spec, spec.seed), spec.dtype)
    return NumpySeq2Seq(encoder, decoder, canonical.load(spec.weights, spec), spec.dtype)


factory = reference_factory(make_model)  # what --impl=numpy runs
