"""TensorFlow / Keras 3: a `keras.Model` (or Layer) with `.encoder` and `.decoder` (d2l's EncoderDecoder).

The adapter takes the Keras module its model is built with: Keras 2 models (tf_keras) run through it
too (tf_keras_bridge.py). Both keep their weights as TensorFlow variables.
"""
from __future__ import annotations

import functools
import random
import warnings

import keras
import numpy as np
import tensorflow as tf
from keras.src.backend.common import global_state
from keras.src.random import seed_generator
from keras.src.utils.rng_utils import GLOBAL_RANDOM_SEED
from tensorflow.python.eager import context

from ..spec import Unsupported
from ..trees import tree_map
from .. import bridges
from . import gpu_index, parameters_once

DTYPES = ("float32", "float64")


def accepts(obj, keras_module=keras) -> bool:
    return isinstance(obj, keras_module.layers.Layer) and hasattr(obj, "encoder") and hasattr(obj, "decoder")


def seed(n: int) -> None:
    """keras.utils.set_random_seed(n) (Keras' initializers draw from its own global seed, not only
    TensorFlow's), with TensorFlow's global seed set by set_global_seed."""
    global_state.set_global_attribute(GLOBAL_RANDOM_SEED, n)
    global_state.set_global_attribute(seed_generator.GLOBAL_SEED_GENERATOR, None)  # remade from the seed
    random.seed(n)
    np.random.seed(n)
    set_global_seed(n)


_seeds_set: set[int] = set()  # the global seeds set_global_seed set in this process
_last_seed_set: tuple[int, object] | None = None  # (seed, seeding round)


def set_global_seed(n: int) -> None:
    """tf.random.set_seed(n), which empties the eager kernel cache only where that can change a number.
    set_seed empties it so that a stateful random kernel, kept per (global, op) seed pair, starts its
    stream again; but a traced model then instantiates its functions again on its next call (seeded
    before every contract, the suite took 3.5x as long). A global seed new to the process makes every
    seed pair new, so no cached kernel can go on with a stream: the same numbers, the cache kept. The
    cache is emptied for a seed set before, and after anyone else set one (they may have set n)."""
    global _last_seed_set
    eager = context.context()
    current = getattr(eager, "_seed", 0)  # 0 where TensorFlow keeps it elsewhere: then set_seed, always
    if bridges.seeding_round is not None and _last_seed_set == (n, bridges.seeding_round) and current == n:
        return  # the other Keras's bridge seeded the runtime in this round
    last = _last_seed_set[0] if _last_seed_set else None
    if n not in _seeds_set and current == last and tf.executing_eagerly():
        eager._seed, eager._rng = n, random.Random(n)  # what set_seed does, less the emptying
    else:
        tf.random.set_seed(n)
    _seeds_set.add(n)
    _last_seed_set = (n, bridges.seeding_round)


def limit_threads(n: int) -> None:
    """n intra-op threads and one inter-op thread: a decode step is a chain of small ops with nothing
    to overlap, so a second inter-op thread would only contend for the same cores."""
    try:
        tf.config.threading.set_intra_op_parallelism_threads(n)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # TensorFlow fixes its thread pools when it first runs an op; too late then
        warnings.warn(f"TensorFlow ran an op before its threads could be limited to {n}: it keeps "
                      f"{tf.config.threading.get_intra_op_parallelism_threads() or 'its default'} intra-op threads",
                      RuntimeWarning, stacklevel=2)


def wrap(model, spec):
    return TensorFlowAdapter(model, spec, keras)


def is_native(x) -> bool:
    """A TensorFlow array leaf: a tensor, or a variable (which a state may hold): tf.is_tensor counts
    tf.Variable and keras.Variable too."""
    return tf.is_tensor(x)


def unwrapped(tree):
    """The tree with list subclasses, which optree takes for leaves, rebuilt as lists: Keras 2 hands an
    LSTM's per-layer [h, c] back in its own ListWrapper."""
    return tree_map(lambda x: [unwrapped(item) for item in x] if isinstance(x, list) else x, tree)


