"""PyTorch: a `torch.nn.Module` with `.encoder` and `.decoder` (d2l's EncoderDecoder)."""
from __future__ import annotations

import contextlib
import functools
import itertools
import types

import numpy as np
import torch

from ..spec import Unsupported
from . import gpu_index, parameters_once
from ..trees import tree_map

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def accepts(obj) -> bool:
    return isinstance(obj, torch.nn.Module)


def seed(n: int) -> None:
    """torch.manual_seed where an accelerator can run; the CPU generator alone where none can:
    torch.manual_seed queues a seed for each accelerator not started yet (CUDA, XPU, MTIA) with the
    caller's formatted stack, three stacks per contract that a CPU-only process never uses (a tenth of
    a short in-process torch run under a profiler)."""
    if torch.accelerator.is_available():
        torch.manual_seed(n)
    else:
        torch.default_generator.manual_seed(n)


def limit_threads(n: int) -> None:
    torch.set_num_threads(n)


def wrap(model, spec):
    return TorchAdapter(model, spec)


def trainable_parameters(model: torch.nn.Module) -> dict[str, dict[str, torch.nn.Parameter]]:
    """{"encoder": {name: parameter}, "decoder": {...}}, each once; a frozen one (requires_grad=False,
    a fixed position table) is no parameter of the contracts."""
    return parameters_once({
        part: ((name, p) for name, p in getattr(model, part).named_parameters() if p.requires_grad)
        for part in ("encoder", "decoder")
    })


