"""The d2l Encoder-Decoder interface, as in "Dive into Deep Learning", chapter 10.6."""
from torch import nn


class Encoder(nn.Module):
    def forward(self, X, *args):
        raise NotImplementedError


class Decoder(nn.Module):
    def init_state(self, enc_all_outputs, *args):
        raise NotImplementedError

    def forward(self, X, state):
        raise NotImplementedError


class EncoderDecoder(nn.Module):
    def __init__(self, encoder, decoder):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder

    def forward(self, enc_X, dec_X, *args):
        enc_all_outputs = self.encoder(enc_X, *args)
        dec_state = self.decoder.init_state(enc_all_outputs, *args)
        return self.decoder(dec_X, dec_state)[0]
