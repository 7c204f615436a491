"""Image captioning as "Show, Attend and Tell" does it: a small CNN pooled to a grid of positions and
an additive-attention GRU decoder over the grid."""
import torch
from torch import nn

from .bahdanau import MemoryAttentionDecoder
from .d2l import Encoder


class ConvBlock(nn.Module):
    """3x3 convolution with stride 2 (no bias: BatchNorm's shift takes its place), BatchNorm, ReLU."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1, bias=False)
        self.norm = nn.BatchNorm2d(out_channels)

    def forward(self, X):
        return torch.relu(self.norm(self.conv(X)))


class CaptioningEncoder(Encoder):
    """Images (batch, channels, height, width) -> grid features (batch, positions, num_hiddens), the grid
    read row by row. An image has no valid length: the encoder takes none."""

    def __init__(self, channels, num_hiddens, num_layers):
        super().__init__()
        self.cnn = nn.ModuleList(ConvBlock(channels if i == 0 else num_hiddens, num_hiddens) for i in range(num_layers))
        self.pool = nn.AvgPool2d(2)

    def forward(self, X):
        for block in self.cnn:
            X = block(X)
        return self.pool(X).flatten(2).transpose(1, 2)


class GridAttentionDecoder(MemoryAttentionDecoder):
    """Attends over every grid position; the initial state from the mean over the grid."""

    def init_state(self, enc_outputs, *args):
        positions = torch.full((enc_outputs.shape[0],), enc_outputs.shape[1], dtype=torch.long, device=enc_outputs.device)
        return super().init_state(enc_outputs, positions)
