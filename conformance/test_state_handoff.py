"""State handoff: the encoder's outputs reach the decoder through init_state, values and gradients."""
import numpy as np
import pytest

from conformance import tolerances
from conformance.inputs import CASES, other_tokens, random_batch


@pytest.mark.parametrize("case", CASES, ids=str)
def test_forward_chains_encoder_and_decoder(model, check, rng, case):
    """EncoderDecoder.forward(enc_X, dec_X, lens) == decoder(dec_X, init_state(encoder(enc_X, lens), lens))[0]."""
    batch = random_batch(rng, model.spec, case)
    check.close(model.forward(batch), model.teacher_forced(batch), "forward vs encoder -> init_state -> decoder")


@pytest.mark.parametrize("case", CASES, ids=str)
def test_outputs_depend_on_source(model, check, rng, case):
    """Replacing every source token changes every example's logits."""
    batch = random_batch(rng, model.spec, case)
    changed = batch.with_src(other_tokens(rng, batch.src, model.spec.src_vocab))
    before, after = model.teacher_forced(batch), model.teacher_forced(changed)
    for i in range(case.batch):
        check.differ(after[i], before[i], f"example {i}'s logits after replacing all its source tokens")


@pytest.mark.parametrize("case", CASES, ids=str)
def test_init_state_keeps_encoder_outputs(model, check, rng, case):
    """encoder outputs are bit for bit the same after init_state(enc_outputs) and a decode from it."""
    batch = random_batch(rng, model.spec, case)
    enc = model.encode(batch.src, batch.src_valid_len)
    before = model.to_numpy(enc)
    model.decode(batch.tgt, model.init_state(enc, batch.src_valid_len))
    check.trees_identical(model.to_numpy(enc), before, "encoder outputs after init_state and decoding")


def test_encoder_gradient_through_state(model, check, rng):
    """d/dh L(w_enc + h d) at 0 == grad_enc L . d: gradients reach the encoder through the state,
    checked against central finite differences along a random direction d."""
    batch = random_batch(rng, model.spec, CASES[1])
    cotangent = rng.standard_normal((*batch.tgt.shape, model.spec.tgt_vocab))
    grads = model.gradients(batch, cotangent)["encoder"]
    step, tolerance = tolerances.FINITE_DIFFERENCE[model.dtype].values()
    with model.weights_restored() as weights:
        direction = {name: rng.standard_normal(w.shape) for name, w in weights["encoder"].items()}

        def loss(h):
            shifted = {name: (w + h * direction[name]).astype(w.dtype) for name, w in weights["encoder"].items()}
            model.set_weights({"encoder": shifted, "decoder": weights["decoder"]})
            return float(np.sum(model.forward(batch).astype(np.float64) * cotangent))

        numeric = (loss(step) - loss(-step)) / (2 * step)
        analytic = float(sum(np.sum(grads[name] * d) for name, d in direction.items()))
        # What rounding alone can make of the difference quotient: eps * |L| / h, with margin.
        noise = 1e3 * np.finfo(model.dtype).eps * abs(loss(0.0)) / step
    if abs(numeric) <= noise:
        check.fail(f"logits do not depend on the encoder's parameters (finite difference {numeric:.2e} <= noise {noise:.1e})")
    error = abs(analytic - numeric) / abs(numeric)
    if not error <= tolerance:
        check.fail(
            f"gradient along a random direction of the encoder's parameters is {analytic:.6g}, finite differences "
            f"give {numeric:.6g}: relative error {error:.2e} > {tolerance:.0e} ({model.dtype})"
        )
