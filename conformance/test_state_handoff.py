"""State handoff: the encoder's outputs reach the decoder through init_state, values and gradients."""
import numpy as np
import pytest

from conformance import tolerances
from conformance.inputs import CASES, other_tokens, random_batch


@pytest.mark.parametrize("case", CASES, ids=str)
def test_forward_chains_encoder_and_decoder(model, check, rng, case):
    """EncoderDecoder.forward(enc_X, dec_X, lens) == decoder(dec_X, init_state(encoder(enc_X, lens), lens))[0]."""
    batch = random_batch(rng, model.vocab, case)
    check.close(model.forward(batch), model.teacher_forced(batch), "forward vs encoder -> init_state -> decoder")


@pytest.mark.parametrize("case", CASES, ids=str)
def test_outputs_depend_on_source(model, check, rng, case):
    """Replacing every source token changes every example's logits."""
    batch = random_batch(rng, model.vocab, case)
    changed = batch.with_src(other_tokens(rng, batch.src, model.vocab, "src"))
    before, after = model.teacher_forced(batch), model.teacher_forced(changed)
    for i in range(case.batch):
        check.differ(after[i], before[i], f"example {i}'s logits after replacing all its source tokens")


@pytest.mark.parametrize("case", CASES, ids=str)
def test_init_state_keeps_encoder_outputs(model, check, rng, case):
    """encoder outputs are bit for bit the same after init_state(enc_outputs) and a decode from it."""
    batch = random_batch(rng, model.vocab, case)
    enc = model.encode(batch.src, batch.src_valid_len)
    before = model.to_numpy(enc)
    model.decode(batch.tgt, model.init_state(enc, batch.src_valid_len))
    check.trees_identical(model.to_numpy(enc), before, "encoder outputs after init_state and decoding")


def settled_slope(slope, draw_direction, steps, tolerance, noise_at, directions):
    """A central difference quotient that agrees with itself at half the step.

    A ReLU kink inside [-h, h] makes the quotients at h and h/2 disagree: then the step shrinks
    along the same direction, then another direction is drawn. Returns (direction, slope, noise)
    or (None, None, None) and what was tried.
    """
    tried = []
    for _ in range(directions):
        direction = draw_direction()
        for h in steps:
            coarse, fine = slope(direction, h), slope(direction, h / 2)
            if abs(coarse - fine) <= tolerance * abs(fine) + noise_at(h / 2):
                return (direction, fine, noise_at(h / 2)), tried
            tried.append(f"{coarse:.8g} at h={h:g} vs {fine:.8g} at h={h / 2:g}")
    return (None, None, None), tried


def test_encoder_gradient_through_state(model, check, rng):
    """d/dh L(w_enc + h d) at 0 == grad_enc L . d: gradients reach the encoder through the state,
    checked against central finite differences along a random direction d."""
    batch = random_batch(rng, model.vocab, CASES[1])
    cotangent = rng.standard_normal((*batch.tgt.shape, model.vocab.tgt_size))
    grads = model.gradients(batch, cotangent)["encoder"]
    steps, tolerance, directions = tolerances.FINITE_DIFFERENCE[model.precision].values()
    with model.weights_restored() as weights:

        def loss(direction, h):
            shifted = {name: (w + h * direction[name]).astype(w.dtype) for name, w in weights["encoder"].items()}
            model.set_weights({"encoder": shifted, "decoder": weights["decoder"]})
            return float(np.sum(model.forward(batch).astype(np.float64) * cotangent))

        def slope(direction, h):
            return (loss(direction, h) - loss(direction, -h)) / (2 * h)

        size = abs(loss(dict.fromkeys(weights["encoder"], 0.0), 0.0))
        (direction, numeric, noise), tried = settled_slope(
            slope,
            draw_direction=lambda: {name: rng.standard_normal(w.shape) for name, w in weights["encoder"].items()},
            steps=steps,
            tolerance=tolerance,
            noise_at=lambda h: 1e2 * np.finfo(model.precision).eps * size / h,  # rounding: eps |L| / h, with margin
            directions=directions,
        )
    if direction is None:
        check.fail(f"finite differences did not settle (kinks?): {'; '.join(tried)}")
    if abs(numeric) <= noise:
        check.fail(f"logits do not depend on the encoder's parameters (finite difference {numeric:.2e} <= noise {noise:.1e})")
    analytic = float(sum(np.sum(grads[name] * d) for name, d in direction.items()))
    if not abs(analytic - numeric) <= tolerance * abs(numeric) + noise:
        check.fail(
            f"gradient along a random direction of the encoder's parameters is {analytic:.10g}, finite differences "
            f"give {numeric:.10g}: relative error {abs(analytic - numeric) / abs(numeric):.2e} > {tolerance:.0e} ({model.precision})"
        )
