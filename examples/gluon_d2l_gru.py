"""The GRU Encoder-Decoder of the MXNet edition of "Dive into Deep Learning" (10.7), as the book
writes it, numpy interface and all.

    pytest --pyargs conformance --impl=examples.gluon_d2l_gru:make_model --family=gru

Verdict: three real problems, each caught by the contracts that name it.
- The encoder runs the GRU over every source step and the decoder's context is the output at the
  last *padded* step, so padding reaches the logits: both padding contracts fail.
- Gluon's Embedding returns some row for an id outside the vocabulary instead of raising: both
  out-of-vocabulary contracts fail, naming what it did instead (clipped it).
- Gluon's fused `rnn.GRU(dropout=0.1)` drops out between its layers whenever autograd records, even
  under `autograd.record(train_mode=False)`: gradients differ from one identical backward pass to
  the next and from finite differences (measured; with dropout=0 they are exact, and the cell-based
  MXNet reference is exact with dropout). Both gradient contracts fail, saying they could not judge:
  the report's findings name the cause, "backward passes are not repeatable".
Everything else (shapes, state handoff, autoregressive consistency, causality of the logits, batch
independence, state reuse, determinism of eval calls) passes.
"""
from conformance import ModelSpec, Unsupported
from conformance.compat import import_mxnet

mx = import_mxnet()
from mxnet import init, np, npx  # noqa: E402
from mxnet.gluon import nn, rnn  # noqa: E402

npx.set_np()

FAMILY = "gru"
EXPECTED = {  # factory: contracts that fail (tests/test_examples.py checks these)
    "make_model": {
        "extra_padding_changes_nothing", "garbage_beyond_valid_length_changes_nothing",
        "out_of_vocabulary_source_raises", "out_of_vocabulary_target_raises",
        "encoder_gradient_through_state", "future_tokens_do_not_change_past_gradients",
    },
}


class Seq2SeqEncoder(nn.Block):
    def __init__(self, vocab_size, embed_size, num_hiddens, num_layers, dropout=0):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_size)
        self.rnn = rnn.GRU(num_hiddens, num_layers, dropout=dropout)

    def forward(self, X, *args):
        embs = self.embedding(X.T)  # (num_steps, batch_size, embed_size)
        outputs, state = self.rnn(embs, self.rnn.begin_state(X.shape[0], ctx=X.ctx, dtype=embs.dtype))
        return outputs, state


class Seq2SeqDecoder(nn.Block):
    def __init__(self, vocab_size, embed_size, num_hiddens, num_layers, dropout=0):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_size)
        self.rnn = rnn.GRU(num_hiddens, num_layers, dropout=dropout)
        self.dense = nn.Dense(vocab_size, flatten=False)

    def init_state(self, enc_all_outputs, *args):
        return enc_all_outputs

    def forward(self, X, state):
        embs = self.embedding(X.T)
        enc_output, hidden_state = state
        context = np.tile(enc_output[-1], (embs.shape[0], 1, 1))  # the last step, padded or not
        outputs, hidden_state = self.rnn(np.concatenate((embs, context), -1), hidden_state)
        return np.swapaxes(self.dense(outputs), 0, 1), [enc_output, hidden_state]


class EncoderDecoder(nn.Block):
    def __init__(self, encoder, decoder):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder

    def forward(self, enc_X, dec_X, *args):
        return self.decoder(dec_X, self.decoder.init_state(self.encoder(enc_X, *args), *args))[0]


def make_model(spec: ModelSpec):
    if spec.family != "gru":
        raise Unsupported("the book's 10.7 model is a GRU")
    mx.random.seed(spec.seed)
    model = EncoderDecoder(
        Seq2SeqEncoder(spec.src_vocab, spec.embed_size, spec.num_hiddens, spec.num_layers, spec.dropout),
        Seq2SeqDecoder(spec.tgt_vocab, spec.embed_size, spec.num_hiddens, spec.num_layers, spec.dropout),
    )
    model.initialize(init.Xavier())
    one = np.zeros((1, 1), dtype="int64")
    model(one, one)  # Gluon sizes its GRU weights on the first call; only then can they be cast
    model.cast(spec.dtype)
    return model