class TorchAdapter:
    backend = "torch"
    framework_version = torch.__version__

    def __init__(self, model: torch.nn.Module, spec):
        for part in ("encoder", "decoder"):
            if not isinstance(getattr(model, part, None), torch.nn.Module):
                raise TypeError(f"a d2l EncoderDecoder has a `.{part}` module; {type(model).__name__} has none")
        if spec.dtype not in DTYPES:
            raise Unsupported(f"dtype {spec.dtype!r}")
        device_scope(spec.device)  # Unsupported when torch cannot see it
        # A factory that ignores spec.dtype or spec.device still gets the precision and the device
        # the run asked for.
        self.model = place(model.to(DTYPES[spec.dtype]), spec.device).eval()
        self.device = spec.device
        self.dtype = spec.dtype
        self.params = trainable_parameters(self.model)

    def _tokens(self, a) -> torch.Tensor:
        return torch.as_tensor(np.asarray(a), dtype=torch.long, device=self.device)

    def _source(self, a) -> torch.Tensor:
        """Token ids as int64; frames and images in the model's dtype (conformance/sources.py)."""
        a = np.asarray(a)
        if np.issubdtype(a.dtype, np.floating):
            return torch.as_tensor(a, dtype=DTYPES[self.dtype], device=self.device)
        return self._tokens(a)

    def _lengths(self, src_valid_len) -> tuple:
        """d2l's `*args`: the source valid lengths, or nothing for a source that has none (images)."""
        return () if src_valid_len is None else (self._tokens(src_valid_len),)

    def _numpy(self, tree):
        return tree_map(lambda x: x.detach().cpu().numpy().copy() if isinstance(x, torch.Tensor) else x, tree)

    @torch.no_grad()
    def encode(self, src, src_valid_len):
        return self.model.encoder(self._source(src), *self._lengths(src_valid_len))

    @torch.no_grad()
    def init_state(self, enc_outputs, src_valid_len):
        return self.model.decoder.init_state(enc_outputs, *self._lengths(src_valid_len))

    @torch.no_grad()
    def decode(self, tgt, state):
        logits, state = self.model.decoder(self._tokens(tgt), state)
        return self._numpy(logits), state

    @torch.inference_mode()
    def greedy_tokens(self, src, src_valid_len, bos, steps):
        """conformance.decoding's loop with tokens and state kept as tensors on the model's device."""
        lengths = self._lengths(src_valid_len)
        state = self.model.decoder.init_state(self.model.encoder(self._source(src), *lengths), *lengths)
        tokens = torch.full((len(src), 1), bos, dtype=torch.long, device=self.device)
        out = []
        for _ in range(steps):
            logits, state = self.model.decoder(tokens, state)
            tokens = logits[:, -1].argmax(-1, keepdim=True)
            out.append(tokens)
        return torch.cat(out, 1).cpu().numpy()

    compiled_how = "torch.compile, per step"  # for the benchmarks' labels

    @torch.inference_mode()
    def compiled_greedy_tokens(self, src, src_valid_len, bos, steps):
        """conformance.decoding's loop with each Decoder.forward and its argmax compiled by torch.compile
        (Inductor), called once per token as eagerly: a state that grows every step is compiled for its
        first shapes, then once with the growing dimensions dynamic. Compiling takes tens of seconds per
        shape, in the first call. NotCompiled where torch.compile fails or compiles nothing."""
        from torch._dynamo.utils import counters

        from ..decoding import NotCompiled

        step = self.__dict__.get("_compiled_step")
        if step is not None:
            return self._loop(step, src, src_valid_len, bos, steps)
        # A code object of this adapter's own: Dynamo's cache and recompile limit are per code object.
        fresh = types.FunctionType(_decode_step.__code__.replace(co_name=f"decode_step_{id(self):x}"), _decode_step.__globals__)
        step = torch.compile(functools.partial(fresh, self.model.decoder))
        graphs = counters["stats"]["unique_graphs"]
        try:
            with torch._dynamo.config.patch(recompile_limit=64):
                tokens = self._loop(step, src, src_valid_len, bos, steps)
        except Exception as exc:  # torch.compile cannot compile this model; eagerly it runs
            raise NotCompiled(f"torch.compile: {type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:200]}") from exc
        if counters["stats"]["unique_graphs"] == graphs:
            raise NotCompiled("torch.compile compiled no graph of the decoder")
        self._compiled_step = step
        return tokens

    def _loop(self, step, src, src_valid_len, bos, steps):
        lengths = self._lengths(src_valid_len)
        state = self.model.decoder.init_state(self.model.encoder(self._source(src), *lengths), *lengths)
        tokens = torch.full((len(src), 1), bos, dtype=torch.long, device=self.device)
        out = []
        for _ in range(steps):
            tokens, state = step(tokens, state)
            out.append(tokens)
        return torch.cat(out, 1).cpu().numpy()

    def _forward(self, src, tgt, src_valid_len):
        out = self.model(self._source(src), self._tokens(tgt), *self._lengths(src_valid_len))
        return out[0] if isinstance(out, tuple) else out  # older d2l returned (output, state)

    @torch.no_grad()
    def forward(self, src, tgt, src_valid_len):
        return self._numpy(self._forward(src, tgt, src_valid_len))

    def to_numpy(self, tree):
        return self._numpy(tree)

    def from_numpy(self, tree):
        return tree_map(lambda x: torch.from_numpy(x.copy()).to(self.device) if isinstance(x, np.ndarray) else x, tree)

    def gradients(self, src, tgt, src_valid_len, cotangent):
        self.model.zero_grad(set_to_none=True)
        with torch.enable_grad():
            logits = self._forward(src, tgt, src_valid_len)
            (logits * torch.as_tensor(cotangent, dtype=logits.dtype, device=logits.device)).sum().backward()
        grads = {
            part: {name: (p.grad if p.grad is not None else torch.zeros_like(p)).cpu().numpy().copy() for name, p in named.items()}
            for part, named in self.params.items()
        }
        self.model.zero_grad(set_to_none=True)
        return grads

    def get_weights(self):
        return {part: {name: p.detach().cpu().numpy().copy() for name, p in named.items()} for part, named in self.params.items()}

    def get_buffers(self):
        """Every buffer (BatchNorm running statistics, a position table) and frozen parameter, each once."""
        held = parameters_once({
            part: itertools.chain(getattr(self.model, part).named_buffers(),
                                  ((name, p) for name, p in getattr(self.model, part).named_parameters() if not p.requires_grad))
            for part in ("encoder", "decoder")
        })
        return {part: {name: b.detach().cpu().numpy().copy() for name, b in named.items()} for part, named in held.items()}

    @torch.no_grad()
    def set_weights(self, weights):
        for part, named in weights.items():
            for name, value in named.items():
                self.params[part][name].copy_(torch.from_numpy(np.asarray(value)))


def _decode_step(decoder, tokens, state):
    logits, state = decoder(tokens, state)
    return logits[:, -1].argmax(-1, keepdim=True), state


# --- Device glue for the benchmarks: where a model runs, and waiting for its work --------------

def device_scope(device: str):
    """A no-argument factory of the context to build and call a model in on `device` ("cpu", "cuda:N");
    Unsupported when torch cannot see that device. torch places by `place`, so the context is empty
    (torch.device as a context would intercept every call of the model)."""
    gpu_index(device, "torch", torch.cuda.device_count() if torch.cuda.is_available() else 0)
    return contextlib.nullcontext


def place(model, device: str):
    return model.to(device)


def synchronize(device: str) -> None:
    """Wait for work queued on the device: CUDA kernels run asynchronously to Python."""
    if device != "cpu":
        torch.cuda.synchronize(device)
