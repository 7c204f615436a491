"""`make_model(spec)`: the PyTorch reference of `spec.family`, exported to ONNX (export.py) and run by
ONNX Runtime's CPU execution provider through conformance.bridges.onnxruntime_bridge.OnnxSeq2Seq.
`factory` declares canonical weights when it loads them, as the PyTorch reference does."""
from __future__ import annotations

import functools

from conformance.bridges.onnxruntime_bridge import OnnxSeq2Seq
from conformance.sources import kind_of
from conformance.spec import Unsupported, declares_canonical_weights

from ..torch import make_model as torch_model
from .export import export


@functools.lru_cache(maxsize=64)
def exported(spec) -> dict[str, bytes]:
    """The graphs of one spec, exported once per process (a few tenths of a second each)."""
    return export(torch_model(spec), spec.family, spec.num_layers, (spec.src_vocab, spec.tgt_vocab))


def make_model(spec):
    if kind_of(spec.family) != "tokens":  # issue 17: the export of speech and captioning comes later
        raise Unsupported(f"no ONNX export of the {spec.family} reference yet")
    if spec.device != "cpu":
        raise Unsupported(f"runs on ONNX Runtime's CPU execution provider, not on {spec.device}")
    graphs = exported(spec)
    return OnnxSeq2Seq(graphs["encoder"], graphs["decoder"], init_state=graphs["init_state"])


factory = declares_canonical_weights(make_model)  # what --impl=onnxruntime runs
