"""MXNet: a `gluon.Block` with `.encoder` and `.decoder` (d2l's EncoderDecoder), numpy interface."""
from __future__ import annotations

import copy
import ctypes
import warnings

import numpy as np

from .. import compat
from ..compat import import_mxnet
from ..spec import Unsupported
from . import gpu_index, parameters_once
from ..trees import tree_map

mx = import_mxnet()
from mxnet import autograd, gluon  # noqa: E402

DTYPES = ("float32", "float64")


def accepts(obj) -> bool:
    return isinstance(obj, gluon.Block)


def seed(n: int) -> None:
    mx.random.seed(n)


def limit_threads(n: int) -> None:
    """n OpenMP threads for operators run on the calling thread (NaiveEngine). The engine's workers,
    which run them otherwise, keep what MXNet read from the environment when it loaded
    (conformance/compat.py): measured, an elementwise op under OMP_NUM_THREADS=2 kept two threads after
    MXSetNumOMPThreads(1), twice the CPU for the same wall time."""
    mx.base.check_call(mx.base._LIB.MXSetNumOMPThreads(ctypes.c_int(n)))
    if compat.mxnet_threads not in (None, n):
        warnings.warn(f"MXNet loaded before its threads could be limited to {n}: its operators keep the thread "
                      f"count it read from the environment then ({compat.mxnet_threads})", RuntimeWarning, stacklevel=2)


def wrap(model, spec):
    return MXNetAdapter(model, spec)


def trainable_parameters(model) -> dict[str, dict]:
    """{"encoder": {path: parameter}, "decoder": {...}}, each once; only those that train (grad_req
    not 'null'). Paths in the block tree (`blks.0.ffn.1.weight`), unlike `collect_params` names, do not
    depend on how many blocks the process created before."""
    return parameters_once({
        part: ((name, p) for name, p in getattr(model, part)._collect_params_with_prefix().items() if p.grad_req != "null")
        for part in ("encoder", "decoder")
    })