def variable_names(v) -> tuple[str, str]:
    """(short, full) name: Keras 3 names a variable `kernel`, its path `dense_17/kernel`; Keras 2 names it
    `dense_17/kernel:0`."""
    return v.name.rsplit("/", 1)[-1].split(":")[0], getattr(v, "path", v.name)


def named_variables(layer, Layer, prefix: str = "", seen: set | None = None, which: str = "trainable_weights") -> dict:
    """{attribute path: variable} for every trainable variable of `layer` (every non-trainable one with
    `which="non_trainable_weights"`: BatchNorm's moving statistics), an instance of the Keras class
    `Layer`, e.g. `blks.0.attention.W_qkv.kernel`.

    Keras' own variable paths hold globally numbered layer names (`dense_17`) that differ between two
    instances of one model; the attribute path does not.
    """
    seen = set() if seen is None else seen  # ids of the layers and variables already named
    if id(layer) in seen:
        return {}
    seen.add(id(layer))
    children = {}  # path -> sublayer, in the order the attributes were set
    for name, value in vars(layer).items():
        if name.startswith("_"):
            continue
        if isinstance(value, Layer):
            children.setdefault(name, value)
        elif isinstance(value, (list, tuple)):  # a list of layers is kept as a TrackedList (ListWrapper in Keras 2)
            children.update((f"{name}.{i}", v) for i, v in enumerate(value) if isinstance(v, Layer))
    # Keras tracks every direct sublayer, also those kept privately (a Sequential's): they go by name.
    held = {id(child) for child in children.values()}
    sublayers = layer._flatten_layers(include_self=False, recursive=False)
    children.update((child.name, child) for child in sublayers if id(child) not in held)
    named = {}
    for name, child in children.items():
        named.update(named_variables(child, Layer, f"{prefix}{name}.", seen, which))
    for v in getattr(layer, which):  # what no sublayer claimed is this layer's own
        if id(v) not in seen:
            seen.add(id(v))
            short, full = variable_names(v)
            named[f"{prefix}{short}" if f"{prefix}{short}" not in named else f"{prefix}{full}"] = v
    return named


def variable_device(variable) -> str:
    """"cpu" or "cuda:N": where a variable's value lives (a Keras 3 variable has no `.device` of its own)."""
    device = tf.DeviceSpec.from_string(tf.convert_to_tensor(variable).device)
    return "cpu" if device.device_type in (None, "CPU") else f"cuda:{device.device_index or 0}"


def on_device(method):
    """The adapter's call, under tf.device of the device the run asked for: TensorFlow would otherwise
    place each op by its own rules (on a GPU whenever there is one)."""

    @functools.wraps(method)
    def placed(self, *args, **kwargs):
        with self.device_scope():
            return method(self, *args, **kwargs)

    return placed


