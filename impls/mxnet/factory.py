"""`make_model(spec)`: the reference family named by `spec.family`, in `spec.dtype`, initialized and hybridized;
with `spec.weights`, holding those canonical weights (docs/weights.md)."""
import warnings

import numpy as onp

from conformance import canonical
from conformance.compat import import_mxnet
from conformance.sources import kind_of
from conformance.spec import Unsupported

from .. import reference_factory

mx = import_mxnet()
from mxnet import init, np  # noqa: E402

from .bahdanau import AttentionDecoder, MemoryAttentionDecoder  # noqa: E402
from .canonical import load_canonical  # noqa: E402
from .captioning import CaptioningEncoder, GridAttentionDecoder  # noqa: E402
from .d2l import EncoderDecoder  # noqa: E402
from .recurrent import Seq2SeqDecoder, Seq2SeqEncoder  # noqa: E402
from .speech import SpeechDecoder, SpeechEncoder  # noqa: E402
from .transformer import TransformerDecoder, TransformerEncoder  # noqa: E402


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
    encoder = SpeechEncoder(s.num_hiddens, s.ffn_num_hiddens, s.num_heads, s.num_layers, s.dropout, s.max_len)
    decoder = SpeechDecoder(
        s.tgt_vocab, s.num_hiddens, s.ffn_num_hiddens, s.num_heads, s.num_layers, s.dropout, s.max_len
    )
    return encoder, decoder


def captioning(s):
    return (CaptioningEncoder(s.num_hiddens, s.num_layers),
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


def tiny_source(spec, dtype):
    """d2l's (enc_X, *args) for a tiny batch of the family's source (conformance/sources.py): token ids
    with their lengths, frames in `dtype` with theirs, images in `dtype` without any."""
    kind = kind_of(spec.family)
    if kind == "images":
        return (np.zeros((2, spec.channels, spec.height, spec.width), dtype=dtype),)
    X = np.zeros((2, 5), dtype="int64") if kind == "tokens" else np.zeros((2, 5, spec.num_features), dtype=dtype)
    return X, np.array([5, 1], dtype="int64")


def run_once(model, spec):
    """A forward pass on a tiny batch, which fixes the deferred parameter shapes (and warms the graphs)."""
    dtype = next(iter(model.collect_params().values())).dtype  # float32 until make_model casts the model
    enc_X, *lengths = tiny_source(spec, dtype)
    model(enc_X, np.zeros((2, 2), dtype="int64"), *lengths)


def make_model(spec):
    if spec.family not in BUILDERS:
        raise Unsupported(f"no MXNet reference for family {spec.family!r}")
    if spec.dtype not in DTYPES:
        raise Unsupported(f"dtype {spec.dtype!r} is not one of {sorted(DTYPES)}")
    mx.random.seed(spec.seed)
    onp.random.seed(spec.seed)
    model = EncoderDecoder(*BUILDERS[spec.family](spec))
    # MXNet 1.9.1's initializers cannot draw float64 deferred parameters (a dtype check fails in
    # np.random.uniform): draw them in float32, then cast.
    model.initialize(init.Xavier())
    run_once(model, spec)
    model.cast(spec.dtype)
    hybridize(model, spec)
    if spec.weights is not None:
        # In place, in the model's dtype: the graphs hybridize() just built read the loaded values.
        load_canonical(model, canonical.load(spec.weights, spec))
    return model


factory = reference_factory(make_model)  # what --impl=mxnet runs


def hybridize(model, spec):
    """Turn every HybridBlock into a cached graph, and build the graphs on a tiny batch."""
    model.hybridize()
    with warnings.catch_warnings():
        # Keys projected once in init_state (W_k, W_kv) belong to blocks whose per-step graph
        # never uses them; Gluon warns about that when it builds the graph.
        warnings.filterwarnings("ignore", "Parameter .* is not used by any computation")
        run_once(model, spec)
