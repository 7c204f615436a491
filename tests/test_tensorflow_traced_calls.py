"""The TensorFlow bridge runs the calls of a model that declares `traceable = True` (the references) as
tf.function graphs once they are hot, and every other model eagerly, exactly as written: a graph runs
a Python side effect only while it is traced."""
import numpy as np
import pytest

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

import impls.tensorflow  # noqa: E402
from conformance.bridges import as_adapter  # noqa: E402
from conformance.bridges.tensorflow_bridge import HotCall  # noqa: E402
from conformance.spec import ModelSpec  # noqa: E402
from impls.tensorflow.d2l import Decoder, EncoderDecoder, Encoder  # noqa: E402

SHAPES = [(1, 1, 1), (3, 6, 5), (4, 4, 4), (2, 5, 1)]  # (batch, source steps, target steps), as the contracts' cases


def inputs(rng, spec, batch, src_steps, tgt_steps):
    src = rng.integers(0, spec.src_vocab, (batch, src_steps))
    valid = rng.integers(1, src_steps + 1, batch)
    tgt = rng.integers(0, spec.tgt_vocab, (batch, tgt_steps))
    return src, valid, tgt, rng.standard_normal((batch, tgt_steps, spec.tgt_vocab))


def test_a_traceable_model_gives_its_eager_numbers_once_traced():
    """The Transformer reference (a key/value cache that grows: relaxed dimensions) through every call the
    contracts make, eagerly and through the bridge's traced calls: the same logits, states and gradients
    to float64 rounding, on shapes before and after the trace."""
    spec = ModelSpec("transformer")
    model = impls.tensorflow.make_model(spec)
    traced, eager = as_adapter(model, spec), as_adapter(model, spec)
    eager.traced = None  # as for a model that does not declare itself traceable
    rng = np.random.default_rng(0)
    for i in range(HotCall.HOT + 2):
        src, valid, tgt, cotangent = inputs(rng, spec, *SHAPES[i % len(SHAPES)])
        for adapter, expected in ((traced, None), (eager, None)):
            state = adapter.init_state(adapter.encode(src, valid), valid)
            first, state = adapter.decode(tgt[:, :1], state)
            rest, state = adapter.decode(tgt[:, 1:], state)  # on the cache the first call left
            got = [first, rest, *adapter.to_numpy(state)[2][0], adapter.forward(src, tgt, valid),
                   *(g for named in adapter.gradients(src, tgt, valid, cotangent).values() for g in named.values())]
            if adapter is traced:
                traced_numbers = got
        for a, b in zip(traced_numbers, got):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13, err_msg=f"call {i}, shapes {SHAPES[i % len(SHAPES)]}")
    hot = {name: all(shapes is None for shapes in call.seen.values()) for name, call in traced.traced.items()}
    assert hot == dict.fromkeys(["_encode", "_init_state", "_decode", "_forward", "_gradients"], True), hot


CALLS = {"encoder": 0, "decoder": 0}  # Python side effects of the model below


class CountingEncoder(Encoder):
    def __init__(self):
        super().__init__()
        self.embedding = keras.layers.Embedding(23, 4)

    def call(self, X, valid_lens):
        CALLS["encoder"] += 1
        return self.embedding(X)


class CountingDecoder(Decoder):
    def __init__(self):
        super().__init__()
        self.embedding = keras.layers.Embedding(29, 4)
        self.dense = keras.layers.Dense(29)

    def init_state(self, enc_outputs, valid_lens):
        return tf.reduce_mean(enc_outputs, 1)

    def call(self, X, state):
        CALLS["decoder"] += 1
        return self.dense(self.embedding(X) + state[:, None]), state


class Counting(EncoderDecoder):
    traceable = False


@pytest.mark.parametrize("traceable", [False, True])
def test_only_a_model_that_says_so_is_traced(traceable):
    """A model without `traceable = True` runs its Python code at every call; one with it, only while traced."""
    spec = ModelSpec("gru", dtype="float32")
    model = (EncoderDecoder if traceable else Counting)(CountingEncoder(), CountingDecoder())
    one = np.zeros((1, 1), np.int64)
    model(one, one, np.ones(1, np.int64))
    adapter = as_adapter(model, spec)
    CALLS.update(encoder=0, decoder=0)
    calls = 3 * HotCall.HOT
    for _ in range(calls):
        adapter.decode(one, adapter.init_state(adapter.encode(one, np.ones(1)), np.ones(1)))
    expected = HotCall.HOT + 1 if traceable else calls  # eager calls, then one trace
    assert CALLS == {"encoder": expected, "decoder": expected}


def test_a_new_shape_that_cannot_be_traced_runs_as_the_model_runs():
    """A call hot on one channel count, then given another: the retrace leaves that dimension unknown
    and fails (Python arithmetic on it), while the model itself takes the input. The bridge gives the
    model's own answer, never the trace's error (it made a cropping model look as if it refused the size)."""
    def crop_to_three(x):
        width = x.shape[-1]  # None in a relaxed trace
        return x[..., :3] * float(3 - min(width, 3) + 1)

    call = HotCall(crop_to_three)
    for _ in range(HotCall.HOT + 1):
        call(tf.ones((2, 3)))
    assert all(shapes is None for shapes in call.seen.values()), "hot on 3 channels"
    np.testing.assert_array_equal(call(tf.ones((2, 4))).numpy(), crop_to_three(tf.ones((2, 4))).numpy())
