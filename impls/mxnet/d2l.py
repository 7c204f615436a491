"""The d2l Encoder-Decoder interface, as in the MXNet edition of "Dive into Deep Learning", chapter 10.6."""
from conformance.compat import import_mxnet

mx = import_mxnet()
from mxnet import npx  # noqa: E402
from mxnet.gluon import nn  # noqa: E402

npx.set_np()  # the numpy interface, as every d2l MXNet chapter starts


class Encoder(nn.Block):
    def forward(self, X, *args):
        raise NotImplementedError


class Decoder(nn.Block):
    def init_state(self, enc_all_outputs, *args):
        raise NotImplementedError

    def forward(self, X, state):
        raise NotImplementedError


class EncoderDecoder(nn.Block):
    def __init__(self, encoder, decoder, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.decoder = decoder

    def forward(self, enc_X, dec_X, *args):
        enc_all_outputs = self.encoder(enc_X, *args)
        dec_state = self.decoder.init_state(enc_all_outputs, *args)
        return self.decoder(dec_X, dec_state)[0]


class TokenEmbedding(nn.Embedding):
    """An embedding that raises on an out-of-vocabulary id.

    MXNet's Embedding silently returns some row for an id outside [0, vocab_size), so a
    corrupted token would go unnoticed; the check costs two reductions per call.
    """

    def __init__(self, vocab_size, embed_size, **kwargs):
        super().__init__(vocab_size, embed_size, **kwargs)
        self.vocab_size = vocab_size

    def forward(self, X):
        if X.size and not (0 <= int(X.min()) and int(X.max()) < self.vocab_size):
            raise IndexError(
                f"token ids must lie in [0, {self.vocab_size}); got ids from {int(X.min())} to {int(X.max())}"
            )
        return super().forward(X)
