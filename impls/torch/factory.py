"""`make_model(spec)`: the reference family named by `spec.family`, in `spec.dtype`, in eval mode."""
import torch

from conformance import canonical
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
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def make_model(spec):
    if spec.family not in BUILDERS:
        raise Unsupported(f"no PyTorch reference for family {spec.family!r}")
    if spec.dtype not in DTYPES:
        raise Unsupported(f"dtype {spec.dtype!r} is not one of {sorted(DTYPES)}")
    torch.manual_seed(spec.seed)
    model = EncoderDecoder(*BUILDERS[spec.family](spec)).to(DTYPES[spec.dtype]).eval()
    if spec.weights is not None:
        load_canonical(model, canonical.load(spec.weights, spec))
    return model


factory = reference_factory(make_model)  # what --impl=torch runs
