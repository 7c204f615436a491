"""Correct MXNet models with a property the reference models lack (see tests/tricky/torch_models.py)."""
from conformance import Unsupported
from conformance.compat import import_mxnet

mx = import_mxnet()
from mxnet import np, npx  # noqa: E402
from mxnet.gluon import nn, rnn  # noqa: E402

npx.set_np()


class Encoder(nn.Block):
    """A GRU encoder as d2l's Gluon edition writes it (it reads every source step: not padding-safe)."""

    def __init__(self, vocab_size, embed_size, num_hiddens, num_layers):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_size)
        self.rnn = rnn.GRU(num_hiddens, num_layers)

    def forward(self, X, *args):
        embs = self.embedding(X.T)
        return self.rnn(embs, self.rnn.begin_state(X.shape[0], ctx=X.ctx, dtype=embs.dtype))


class HybridDecoder(nn.HybridBlock):
    """The decoder step as one HybridBlock: hybridize() turns all of Decoder.forward into one cached graph."""

    def __init__(self, vocab_size, embed_size, num_hiddens, num_layers):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_size)
        self.rnn = rnn.GRU(num_hiddens, num_layers)
        self.dense = nn.Dense(vocab_size, flatten=False)

    def init_state(self, enc_all_outputs, *args):
        return enc_all_outputs[1]  # the encoder's final hidden state, [h]

    def hybrid_forward(self, F, X, state):
        outputs, state = self.rnn(self.embedding(X.T), state)
        return F.np.swapaxes(self.dense(outputs), 0, 1), state


class EncoderDecoder(nn.Block):
    def __init__(self, encoder, decoder):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder

    def forward(self, enc_X, dec_X, *args):
        return self.decoder(dec_X, self.decoder.init_state(self.encoder(enc_X, *args), *args))[0]


def hybrid_decoder(spec):
    """A GRU Encoder-Decoder whose decoder is a HybridBlock, unlike d2l's and our references' (plain Blocks
    around hybridized parts): the one kind of MXNet decoder the compiled interface loop hybridizes whole."""
    if spec.family != "gru":
        raise Unsupported("a GRU model only")
    mx.random.seed(spec.seed)
    model = EncoderDecoder(Encoder(spec.src_vocab, spec.embed_size, spec.num_hiddens, spec.num_layers),
                           HybridDecoder(spec.tgt_vocab, spec.embed_size, spec.num_hiddens, spec.num_layers))
    model.initialize(mx.init.Xavier())
    one = np.zeros((1, 1), dtype="int64")
    model(one, one)  # Gluon sizes its GRU weights on the first call; only then can they be cast
    model.cast(spec.dtype)
    return model
