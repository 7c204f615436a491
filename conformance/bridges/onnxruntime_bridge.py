"""ONNX Runtime: an exported Encoder–Decoder, as ONNX graphs run by the CPU execution provider.

A factory returns `OnnxSeq2Seq(encoder=..., decoder=..., ...)`, naming the graph files (or bytes,
or ModelProtos); this bridge runs it under the d2l interface:

    encode(src, valid_lens)        the encoder graph; its outputs by name
    init_state(enc_outputs, ...)   the init_state graph if there is one, else the encoder outputs
                                   renamed to the decoder's inputs, and the source mask
    decode(tgt, state)             the decoder graph (decoder_first for a state with no past yet)

A state is a dict {decoder input name: array}. A decoder output `present<rest>` is state: it feeds
the input `past_key_values<rest>` or `past<rest>` of the next call (Optimum's names), unless
`state={output: input}` says otherwise; every other input keeps its value from call to call. A
decoder graph whose token input has a fixed length of 1 gets a longer target one token per call.

Weights: the graphs' floating initializers with more than one element (a scalar is a constant of
the computation: a scale, an epsilon, an exponent), each once: one with the same name and values
in several graphs is one parameter. Exporters rename, transpose, fold and split parameters, so
these are the graph's own, not the source model's; set_weights rebuilds the sessions with the new
values. Gradients: none (ONNX Runtime runs graphs forward).
"""
from __future__ import annotations

import contextlib
import os
import re

import numpy as np
import onnxruntime as ort

from ..spec import Unsupported
from ..trees import tree_map
from . import gpu_index

PROVIDERS = ["CPUExecutionProvider"]
ONNX_TYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16,
              "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(bool)": np.bool_}
DTYPE_NAMES = {np.float32: "float32", np.float64: "float64"}
# What the adapter feeds by role, and the names it looks for (override with names={...}).
NAMES = {
    "src": "input_ids",  # encoder: source token ids (batch, src_steps)
    "src_mask": "attention_mask",  # encoder, init_state: 1 where a source position is valid
    "src_valid_len": "src_valid_len",  # encoder, init_state: valid lengths (batch,)
    "tgt": "input_ids",  # decoder: target token ids (batch, steps)
    "logits": "logits",  # decoder output (batch, steps, tgt_vocab)
    "memory_mask": "encoder_attention_mask",  # decoder: the source mask, from the initial state
}
ENCODER_OUTPUTS = {"last_hidden_state": "encoder_hidden_states"}  # Hugging Face's encoder output -> decoder input
PAST_PREFIXES = ("past_key_values", "past")  # an output present<rest> feeds past_key_values<rest> or past<rest>

threads: int | None = None  # intra-op threads of every session created from now on (limit_threads)


def accepts(obj) -> bool:
    return isinstance(obj, OnnxSeq2Seq)


def seed(n: int) -> None:
    pass  # graphs hold their weights: nothing is drawn at run time


def limit_threads(n: int) -> None:
    global threads
    threads = n


def wrap(model, spec):
    return OnnxAdapter(model, spec)


def device_scope(device: str):
    """The CPU execution provider only: Unsupported for any other device (it sees no GPU)."""
    gpu_index(device, "onnxruntime (CPU execution provider)", 0)
    return contextlib.nullcontext


def place(model, device: str):
    return model


def synchronize(device: str) -> None:
    pass


def session_options() -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.log_severity_level = 4  # errors reach the caller as exceptions; nothing printed beside them
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return options


def missing_kernel(exc: Exception) -> str:
    """ONNX Runtime's words where the CPU provider has no kernel for a node (in this dtype), else ''.
    Some kernels are missing at session creation (NOT_IMPLEMENTED), others say so when they run."""
    text = " ".join(str(exc).split())
    found = re.search(r"NOT_IMPLEMENTED : (.*)", text) or re.search(
        r"running (\S+) node\. Name:'([^']*)' Status Message: (.*does not support.*)", text)
    if found is None:
        return ""
    return found[1] if found.lastindex == 1 else f"{found[3]} (node {found[2]})"


