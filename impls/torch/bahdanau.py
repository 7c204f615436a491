"""GRU decoder with additive (Bahdanau) attention (d2l 11.4), over a recurrent or a Transformer encoder."""
import torch
from torch import nn

from .attention import AdditiveAttention
from .d2l import Decoder


class AttentionDecoder(Decoder):
    """At every step the previous top-layer hidden state queries the encoder outputs (the memory)."""

    def __init__(self, vocab_size, embed_size, num_hiddens, num_layers, dropout=0.0):
        super().__init__()
        self.attention = AdditiveAttention(num_hiddens, dropout)
        self.embedding = nn.Embedding(vocab_size, embed_size)
        self.rnn = nn.GRU(embed_size + num_hiddens, num_hiddens, num_layers, dropout=dropout)
        self.dense = nn.Linear(num_hiddens, vocab_size)

    def memory_state(self, memory, valid_lens):
        """(memory, its projected keys, valid-key mask): fixed for the whole decode, so computed once."""
        mask = torch.arange(memory.shape[1], device=memory.device) < valid_lens[:, None]
        return memory, self.attention.project_keys(memory), mask

    def init_state(self, enc_outputs, enc_valid_lens):
        outputs, hidden_state = enc_outputs  # a recurrent encoder's (time-major outputs, final state)
        return (*self.memory_state(outputs.transpose(0, 1), enc_valid_lens), hidden_state)

    def forward(self, X, state):
        memory, keys, mask, hidden_state = state
        outputs = []
        for x in self.embedding(X.t()):
            context = self.attention(hidden_state[-1], keys, memory, mask)
            out, hidden_state = self.rnn(torch.cat((context, x), -1)[None], hidden_state)
            outputs.append(out)
        return self.dense(torch.cat(outputs)).swapaxes(0, 1), (memory, keys, mask, hidden_state)


class MemoryAttentionDecoder(AttentionDecoder):
    """The same decoder over a Transformer encoder, which has no final state: the initial hidden
    state is a projection of the mean encoder output over the valid positions."""

    def __init__(self, vocab_size, embed_size, num_hiddens, num_layers, dropout=0.0):
        super().__init__(vocab_size, embed_size, num_hiddens, num_layers, dropout)
        self.num_layers = num_layers
        self.init_hidden = nn.Linear(num_hiddens, num_layers * num_hiddens)

    def init_state(self, enc_outputs, enc_valid_lens):
        memory, keys, mask = self.memory_state(enc_outputs, enc_valid_lens)
        mean = memory.masked_fill(~mask[..., None], 0).sum(1) / enc_valid_lens[:, None]
        hidden = torch.tanh(self.init_hidden(mean)).unflatten(-1, (self.num_layers, -1))
        return memory, keys, mask, hidden.transpose(0, 1).contiguous()