class TensorFlowAdapter:
    """Runs the model eagerly, exactly as written, unless the model says its calls may be traced (a
    true `traceable` attribute, as the TensorFlow references have): its encoder, init_state, decoder,
    forward and gradient calls then run as tf.function graphs once hot (HotCall). Eager Keras pays
    milliseconds of dispatch per layer and time step: on the references a graph call is 20-40x cheaper,
    a trace costs ~10 eager calls, and the whole suite on them takes 2.3x less CPU (the same verdicts and
    measured differences). Tracing every call from the first was slower overall (traces of models used
    by one contract, retraces per shape). Not for a model that does not say so: a Python side effect
    runs only while tracing, and eager-only code (.numpy(), Python branches on values) would not trace.
    The decoding loops below (greedy_tokens, the benchmarks' eager loop) stay eager either way."""

    backend = "tensorflow"

    def __init__(self, model, spec, keras_module):
        """`model` is built with `keras_module`: Keras 3's `keras`, or Keras 2's `tf_keras`."""
        self.Layer = keras_module.layers.Layer
        self.framework_version = f"{tf.__version__} ({keras_module.__name__} {keras_module.__version__})"
        for part in ("encoder", "decoder"):
            if not isinstance(getattr(model, part, None), self.Layer):
                raise TypeError(f"a d2l EncoderDecoder has a `.{part}` layer; {type(model).__name__} has none")
        if spec.dtype not in DTYPES:
            raise Unsupported(f"dtype {spec.dtype!r}")
        # Keras 3 gives a variable's dtype as a string, Keras 2 as a tf.DType.
        dtypes = {tf.as_dtype(v.dtype) for v in model.weights}
        built_in = {d.name for d in dtypes if d.is_floating} or {model.compute_dtype}
        if built_in != {spec.dtype}:
            # Keras fixes a layer's dtype policy and variables when it is built; they cannot be recast.
            raise Unsupported(f"the model computes in {sorted(built_in)}, not {spec.dtype}: build it under that dtype policy")
        self.model = model
        self.traced = {} if getattr(model, "traceable", False) is True else None  # call kind -> HotCall
        self.dtype = spec.dtype
        self.device = spec.device
        self.device_scope = device_scope(spec.device)  # every call below runs under it
        elsewhere = sorted({variable_device(v) for v in model.weights} - {spec.device})
        if elsewhere:
            # Keras fixes a variable's device when it creates it; it cannot be moved either.
            raise Unsupported(f"the model's variables are on {', '.join(elsewhere)}, not {spec.device}: create them "
                              f"under tf.device({tf_device(spec.device)!r})")

    @property
    def params(self) -> dict:
        """{"encoder": {path: variable}, "decoder": {...}}, each trainable variable once; looked up anew,
        so a model built late is seen whole."""
        return parameters_once({part: named_variables(getattr(self.model, part), self.Layer).items() for part in ("encoder", "decoder")})

    def _tokens(self, a) -> tf.Tensor:
        return tf.constant(np.asarray(a), dtype=tf.int64)  # int64 keeps every id as given, out of range ones too

    def _source(self, a) -> tf.Tensor:
        """Token ids as int64; frames and images in the model's dtype (conformance/sources.py)."""
        a = np.asarray(a)
        return tf.constant(a, dtype=self.dtype) if np.issubdtype(a.dtype, np.floating) else self._tokens(a)

    def _lengths(self, src_valid_len) -> tuple:
        """d2l's `*args`: the source valid lengths, or nothing for a source that has none (images)."""
        return () if src_valid_len is None else (self._tokens(src_valid_len),)

    def _run(self, call, *args):
        """`call(*args)`: eagerly, or through its HotCall where the model is traceable."""
        if self.traced is None:
            return call(*args)
        if call.__name__ not in self.traced:
            self.traced[call.__name__] = HotCall(call)
        return self.traced[call.__name__](*args)

    def _encode(self, src, *lengths):
        return self.model.encoder(src, *lengths, training=False)

    def _init_state(self, enc_outputs, *lengths):
        # A plain method, not a Keras call, so there is no training flag to pass: layers default to inference.
        return self.model.decoder.init_state(enc_outputs, *lengths)

    def _decode(self, tgt, state):
        return self.model.decoder(tgt, state, training=False)

    @on_device
    def encode(self, src, src_valid_len):
        return self._run(self._encode, self._source(src), *self._lengths(src_valid_len))

    @on_device
    def init_state(self, enc_outputs, src_valid_len):
        return self._run(self._init_state, enc_outputs, *self._lengths(src_valid_len))

    @on_device
    def decode(self, tgt, state):
        logits, state = self._run(self._decode, self._tokens(tgt), state)
        return logits.numpy(), state

    @on_device
    def greedy_tokens(self, src, src_valid_len, bos, steps):
        """conformance.decoding's loop, eager as every other call here, tokens and state kept as tensors."""
        lengths = self._lengths(src_valid_len)
        state = self.model.decoder.init_state(self.model.encoder(self._source(src), *lengths, training=False), *lengths)
        tokens = tf.fill([len(src), 1], tf.constant(bos, tf.int64))
        out = []
        for _ in range(steps):
            logits, state = self.model.decoder(tokens, state, training=False)
            tokens = tf.argmax(logits[:, -1:], -1, output_type=tf.int64)
            out.append(tokens)
        return tf.concat(out, 1).numpy()

    # What compiled_greedy_tokens ran last, for the benchmarks' labels (conformance.decoding.InterfaceLoop).
    compiled_how = None

    @on_device
    def compiled_greedy_tokens(self, src, src_valid_len, bos, steps):
        """conformance.decoding's loop as the model would be deployed, traced with tf.function, in the first
        of these forms that compiles the model (each failure is a trace, seconds, in the first call):

        1. the whole loop, every Decoder.forward inside one tf.while_loop, XLA-compiled: where the state
           keeps its shapes from step to step (recurrent states; found by one eager step first);
        2. the same loop as a plain graph (where XLA lacks one of the model's ops), with the dimensions
           of the state that grow every step (a key/value cache) relaxed, which XLA cannot compile;
        3. one tf.function per Decoder.forward with its argmax, called once per token as eagerly, traced
           twice then with the dimensions that changed relaxed (reduce_retracing), XLA compiling each
           shape once, in the first decode;
        4. the same steps as plain graphs.

        Where none traces, NotCompiled with each form's reason. Python side effects of the model run only
        while tracing."""
        from ..decoding import NotCompiled

        loops = self.__dict__.setdefault("_compiled_loops", {})  # (batch, source length) -> (loop, how)
        shape = np.shape(src)
        if shape in loops:
            loop, self.compiled_how = loops[shape]
            return loop(src, src_valid_len, bos, steps)
        grows = self._growing_state_shapes(src, src_valid_len, bos)
        forms = [("whole loop", self._whole_loop(False, grows)), ("per step, XLA", self._step_loop(True)),
                 ("per step", self._step_loop(False))]
        if grows is None:
            forms.insert(0, ("whole loop, XLA", self._whole_loop(True, None)))
        failures = []
        for name, loop in forms:
            try:
                tokens = loop(src, src_valid_len, bos, steps)
            except Exception as exc:  # this form cannot trace (or XLA-compile) the model; eagerly it runs
                failures.append(f"{name}: {type(exc).__name__}: {_first_line(exc)}")
                continue
            self.compiled_how = f"tf.function, {name}" + (f" (not: {'; '.join(failures)})" if failures else "")
            loops[shape] = loop, self.compiled_how
            return tokens
        raise NotCompiled("; ".join(failures))

    def _start(self, src, *lengths):  # lengths: d2l's *args, nothing for images
        return self.model.decoder.init_state(self.model.encoder(src, *lengths, training=False), *lengths)

    def _step(self, tokens, state):
        logits, state = self.model.decoder(tokens, state, training=False)
        return tf.argmax(logits[:, -1], -1, output_type=tf.int64)[:, None], state  # (batch, 1), static in a loop

    def _growing_state_shapes(self, src, src_valid_len, bos):
        """The state's shapes with the dimensions that change over one eager step as None (a nested
        structure like the state's), or None where every shape stays."""
        before = self._start(self._source(src), *self._lengths(src_valid_len))
        _, after = self._step(tf.fill([len(src), 1], tf.constant(bos, tf.int64)), before)
        shapes = [tf.TensorShape([a if a == b else None for a, b in zip(x.shape, y.shape)])
                  for x, y in zip(tf.nest.flatten(before), tf.nest.flatten(after))]
        if all(shape.is_fully_defined() for shape in shapes):
            return None
        return tf.nest.pack_sequence_as(before, shapes)

    def _whole_loop(self, xla, grows):
        def loop(src, bos, steps, *lengths):
            state = self._start(src, *lengths)
            tokens = tf.fill([src.shape[0], 1], bos)  # a static batch, as eagerly

            def body(t, tokens, state, out):
                tokens, state = self._step(tokens, state)
                return t + 1, tokens, state, out.write(t, tokens[:, 0])

            invariants = None if grows is None else (tf.TensorShape([]), tokens.shape, grows, tf.TensorShape(None))
            *_, out = tf.while_loop(lambda t, *_: t < steps, body, (0, tokens, state, tf.TensorArray(tf.int64, steps)),
                                    shape_invariants=invariants)
            return tf.transpose(out.stack())

        # Not AutoGraph: the model's code runs as written, as while Keras traces a functional model.
        compiled = tf.function(loop, jit_compile=xla, autograph=False)
        return lambda src, valid, bos, steps: compiled(self._source(src), tf.constant(bos, tf.int64), tf.constant(steps),
                                                       *self._lengths(valid)).numpy()

    def _step_loop(self, xla):
        start = tf.function(self._start, jit_compile=xla)
        step = tf.function(self._step, reduce_retracing=True, jit_compile=xla)
        relaxed = {}  # once traced with relaxed shapes: its concrete function, called without re-dispatching

        def loop(src, valid, bos, steps):
            state = start(self._source(src), *self._lengths(valid))
            tokens = tf.fill([len(src), 1], tf.constant(bos, tf.int64))
            out = []
            for t in range(steps):
                tokens, state = relaxed.get("step", step)(tokens, state)
                out.append(tokens)
                if t == 1 and "step" not in relaxed:  # traced for steps 0 and 1: the second trace covers the rest
                    relaxed["step"] = step.get_concrete_function(tokens, state)
            return tf.concat(out, 1).numpy()

        return loop

    def _forward(self, src, tgt, *lengths):
        out = self.model(src, tgt, *lengths, training=False)
        return out[0] if isinstance(out, (tuple, list)) else out  # older d2l returned (output, state)

    @on_device
    def forward(self, src, tgt, src_valid_len):
        return self._run(self._forward, self._source(src), self._tokens(tgt), *self._lengths(src_valid_len)).numpy()

    def to_numpy(self, tree):
        return tree_map(lambda x: np.array(x) if is_native(x) else x, unwrapped(tree))

    @on_device
    def from_numpy(self, tree):
        return tree_map(lambda x: tf.constant(x) if isinstance(x, np.ndarray) else x, tree)

    def _gradients(self, cotangent, src, tgt, *lengths):
        with tf.GradientTape() as tape:
            logits = self._forward(src, tgt, *lengths)
            loss = tf.reduce_sum(logits * tf.cast(cotangent, logits.dtype))
        grads = tape.gradient(loss, self.params)
        # An embedding's gradient arrives as IndexedSlices.
        return tf.nest.map_structure(lambda g: None if g is None else tf.convert_to_tensor(g), grads)

    @on_device
    def gradients(self, src, tgt, src_valid_len, cotangent):
        grads = self._run(self._gradients, tf.constant(cotangent), self._source(src), self._tokens(tgt),
                          *self._lengths(src_valid_len))
        return {part: {name: self._dense(grads[part][name], v) for name, v in named.items()} for part, named in self.params.items()}

    @staticmethod
    def _dense(grad, variable) -> np.ndarray:
        # Zeros by hand: UnconnectedGradients.ZERO fails on Keras 3 variables, whose dtype is a string.
        if grad is None:
            return np.zeros(variable.shape, tf.as_dtype(variable.dtype).as_numpy_dtype)
        return grad.numpy()

    def get_weights(self):
        return {part: {name: v.numpy().copy() for name, v in named.items()} for part, named in self.params.items()}

    def get_buffers(self):
        """Every non-trainable variable (BatchNorm's moving statistics, a frozen table), each once."""
        held = parameters_once({part: named_variables(getattr(self.model, part), self.Layer, which="non_trainable_weights").items()
                                for part in ("encoder", "decoder")})
        return {part: {name: v.numpy().copy() for name, v in named.items()} for part, named in held.items()}

    def set_weights(self, weights):
        params = self.params
        for part, named in weights.items():
            for name, value in named.items():
                params[part][name].assign(np.asarray(value))