class Graph:
    """One ONNX graph in an InferenceSession: inputs and outputs by name, initializers replaceable."""

    def __init__(self, role: str, source):
        self.role = role
        self.bytes = read_model(source, role)
        self.session = self._session(self.bytes)
        self.inputs = {i.name: i for i in self.session.get_inputs()}
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.output_types = {o.name: o.type for o in self.session.get_outputs()}
        self.output_shapes = {o.name: o.shape for o in self.session.get_outputs()}
        self.threads = threads

    def _session(self, data: bytes) -> ort.InferenceSession:
        try:
            return ort.InferenceSession(data, session_options(), providers=PROVIDERS)
        except Exception as exc:
            if missing_kernel(exc):
                raise Unsupported(f"ONNX Runtime's CPU provider has no kernel for the {self.role} graph: {missing_kernel(exc)}") from exc
            raise ValueError(f"ONNX Runtime cannot load the {self.role} graph: {' '.join(str(exc).split())}") from exc

    def input_type(self, name: str):
        return ONNX_TYPES.get(self.inputs[name].type)

    def run(self, feed: dict) -> dict:
        if self.threads != threads:  # limit_threads after the session was made: rebuild it
            self.session, self.threads = self._session(self.bytes), threads
        try:
            return dict(zip(self.outputs, self.session.run(None, feed)))
        except Exception as exc:
            if missing_kernel(exc):
                raise Unsupported(f"ONNX Runtime's CPU provider has no kernel for the {self.role} graph: {missing_kernel(exc)}") from exc
            raise

    # Weights: the graph's floating initializers (`onnx` parses and rewrites the model).
    def initializers(self) -> dict[str, np.ndarray]:
        from onnx import numpy_helper

        return {t.name: numpy_helper.to_array(t).copy() for t in self._proto().graph.initializer
                if t.data_type in FLOAT_TENSOR_TYPES and int(np.prod(t.dims)) > 1}

    def set_initializers(self, values: dict[str, np.ndarray]) -> None:
        from onnx import numpy_helper

        proto = self._proto()
        for i, tensor in enumerate(proto.graph.initializer):
            if tensor.name in values:
                old = numpy_helper.to_array(tensor)
                proto.graph.initializer[i].CopyFrom(
                    numpy_helper.from_array(np.asarray(values[tensor.name], old.dtype).reshape(old.shape), tensor.name))
        self.bytes = proto.SerializeToString()
        self.session = self._session(self.bytes)

    def _proto(self):
        import onnx

        return onnx.load_from_string(self.bytes)


FLOAT_TENSOR_TYPES = (1, 10, 11)  # onnx.TensorProto.FLOAT, FLOAT16, DOUBLE


def read_model(source, role: str) -> bytes:
    if isinstance(source, (bytes, bytearray)):
        return bytes(source)
    if isinstance(source, (str, os.PathLike)):
        try:
            with open(source, "rb") as f:
                return f.read()
        except OSError as exc:
            raise ValueError(f"the {role} graph {os.fspath(source)!r} cannot be read: {exc.strerror}") from exc
    if hasattr(source, "SerializeToString"):  # an onnx.ModelProto
        return source.SerializeToString()
    raise TypeError(f"the {role} graph must be a path, bytes or an onnx.ModelProto, not {type(source).__name__}")


