"""Broken exports: the PyTorch reference Transformer exported to ONNX with one bug of the kind
reported against exported models, run by ONNX Runtime through OnnxSeq2Seq.

`CASES` lists (factory, family, contracts expected to fail), as in the other tests/broken modules.
"""
import torch

from conformance.bridges.onnxruntime_bridge import OnnxSeq2Seq
from impls.onnxruntime.export import export
from impls.torch import make_model
from impls.torch.attention import MultiHeadAttention
from impls.torch.transformer import CrossAttention, SelfAttention
from tests.broken.common import AUTOREGRESSIVE, PADDING


def exported(spec, patches=(), **names):
    graphs = export(make_model(spec), spec.family, spec.num_layers, (spec.src_vocab, spec.tgt_vocab), patches)
    return OnnxSeq2Seq(graphs["encoder"], graphs["decoder"], init_state=graphs["init_state"], **names)


def attends_without_past(self, X, mask, past=None):
    """The decoder's cache grows, but its queries attend to this call's keys only
    (huggingface/optimum#753: the decoder-with-past never read its past)."""
    q, k, v = self.W_qkv(X).unflatten(-1, (3, self.num_heads, -1)).permute(0, 2, 3, 1, 4).unbind(1)
    if past is None:  # the encoder's self-attention
        return MultiHeadAttention.forward(self, q, k, v, mask), (k, v)
    present = torch.cat((past[0], k), 2), torch.cat((past[1], v), 2)
    return MultiHeadAttention.forward(self, q, k, v, mask[..., past[0].shape[2]:]), present


def decoder_ignores_its_past(spec):
    return exported(spec, [(SelfAttention, "forward", attends_without_past)])


def cross_attention_without_source_mask(self, X, kv, mask):
    """Every source position is attended to, padding included (huggingface/optimum#775: the encoder
    attention mask never reached the exported decoder)."""
    return MultiHeadAttention.forward(self, self.split_heads(self.W_q(X)), *kv, torch.ones_like(mask))


def encoder_mask_not_passed_to_decoder(spec):
    return exported(spec, [(CrossAttention, "forward", cross_attention_without_source_mask)])


def cache_wired_to_wrong_layer(spec):
    """Each layer's present key/value fed back as the other layer's past (state={...} miswired)."""
    layers = spec.num_layers
    return exported(spec, state={f"present.{i}.decoder.{kv}": f"past_key_values.{(i + 1) % layers}.decoder.{kv}"
                                 for i in range(layers) for kv in ("key", "value")})


CASES = [
    ("decoder_ignores_its_past", "transformer", AUTOREGRESSIVE),
    ("encoder_mask_not_passed_to_decoder", "transformer", PADDING),
    ("cache_wired_to_wrong_layer", "transformer", AUTOREGRESSIVE),
]
