"""`make_model(spec)`: the PyTorch reference of `spec.family`, exported to ONNX (export.py) and run by
ONNX Runtime's CPU execution provider through conformance.bridges.onnxruntime_bridge.OnnxSeq2Seq.
`factory` declares what the PyTorch reference's does: canonical weights when it loads them, the
encoder output lengths of speech's subsampling."""
from __future__ import annotations

import functools

from conformance.bridges.onnxruntime_bridge import OnnxSeq2Seq
from conformance.sources import example_shape, kind_of
from conformance.spec import Unsupported

from .. import reference_factory
from ..torch import make_model as torch_model
from ..torch.factory import BUILDERS  # noqa: F401  every family of the PyTorch reference is exported
from .export import SOURCE_INPUT, export


@functools.lru_cache(maxsize=64)
def exported(spec) -> dict[str, bytes]:
    """The graphs of one spec, exported once per process (a few tenths of a second each)."""
    return export(torch_model(spec), spec.family, spec.num_layers, (spec.src_vocab, spec.tgt_vocab),
                  example_shape=example_shape(spec))


def make_model(spec):
    if spec.device != "cpu":
        raise Unsupported(f"runs on ONNX Runtime's CPU execution provider, not on {spec.device}")
    graphs = exported(spec)
    return OnnxSeq2Seq(graphs["encoder"], graphs["decoder"], init_state=graphs["init_state"],
                       names={"src": SOURCE_INPUT[kind_of(spec.family)]})


factory = reference_factory(make_model)  # what --impl=onnxruntime runs