class HotCall:
    """A call of a traceable model, run eagerly until it has been made `HOT` times with arguments of one
    structure, then, from the next seeding round on (bridges.rounds_begun: the next contract), as a
    tf.function traced once for every shape seen so far: a dimension that differed between those calls
    (batch, length, cache) is left unknown. A trace costs ~10 eager calls (measured on the references),
    so a call made a few times (a model built for one contract) never pays for one. The switch waits for
    a round because a graph rounds differently from the eager ops (TensorFlow fuses and reorders them):
    two calls that one contract compares bit for bit, one eager and one traced, would differ by 1e-16.
    Where the trace fails, the call stays eager, and so does a later call whose new shape fails to
    retrace (a wrong channel count left a dimension unknown): an error of the traced call itself is the
    model's, as eagerly."""

    HOT = 8

    def __init__(self, call):
        self.call = call
        self.traced = tf.function(call, reduce_retracing=True, autograph=False)
        self.seen: dict[str, list] = {}  # structure -> argument shapes of its eager calls; None once traced
        self.hot_in: dict[str, int] = {}  # structure -> the round its HOT-th eager call was made in
        self.eager: set[str] = set()  # structures whose trace failed

    def __call__(self, *args):
        structure = repr(tf.nest.map_structure(lambda x: (x.dtype.name, x.shape.rank) if tf.is_tensor(x) else x, args))
        shapes = self.seen.setdefault(structure, [])
        if shapes is None:
            try:
                return self.traced(*args)
            except Exception:
                try:  # a shape never seen retraces: was it the trace that failed, or the traced call?
                    self.traced.get_concrete_function(*args)
                except Exception:
                    return self.call(*args)  # the trace: the call runs as the model runs, eagerly
                raise
        if structure not in self.eager and self.hot_in.get(structure, bridges.rounds_begun) != bridges.rounds_begun:
            try:
                self.traced.get_concrete_function(*tf.nest.map_structure(spec_of(shapes), args, *shapes))
            except Exception:
                self.eager.add(structure)
            else:
                self.seen[structure] = None
                return self.traced(*args)
        if structure not in self.eager:
            shapes.append(tf.nest.map_structure(lambda x: x.shape if tf.is_tensor(x) else x, args))
            if len(shapes) == self.HOT:
                self.hot_in[structure] = bridges.rounds_begun
        return self.call(*args)


