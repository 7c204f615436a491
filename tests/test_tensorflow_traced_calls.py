"""The TensorFlow bridge runs the calls of a model that declares `traceable = True` (the references) as
tf.function graphs once they are hot, and every other model eagerly, exactly as written: a graph runs
a Python side effect only while it is traced."""
import numpy as np
import pytest

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

import impls.tensorflow  # noqa: E402
from conformance.bridges import as_adapter, seed_frameworks  # noqa: E402
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
        seed_frameworks(i)  # one round a "contract": the calls switch between rounds
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
    for i in range(calls):
        seed_frameworks(i)
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
    for i in range(HotCall.HOT + 1):
        seed_frameworks(i)
        call(tf.ones((2, 3)))
    assert all(shapes is None for shapes in call.seen.values()), "hot on 3 channels"
    np.testing.assert_array_equal(call(tf.ones((2, 4))).numpy(), crop_to_three(tf.ones((2, 4))).numpy())


def test_calls_switch_to_the_trace_only_between_rounds():
    """A contract compares two calls bit for bit (test_determinism, test_state_reuse), and a graph rounds
    differently from the eager ops: a call that gets hot within a round stays eager to the round's end,
    and runs traced from the next round on. (Switching at once made `-k eval_calls_agree` fail the
    TensorFlow Transformer reference by 7.9e-16.)"""
    call = HotCall(lambda x: x + (1.0 if tf.executing_eagerly() else 2.0))  # which way it ran, in its value
    ran = []
    for i in range(2):
        seed_frameworks(i)
        ran.append([float(call(tf.zeros(()))) for _ in range(HotCall.HOT + 2)])  # hot after the HOT-th
    assert ran == [[1.0] * (HotCall.HOT + 2), [2.0] * (HotCall.HOT + 2)], f"1: eager, 2: traced, by round: {ran}"


@pytest.mark.parametrize("keras_name", ["keras", "tf_keras"])
def test_seeding_draws_what_set_random_seed_draws_and_keeps_the_kernel_cache_for_a_new_seed(keras_name, monkeypatch):
    """The contracts seed the frameworks before each one (conformance/plugin.py); the bridges set
    TensorFlow's global seed without tf.random.set_seed, which empties the kernel cache, where the seed
    is new to the process. Unseeded and op-seeded random ops and the Keras module's global generator (Keras
    3: keras.random; Keras 2: a dropout layer) then draw what they draw after its own set_random_seed: for
    a new seed, and for one set before."""
    keras_module = pytest.importorskip(keras_name)
    from conformance.bridges import tensorflow_bridge, tf_keras_bridge
    bridge = tensorflow_bridge if keras_name == "keras" else tf_keras_bridge
    dropout = keras_module.layers.Dropout(0.5)  # Keras 3's keeps a generator of its own, seeded when made

    def draws():
        by_keras = keras.random.uniform((8,)) if keras_name == "keras" else dropout(tf.ones((1, 8)), training=True)
        return np.concatenate([tf.random.uniform((4,)).numpy(), tf.random.uniform((4,), seed=1).numpy(), np.ravel(by_keras)])

    empties = []
    monkeypatch.setattr(tf.random, "set_seed", lambda n, set_seed=tf.random.set_seed: empties.append(n) or set_seed(n))
    seed = int.from_bytes(np.random.default_rng().bytes(4), "little") >> 1  # new to this process
    tf.random.set_seed(seed + 1)  # someone else's seed (n, perhaps): the bridge's next one empties the cache
    bridge.seed(seed - 1)
    draws()
    bridge.seed(seed)
    new = draws()
    assert empties == [seed + 1, seed - 1], f"the kernel cache was emptied for seeds {empties}, not for {[seed + 1, seed - 1]}"
    keras_module.utils.set_random_seed(seed)
    expected = draws()
    np.testing.assert_array_equal(new, expected, err_msg=f"draws after the bridge's seed({seed}), a seed new to the process")
    bridge.seed(seed)
    np.testing.assert_array_equal(draws(), expected, err_msg=f"draws after the bridge's seed({seed}) a second time")


def test_seeding_both_keras_bridges_empties_the_kernel_cache_only_for_a_seed_set_before(monkeypatch):
    """With Keras 2 and Keras 3 loaded (a Keras 2 model's run), seed_frameworks seeds TensorFlow through
    both bridges: the second must not take the seed for one set before, nor empty the cache again."""
    pytest.importorskip("tf_keras")
    from conformance import bridges
    empties = []
    monkeypatch.setattr(tf.random, "set_seed", lambda n, set_seed=tf.random.set_seed: empties.append(n) or set_seed(n))
    seed = int.from_bytes(np.random.default_rng().bytes(4), "little") >> 1
    tf.random.set_seed(seed - 1)  # as a factory might: the next round empties the cache
    for n in (seed, seed + 1, seed):
        bridges.seed_frameworks(n)
    assert {"tensorflow_bridge", "tf_keras_bridge"} <= {b.__name__.rsplit(".")[-1] for b in bridges.loaded_bridges()}
    assert empties == [seed - 1, seed, seed], f"the cache was emptied for seeds {empties}: once per round where it must be, expected"