class OnnxSeq2Seq:
    """An exported Encoder–Decoder: graph files (paths, bytes or ModelProtos) and the names that tie
    them to the d2l interface. Everything is checked here, so a wrong name is one line at build time.

    - `encoder`: inputs `names["src"]` (and optionally `names["src_mask"]`, `names["src_valid_len"]`).
    - `decoder`: inputs `names["tgt"]` and state; outputs `names["logits"]` and next state.
    - `decoder_first`: optional, the decoder for a state with no past yet (Optimum's decoder_model
      beside decoder_with_past_model); without it a missing past starts empty (length 0 along its
      one dynamic axis other than the batch's).
    - `init_state`: optional graph from encoder outputs (and the source mask or lengths) to the
      initial state; without it the state starts as the encoder outputs, renamed by
      `encoder_outputs` ({encoder output: decoder input}, default last_hidden_state ->
      encoder_hidden_states), and the source mask as `names["memory_mask"]`.
    - `state`: {decoder output: decoder input it feeds next call}, where `present...` -> `past...`
      does not say it; `batch_axes`: {decoder input: axis} for a past the graph's axis names
      (`batch...`) do not place.
    """

    def __init__(self, encoder, decoder, *, decoder_first=None, init_state=None, names=None, encoder_outputs=None,
                 state=None, batch_axes=None):
        unknown = sorted(set(names or {}) - set(NAMES))
        if unknown:
            raise ValueError(f"names={{{', '.join(map(repr, unknown))}: ...}}: the roles are {', '.join(NAMES)}")
        self.names = {**NAMES, **(names or {})}
        self.encoder = Graph("encoder", encoder)
        self.decoder = Graph("decoder", decoder)
        self.decoder_first = Graph("decoder_first", decoder_first) if decoder_first is not None else None
        self.init_graph = Graph("init_state", init_state) if init_state is not None else None
        self.encoder_outputs = dict(ENCODER_OUTPUTS if encoder_outputs is None else encoder_outputs)
        self.batch_axes = dict(batch_axes or {})
        self.explicit_state = dict(state or {})
        self.graphs = [g for g in (self.encoder, self.init_graph, self.decoder_first, self.decoder) if g is not None]
        self._check()

    @property
    def decoders(self) -> list[Graph]:
        return [g for g in (self.decoder_first, self.decoder) if g is not None]

    def _check(self) -> None:
        n = self.names
        fed = {n["src"], n["src_mask"], n["src_valid_len"]}
        self._require(self.encoder, n["src"], "the source token ids")
        for graph in filter(None, (self.encoder, self.init_graph)):
            for name in graph.inputs:
                if name not in fed and not (graph is self.init_graph and name in self.encoder.outputs):
                    raise ValueError(f"{graph.role} graph input {name!r} is none the adapter feeds (source ids "
                                     f"{n['src']!r}, mask {n['src_mask']!r}, valid lengths {n['src_valid_len']!r}"
                                     f"{', or an encoder output' if graph is self.init_graph else ''}): rename with names={{...}}")
        self.dtype = self._float_dtype()
        for graph in self.decoders:
            self._require(graph, n["tgt"], "the target token ids")
            if n["logits"] not in graph.outputs:
                raise ValueError(f"{graph.role} graph has no output {n['logits']!r} (its outputs: {', '.join(graph.outputs)}): "
                                 "name the logits with names={'logits': ...}")
        self.feeds_back = {g.role: self._state_outputs(g) for g in self.decoders}
        initial = set(self.init_graph.outputs) if self.init_graph else (
            {self.encoder_outputs.get(o, o) for o in self.encoder.outputs} | {n["memory_mask"]})
        first = self.decoder_first or self.decoder
        carried = initial | set(self.feeds_back[first.role].values())
        for graph in self.decoders:
            state_in = initial if graph is first else carried
            for name in graph.inputs:
                if name != n["tgt"] and name not in state_in and not (graph is self.decoder and self._past(name)):
                    raise ValueError(f"{graph.role} graph input {name!r} gets no value: it is neither the target ids "
                                     f"{n['tgt']!r} nor in the state ({', '.join(sorted(state_in)) or 'empty'})")

    def _past(self, name: str) -> bool:
        """A decoder input fed back from an output, which may start empty."""
        return name in self.explicit_state.values() or any(name.startswith(p) for p in PAST_PREFIXES)

    @staticmethod
    def _require(graph: Graph, name: str, what: str) -> None:
        if name not in graph.inputs:
            raise ValueError(f"{graph.role} graph has no input {name!r} for {what} (its inputs: "
                             f"{', '.join(graph.inputs)}): name it with names={{...}}")

    def _float_dtype(self) -> str:
        logits_type = self.decoder.output_types.get(self.names["logits"], "")
        dtype = ONNX_TYPES.get(logits_type)
        if dtype not in DTYPE_NAMES:
            raise ValueError(f"decoder output {self.names['logits']!r} is {logits_type or 'missing'}: "
                             "the adapter takes float or double logits")
        return DTYPE_NAMES[dtype]

    def _state_outputs(self, graph: Graph) -> dict[str, str]:
        """{output: the input of the decoder (with past) it feeds}, checked."""
        pairs = {}
        for output in graph.outputs:
            if output == self.names["logits"]:
                continue
            target = self.explicit_state.get(output)
            if target is None and output.startswith("present"):
                rest = output[len("present"):]
                target = next((p + rest for p in PAST_PREFIXES if p + rest in self.decoder.inputs), None)
                if target is None:
                    raise ValueError(f"{graph.role} output {output!r} is state with no matching decoder input "
                                     f"({' or '.join(repr(p + rest) for p in PAST_PREFIXES)}): map it with state={{...}}")
            if target is None:
                raise ValueError(f"{graph.role} output {output!r} is neither the logits nor state (present...): "
                                 "map it to the decoder input it feeds with state={...}")
            if target not in self.decoder.inputs:
                raise ValueError(f"state={{{output!r}: {target!r}}}: the decoder has no input {target!r}")
            pairs[output] = target
        return pairs

    # --- running ----------------------------------------------------------------------------------

    def source_feed(self, graph: Graph, src, valid) -> dict:
        n, feed = self.names, {}
        if n["src"] in graph.inputs:
            feed[n["src"]] = np.asarray(src).astype(graph.input_type(n["src"]))
        if n["src_mask"] in graph.inputs:
            feed[n["src_mask"]] = self.mask(valid, np.shape(src)[1], graph.input_type(n["src_mask"]))
        if n["src_valid_len"] in graph.inputs:
            feed[n["src_valid_len"]] = np.asarray(valid).astype(graph.input_type(n["src_valid_len"]))
        return feed

    @staticmethod
    def mask(valid, steps: int, dtype) -> np.ndarray:
        return (np.arange(steps)[None, :] < np.asarray(valid)[:, None]).astype(dtype)

    def encode(self, src, valid) -> dict:
        return self.encoder.run(self.source_feed(self.encoder, src, valid))

    def init_state(self, enc_outputs: dict, valid) -> dict:
        if self.init_graph is not None:
            feed = {k: v for k, v in enc_outputs.items() if k in self.init_graph.inputs}
            if valid is not None:  # images have no lengths
                no_ids = np.zeros((len(valid), self._src_steps(enc_outputs, valid)), np.int64)  # for the mask's shape
                feed |= self.source_feed(self.init_graph, no_ids, valid)
            return self.init_graph.run(feed)
        state = {self.encoder_outputs.get(k, k): v for k, v in enc_outputs.items()}
        mask_type = next((g.input_type(self.names["memory_mask"]) for g in self.decoders
                          if self.names["memory_mask"] in g.inputs), None)
        if mask_type is not None and valid is not None:
            state[self.names["memory_mask"]] = self.mask(valid, self._src_steps(enc_outputs, valid), mask_type)
        return state

    def _src_steps(self, enc_outputs: dict, valid) -> int:
        """The source length, read off the encoder outputs: their first named axis other than the batch."""
        for name, value in enc_outputs.items():
            for axis, dim in enumerate(self.encoder.output_shapes.get(name, ())):
                if isinstance(dim, str) and not is_batch_dim(dim) and axis < np.ndim(value):
                    return int(np.shape(value)[axis])
        return int(np.max(valid))

    def decode(self, tgt, state: dict) -> tuple[np.ndarray, dict]:
        tgt = np.asarray(tgt)
        graph = self.decoder
        if self.decoder_first is not None and any(self._past(i) and i not in state for i in self.decoder.inputs):
            graph = self.decoder_first
        state = self._with_empty_pasts(dict(state), graph, len(tgt))
        steps = graph.inputs[self.names["tgt"]].shape
        per_call = 1 if len(steps) > 1 and steps[1] == 1 else max(tgt.shape[1], 1)
        pieces = []
        for start in range(0, tgt.shape[1], per_call):
            outputs = graph.run(self._decoder_feed(graph, tgt[:, start:start + per_call], state))
            pieces.append(outputs[self.names["logits"]])
            state |= {self.feeds_back[graph.role][k]: v for k, v in outputs.items() if k in self.feeds_back[graph.role]}
            graph = self.decoder
        return np.concatenate(pieces, axis=1), state

    def _decoder_feed(self, graph: Graph, tgt, state: dict) -> dict:
        feed = {self.names["tgt"]: tgt.astype(graph.input_type(self.names["tgt"]))}
        for name in graph.inputs:
            if name == self.names["tgt"]:
                continue
            value = np.asarray(state[name])
            expected = graph.input_type(name)
            if value.dtype != expected:
                raise TypeError(f"{graph.role} input {name!r} takes {graph.inputs[name].type}, but the state holds "
                                f"{value.dtype} for it")
            feed[name] = value
        return feed

    def _with_empty_pasts(self, state: dict, graph: Graph, batch: int) -> dict:
        for name, arg in graph.inputs.items():
            if name == self.names["tgt"] or name in state or not self._past(name):
                continue
            state[name] = np.zeros(self._empty_shape(name, arg.shape, batch), graph.input_type(name))
        return state

    def _empty_shape(self, name: str, shape, batch: int) -> tuple[int, ...]:
        batch_axis = self.batch_axes.get(name)
        if batch_axis is None:
            named = [axis for axis, dim in enumerate(shape) if isinstance(dim, str) and is_batch_dim(dim)]
            if len(named) != 1:
                raise ValueError(f"decoder input {name!r} (shape {list(shape)}) starts empty, but its batch axis is not "
                                 "named batch...: give batch_axes={...}")
            batch_axis = named[0]
        growing = [axis for axis, dim in enumerate(shape) if not isinstance(dim, int) and axis != batch_axis]
        if len(growing) != 1:
            raise ValueError(f"decoder input {name!r} (shape {list(shape)}) starts empty, but has "
                             f"{len(growing)} dynamic axes besides the batch, not one to start at length 0")
        return tuple(batch if axis == batch_axis else 0 if axis == growing[0] else dim for axis, dim in enumerate(shape))


    def greedy(self, src, valid, bos: int, steps: int) -> np.ndarray:
        """conformance.decoding's loop: exactly `steps` greedy tokens (batch, steps), one decoder run each."""
        valid = None if valid is None else np.asarray(valid)  # images have no lengths
        state = self.init_state(self.encode(src, valid), valid)
        tokens, out = np.full((len(src), 1), bos, np.int64), []
        for _ in range(steps):
            logits, state = self.decode(tokens, state)
            tokens = logits[:, -1].argmax(-1)[:, None]
            out.append(tokens)
        return np.concatenate(out, 1)


