"""TensorFlow / Keras 3: a `keras.Model` (or Layer) with `.encoder` and `.decoder` (d2l's EncoderDecoder)."""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from ..spec import Unsupported
from ..trees import tree_map

DTYPES = ("float32", "float64")


def accepts(obj) -> bool:
    return isinstance(obj, keras.layers.Layer) and hasattr(obj, "encoder") and hasattr(obj, "decoder")


def seed(n: int) -> None:
    keras.utils.set_random_seed(n)  # Keras' initializers draw from its own global seed, not only TF's


def limit_threads(n: int) -> None:
    try:
        tf.config.threading.set_intra_op_parallelism_threads(n)
        tf.config.threading.set_inter_op_parallelism_threads(n)
    except RuntimeError:  # TensorFlow fixes its thread pools when it first runs an op; too late then
        pass


def wrap(model, spec):
    return TensorFlowAdapter(model, spec)


def is_native(x) -> bool:
    """A TensorFlow array leaf: a tensor, or a variable (which a state may hold)."""
    return tf.is_tensor(x) or isinstance(x, (tf.Variable, keras.Variable))


def named_variables(layer: keras.layers.Layer, prefix: str = "", seen: set | None = None) -> dict:
    """{attribute path: variable} for every trainable variable, e.g. `blks.0.attention.W_qkv.kernel`.

    Keras' own `variable.path` holds globally numbered layer names (`dense_17`) that differ between two
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
        if isinstance(value, keras.layers.Layer):
            children.setdefault(name, value)
        elif isinstance(value, (list, tuple)):  # a list of layers is kept as a TrackedList
            children.update((f"{name}.{i}", v) for i, v in enumerate(value) if isinstance(v, keras.layers.Layer))
    # Keras tracks every sublayer in `_layers`, also those kept privately (a Sequential's): they go by name.
    held = {id(child) for child in children.values()}
    children.update((child.name, child) for child in getattr(layer, "_layers", []) if id(child) not in held)
    named = {}
    for name, child in children.items():
        named.update(named_variables(child, f"{prefix}{name}.", seen))
    for v in layer.trainable_weights:  # what no sublayer claimed is this layer's own
        if id(v) not in seen:
            seen.add(id(v))
            named[f"{prefix}{v.name}" if f"{prefix}{v.name}" not in named else f"{prefix}{v.path}"] = v
    return named


class TensorFlowAdapter:
    """Runs the model eagerly, exactly as written. Measured on the suite (2 cores), wrapping the calls in
    tf.function(reduce_retracing=True) was slower overall (retracing per shape and state structure
    outweighs the faster calls) and would run a model's Python side effects only while tracing."""

    backend = "tensorflow"
    framework_version = f"{tf.__version__} (keras {keras.__version__})"

    def __init__(self, model: keras.layers.Layer, spec):
        for part in ("encoder", "decoder"):
            if not isinstance(getattr(model, part, None), keras.layers.Layer):
                raise TypeError(f"a d2l EncoderDecoder has a `.{part}` layer; {type(model).__name__} has none")
        if spec.dtype not in DTYPES:
            raise Unsupported(f"dtype {spec.dtype!r}")
        built_in = {v.dtype for v in model.weights if "float" in v.dtype} or {model.compute_dtype}
        if built_in != {spec.dtype}:
            # Keras fixes a layer's dtype policy and variables when it is built; they cannot be recast.
            raise Unsupported(f"the model computes in {sorted(built_in)}, not {spec.dtype}: build it under that dtype policy")
        self.model = model
        self.dtype = spec.dtype
        first = next((v for v in model.weights), None)
        device = tf.DeviceSpec.from_string(first.value.device if first is not None else "/cpu:0")
        self.device = "cpu" if device.device_type in (None, "CPU") else f"{device.device_type.lower()}:{device.device_index or 0}"

    @property
    def params(self) -> dict:
        """{"encoder": {path: variable}, "decoder": {...}}; looked up anew, so a model built late is seen whole."""
        return {part: named_variables(getattr(self.model, part)) for part in ("encoder", "decoder")}

    def _tokens(self, a) -> tf.Tensor:
        return tf.constant(np.asarray(a), dtype=tf.int64)  # int64 keeps every id as given, out of range ones too

    def encode(self, src, src_valid_len):
        return self.model.encoder(self._tokens(src), self._tokens(src_valid_len), training=False)

    def init_state(self, enc_outputs, src_valid_len):
        # A plain method, not a Keras call, so there is no training flag to pass: layers default to inference.
        return self.model.decoder.init_state(enc_outputs, self._tokens(src_valid_len))

    def decode(self, tgt, state):
        logits, state = self.model.decoder(self._tokens(tgt), state, training=False)
        return logits.numpy(), state

    def _forward(self, src, tgt, src_valid_len):
        out = self.model(self._tokens(src), self._tokens(tgt), self._tokens(src_valid_len), training=False)
        return out[0] if isinstance(out, (tuple, list)) else out  # older d2l returned (output, state)

    def forward(self, src, tgt, src_valid_len):
        return self._forward(src, tgt, src_valid_len).numpy()

    def to_numpy(self, tree):
        return tree_map(lambda x: np.array(x) if is_native(x) else x, tree)

    def from_numpy(self, tree):
        return tree_map(lambda x: tf.constant(x) if isinstance(x, np.ndarray) else x, tree)

    def gradients(self, src, tgt, src_valid_len, cotangent):
        with tf.GradientTape() as tape:
            logits = self._forward(src, tgt, src_valid_len)
            loss = tf.reduce_sum(logits * tf.constant(cotangent, logits.dtype))
        params = self.params
        grads = tape.gradient(loss, params)
        return {part: {name: self._dense(grads[part][name], v) for name, v in named.items()} for part, named in params.items()}

    @staticmethod
    def _dense(grad, variable) -> np.ndarray:
        # Zeros by hand: UnconnectedGradients.ZERO fails on Keras variables, whose dtype is a string.
        if grad is None:
            return np.zeros(variable.shape, variable.dtype)
        return tf.convert_to_tensor(grad).numpy()  # an embedding's gradient arrives as IndexedSlices

    def get_weights(self):
        return {part: {name: v.numpy().copy() for name, v in named.items()} for part, named in self.params.items()}

    def set_weights(self, weights):
        params = self.params
        for part, named in weights.items():
            for name, value in named.items():
                params[part][name].assign(np.asarray(value))