class MXNetAdapter:
    backend = "mxnet"
    framework_version = mx.__version__

    def __init__(self, model: gluon.Block, spec):
        for part in ("encoder", "decoder"):
            if not isinstance(getattr(model, part, None), gluon.Block):
                raise TypeError(f"a d2l EncoderDecoder has a `.{part}` block; {type(model).__name__} has none")
        if spec.dtype not in DTYPES:
            raise Unsupported(f"dtype {spec.dtype!r}")
        self.model, self.dtype = model, spec.dtype
        self.params = trainable_parameters(model)
        every = [p for named in self.params.values() for p in named.values()]
        if any(np.dtype(p.dtype) != np.dtype(spec.dtype) for p in every):
            # A factory that ignores spec.dtype still gets the precision the contracts asked for.
            model.cast(spec.dtype)
            if any(np.dtype(p.dtype) != np.dtype(spec.dtype) for p in every):
                raise Unsupported(f"the model could not be cast to {spec.dtype}")
        # A factory that ignores spec.device still gets the device the run asked for.
        self.ctx = context(spec.device)
        place(model, spec.device)
        self.device = spec.device
        self.np = mx.np if mx.util.is_np_array() else mx.nd  # the array API the model was built for

    def _array(self, a, dtype=None):
        a = np.asarray(a)
        return self.np.array(a, dtype=dtype or a.dtype, ctx=self.ctx)

    def _tokens(self, a):
        return self._array(a, "int64")

    def _source(self, a):
        """Token ids as int64; frames and images in the model's dtype (conformance/sources.py)."""
        a = np.asarray(a)
        return self._array(a, self.dtype) if np.issubdtype(a.dtype, np.floating) else self._tokens(a)

    def _lengths(self, src_valid_len) -> tuple:
        """d2l's `*args`: the source valid lengths, or nothing for a source that has none (images)."""
        return () if src_valid_len is None else (self._tokens(src_valid_len),)

    def _numpy(self, tree):
        return tree_map(lambda x: x.asnumpy() if isinstance(x, mx.nd.NDArray) else x, tree)

    def encode(self, src, src_valid_len):
        with autograd.pause():  # inference: not recorded, dropout off
            return self.model.encoder(self._source(src), *self._lengths(src_valid_len))

    def init_state(self, enc_outputs, src_valid_len):
        with autograd.pause():
            return self.model.decoder.init_state(enc_outputs, *self._lengths(src_valid_len))

    def decode(self, tgt, state):
        with autograd.pause():
            logits, state = self.model.decoder(self._tokens(tgt), state)
        return self._numpy(logits), state

    def greedy_tokens(self, src, src_valid_len, bos, steps):
        """conformance.decoding's loop with tokens and state kept as MXNet arrays on the model's context:
        the engine runs ahead of Python until the tokens are read at the end."""
        with autograd.pause():
            lengths = self._lengths(src_valid_len)
            state = self.model.decoder.init_state(self.model.encoder(self._source(src), *lengths), *lengths)
            tokens = self._tokens(np.full((len(src), 1), bos))
            out = []
            for _ in range(steps):
                logits, state = self.model.decoder(tokens, state)
                # int64 in both array APIs: legacy nd's argmax returns floats.
                tokens = logits[:, -1].argmax(-1).astype("int64").reshape((-1, 1))
                out.append(tokens)
        return np.concatenate([t.asnumpy() for t in out], 1)

    compiled_how = "hybridize (static_alloc, static_shape)"  # for the benchmarks' labels

    def compiled_greedy_tokens(self, src, src_valid_len, bos, steps):
        """conformance.decoding's loop on a hybridized copy of the model (static_alloc, static_shape), where
        its decoder is a HybridBlock: each step one cached graph. A copy, so the eager loop still runs the
        model as written; it holds the weights of the first call. A decoder that is a plain gluon.Block
        runs Python every step: NotCompiled (hybridizing its HybridBlock parts alone did not pay: d2l's
        Gluon GRU went from 99 to 85 tokens/s at batch 1, our references from 296 to 416 (gru) and 239 to
        228 (transformer), docs/benchmarks.md)."""
        from ..decoding import NotCompiled

        if self.__dict__.get("_hybrid") is None:
            if not isinstance(self.model.decoder, gluon.HybridBlock):
                raise NotCompiled(f"the decoder ({type(self.model.decoder).__name__}) is a gluon.Block, not a HybridBlock: "
                                  "its step runs Python")
            for block in _blocks(self.model):  # a cached graph holds C pointers, which cannot be copied
                if isinstance(block, gluon.HybridBlock):
                    block._clear_cached_op()
            try:
                model = copy.deepcopy(self.model)
            except Exception as exc:
                raise NotCompiled(f"the model cannot be copied to hybridize: {type(exc).__name__}: {exc}") from exc
            model.hybridize(static_alloc=True, static_shape=True)
            self._hybrid = copy.copy(self)
            self._hybrid.model = model
        return self._hybrid.greedy_tokens(src, src_valid_len, bos, steps)

    def _forward(self, src, tgt, src_valid_len):
        out = self.model(self._source(src), self._tokens(tgt), *self._lengths(src_valid_len))
        return out[0] if isinstance(out, (tuple, list)) else out  # older d2l returned (output, state)

    def forward(self, src, tgt, src_valid_len):
        with autograd.pause():
            return self._numpy(self._forward(src, tgt, src_valid_len))

    def to_numpy(self, tree):
        return self._numpy(tree)

    def from_numpy(self, tree):
        return tree_map(lambda x: self._array(x) if isinstance(x, np.ndarray) else x, tree)

    def gradients(self, src, tgt, src_valid_len, cotangent):
        every = [p for named in self.params.values() for p in named.values()]
        for p in every:
            # grad_req="write" leaves a parameter the graph never reached untouched, so zero first;
            # not with Parameter.zero_grad, which calls a legacy operator that rejects numpy arrays.
            for grad in p.list_grad():
                grad[:] = 0
        # MXNet only differentiates what ran inside record(); train_mode=False keeps dropout off.
        with autograd.record(train_mode=False):
            logits = self._forward(src, tgt, src_valid_len)
            loss = (logits * self._array(cotangent, logits.dtype)).sum()
        # And backward in inference mode too: by default it runs in training mode, where BatchNorm's
        # gradient is that of batch statistics while the forward pass read the running ones.
        loss.backward(train_mode=False)
        return {part: {name: p.grad().asnumpy() for name, p in named.items()} for part, named in self.params.items()}

    def get_weights(self):
        return {part: {name: p.data().asnumpy() for name, p in named.items()} for part, named in self.params.items()}

    def get_buffers(self):
        """Every parameter that does not train (grad_req 'null': BatchNorm's running statistics), each once."""
        held = parameters_once({
            part: ((name, p) for name, p in getattr(self.model, part)._collect_params_with_prefix().items() if p.grad_req == "null")
            for part in ("encoder", "decoder")
        })
        return {part: {name: p.data().asnumpy() for name, p in named.items()} for part, named in held.items()}

    def set_weights(self, weights):
        for part, named in weights.items():
            for name, value in named.items():
                param = self.params[part][name]
                param.set_data(self._array(value, param.dtype))


def _blocks(block):
    """The block and every block under it."""
    yield block
    for child in block._children.values():
        yield from _blocks(child() if callable(child) and not isinstance(child, gluon.Block) else child)


# --- Device glue: where a model is built and runs, and waiting for its work ----------------------

def context(device: str) -> "mx.Context":
    """mx.cpu() or mx.gpu(N) for "cpu" or "cuda:N"; Unsupported when MXNet cannot see that GPU."""
    index = gpu_index(device, "mxnet", mx.context.num_gpus())
    return mx.cpu() if index is None else mx.gpu(index)


def device_scope(device: str):
    """A no-argument factory of the context to build and call a model in on `device`: MXNet's default
    context there, so a factory's `initialize()` puts the parameters on it; Unsupported when MXNet
    cannot see it."""
    ctx = context(device)
    return lambda: ctx  # an mx.Context is a context manager


def place(model, device: str):
    ctx = context(device)
    params = model.collect_params()
    if any(p.list_ctx() != [ctx] for p in params.values()):
        params.reset_ctx(ctx)
    return model


def synchronize(device: str) -> None:
    mx.nd.waitall()  # MXNet's engine is asynchronous on CPU too