def is_batch_dim(dim: str) -> bool:
    return "batch" in dim.lower()


class OnnxAdapter:
    """`OnnxSeq2Seq` as a `conformance.Seq2SeqAdapter`: numpy in and out, the state a dict of arrays."""

    backend = "onnxruntime"
    framework_version = ort.__version__

    def __init__(self, model: OnnxSeq2Seq, spec):
        device_scope(spec.device)
        if model.dtype != spec.dtype:
            raise Unsupported(f"the exported graphs compute in {model.dtype} (decoder output "
                              f"{model.names['logits']!r}), not {spec.dtype}")
        self.model = model
        self.device = spec.device
        self.dtype = model.dtype
        self._params = None

    def encode(self, src, src_valid_len):
        return self.model.encode(src, src_valid_len)

    def init_state(self, enc_outputs, src_valid_len):
        return self.model.init_state(enc_outputs, src_valid_len)

    def decode(self, tgt, state):
        return self.model.decode(tgt, state)

    def forward(self, src, tgt, src_valid_len):
        return self.decode(tgt, self.init_state(self.encode(src, src_valid_len), src_valid_len))[0]

    def greedy_tokens(self, src, src_valid_len, bos, steps):
        return self.model.greedy(src, src_valid_len, bos, steps)

    def to_numpy(self, tree):
        return tree_map(lambda x: np.array(x) if isinstance(x, np.ndarray) else x, tree)

    def from_numpy(self, tree):
        return self.to_numpy(tree)

    def gradients(self, src, tgt, src_valid_len, cotangent):
        raise Unsupported("ONNX Runtime runs the exported graphs forward only: no gradients")

    def _parameters(self) -> dict[str, dict[str, tuple[str, list]]]:
        """{part: {key: (initializer name, [graphs holding it])}}: an initializer with the same name
        and values in several graphs is one parameter; another one of that name is `graph/name`."""
        if self._params is None:
            self._params, seen = {"encoder": {}, "decoder": {}}, {}
            for graph in self.model.graphs:
                part = "encoder" if graph is self.model.encoder else "decoder"
                for name, value in graph.initializers().items():
                    if name in seen and np.array_equal(seen[name][0], value):
                        seen[name][1].append(graph)
                        continue
                    key = name if name not in seen else f"{graph.role}/{name}"
                    seen.setdefault(name, (value, []))
                    holders = seen[name][1] if key == name else []
                    holders.append(graph)
                    self._params[part][key] = (name, holders)
        return self._params

    def get_weights(self):
        values = {graph.role: graph.initializers() for graph in self.model.graphs}
        return {part: {key: values[graphs[0].role][name] for key, (name, graphs) in named.items()}
                for part, named in self._parameters().items()}

    def get_buffers(self):
        """Nothing beside get_weights: a graph's arrays are initializers, and ONNX Runtime writes none."""
        return {part: {} for part in self._parameters()}

    def set_weights(self, weights):
        per_graph: dict[str, dict] = {}
        for part, named in weights.items():
            for key, value in named.items():
                name, graphs = self._parameters()[part][key]
                for graph in graphs:
                    per_graph.setdefault(graph.role, {})[name] = value
        for graph in self.model.graphs:
            if graph.role in per_graph:
                graph.set_initializers(per_graph[graph.role])