def spec_of(shapes):
    """f(argument, *its shapes in earlier calls): its TensorSpec with the dimensions that differed unknown."""

    def spec(x, *seen):
        if not tf.is_tensor(x):
            return x
        dims = [d if all(s[i] == d for s in seen) else None for i, d in enumerate(x.shape)]
        return tf.TensorSpec(dims, x.dtype)

    return spec


def _first_line(exc, limit=200) -> str:
    """The line of an error's message that says what went wrong, not where: Keras and AutoGraph wrap the
    cause in lines naming the layer, the file and the arguments."""
    noise = ("File ", "Exception encountered", "in user code", "Arguments received", "•", "return ", "raise ")
    lines = [line.strip().replace("\x1b[1m", "").replace("\x1b[0m", "") for line in str(exc).splitlines()]
    lines = [line for line in lines if line and not line.startswith(noise) and not set(line) <= set("^~ ")]
    return (lines or [""])[0].split(". ")[0][:limit]  # its first sentence


# --- Device glue: where a model is built and runs, and waiting for its work ----------------------

def tf_device(device: str) -> str:
    """TensorFlow's name of "cpu" or "cuda:N"; Unsupported when TensorFlow cannot see that GPU."""
    index = gpu_index(device, "tensorflow", len(tf.config.list_physical_devices("GPU")))
    return "/CPU:0" if index is None else f"/GPU:{index}"


def device_scope(device: str):
    """A no-argument factory of the context to build and call a model in on `device` ("cpu", "cuda:N");
    Unsupported when TensorFlow cannot see it. Variables are created, and every call runs, under it."""
    name = tf_device(device)
    return lambda: tf.device(name)


def place(model, device: str):
    return model  # built under device_scope: already there


def synchronize(device: str) -> None:
    if device != "cpu":
        tf.test.experimental.sync_devices()
