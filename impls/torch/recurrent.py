"""RNN / GRU / LSTM sequence-to-sequence (d2l 10.7), reading the source only up to its valid length."""
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from .d2l import Decoder, Encoder

CELLS = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}


def top_layer(hidden_state):
    """The last layer's hidden state (batch, num_hiddens); an LSTM state is (h, c)."""
    h = hidden_state[0] if isinstance(hidden_state, tuple) else hidden_state
    return h[-1]


class Seq2SeqEncoder(Encoder):
    """Outputs are time-major as in d2l: (src_steps, batch, num_hiddens); zero past each valid length."""

    def __init__(self, cell, vocab_size, embed_size, num_hiddens, num_layers, dropout=0.0):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_size)
        self.rnn = CELLS[cell](embed_size, num_hiddens, num_layers, dropout=dropout)

    def forward(self, X, valid_lens):
        embs = self.embedding(X.t())
        # Packing stops every sequence at its valid length, so padding reaches neither the
        # outputs nor the final state.
        packed = pack_padded_sequence(embs, valid_lens.cpu(), enforce_sorted=False)
        outputs, state = self.rnn(packed)
        outputs, _ = pad_packed_sequence(outputs, total_length=X.shape[1])
        return outputs, state


class Seq2SeqDecoder(Decoder):
    """Each step sees its token embedding concatenated with a fixed context: the encoder's summary."""

    def __init__(self, cell, vocab_size, embed_size, num_hiddens, num_layers, dropout=0.0):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_size)
        self.rnn = CELLS[cell](embed_size + num_hiddens, num_hiddens, num_layers, dropout=dropout)
        self.dense = nn.Linear(num_hiddens, vocab_size)

    def init_state(self, enc_all_outputs, *args):
        _, hidden_state = enc_all_outputs
        # d2l takes enc_outputs[-1], the last *padded* step; the final state stops at the valid length.
        return top_layer(hidden_state), hidden_state

    def forward(self, X, state):
        context, hidden_state = state
        embs = self.embedding(X.t())
        context = context.expand(embs.shape[0], -1, -1)
        outputs, hidden_state = self.rnn(torch.cat((embs, context), -1), hidden_state)
        return self.dense(outputs).swapaxes(0, 1), (state[0], hidden_state)
