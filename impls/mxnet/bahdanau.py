"""GRU decoder with additive (Bahdanau) attention (d2l 11.4), over a recurrent or a Transformer encoder."""
from conformance.compat import import_mxnet

mx = import_mxnet()
from mxnet import np  # noqa: E402
from mxnet.gluon import nn  # noqa: E402

from .attention import AdditiveAttention, key_mask  # noqa: E402
from .d2l import Decoder, TokenEmbedding  # noqa: E402
from .recurrent import StackedCells  # noqa: E402


class AttentionStep(nn.HybridBlock):
    """One decoder step: the previous top-layer hidden state queries the memory, then the GRU runs
    on [context, token embedding]. One hybridized graph per step."""

    def __init__(self, num_hiddens, num_layers, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        self.attention = AdditiveAttention(num_hiddens, dropout)
        self.rnn = StackedCells("gru", num_hiddens, num_layers, dropout)

    def hybrid_forward(self, F, x, memory, keys, mask, hidden_state):
        top = hidden_state[self.rnn.num_layers - 1]  # not [-1]: MXNet 1.9.1 fails on it in a graph
        context = self.attention(top, keys, memory, mask)
        return self.rnn(F.np.concatenate((context, x), axis=-1), hidden_state)


class AttentionDecoder(Decoder):
    """At every step the previous top-layer hidden state queries the encoder outputs (the memory)."""

    def __init__(self, vocab_size, embed_size, num_hiddens, num_layers, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        self.step = AttentionStep(num_hiddens, num_layers, dropout)
        self.embedding = TokenEmbedding(vocab_size, embed_size)
        self.dense = nn.Dense(vocab_size, flatten=False)

    def memory_state(self, memory, valid_lens):
        """(memory, its projected keys, valid-key mask): fixed for the whole decode, so computed once."""
        return memory, self.step.attention.project_keys(memory), key_mask(valid_lens, memory.shape[1])

    def init_state(self, enc_outputs, enc_valid_lens):
        outputs, hidden_state = enc_outputs  # a recurrent encoder's (time-major outputs, final state)
        return (*self.memory_state(outputs.swapaxes(0, 1), enc_valid_lens), hidden_state)

    def forward(self, X, state):
        memory, keys, mask, hidden_state = state
        outputs = []
        for x in self.embedding(X.T):
            out, hidden_state = self.step(x, memory, keys, mask, hidden_state)
            outputs.append(out)
        return self.dense(np.stack(outputs)).swapaxes(0, 1), (memory, keys, mask, hidden_state)


class MemoryAttentionDecoder(AttentionDecoder):
    """The same decoder over a Transformer encoder, which has no final state: the initial hidden
    state is a projection of the mean encoder output over the valid positions."""

    def __init__(self, vocab_size, embed_size, num_hiddens, num_layers, dropout=0.0, **kwargs):
        super().__init__(vocab_size, embed_size, num_hiddens, num_layers, dropout, **kwargs)
        self.num_layers = num_layers
        self.init_hidden = nn.Dense(num_layers * num_hiddens, flatten=False)

    def init_state(self, enc_outputs, enc_valid_lens):
        memory, keys, mask = self.memory_state(enc_outputs, enc_valid_lens)
        total = np.where(np.expand_dims(mask, -1), memory, np.zeros_like(memory)).sum(1)
        mean = total / enc_valid_lens.reshape(-1, 1).astype(memory.dtype)
        hidden = np.tanh(self.init_hidden(mean)).reshape(mean.shape[0], self.num_layers, -1)
        return memory, keys, mask, hidden.swapaxes(0, 1)
