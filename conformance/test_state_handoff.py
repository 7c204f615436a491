"""State handoff: the encoder's outputs reach the decoder through init_state, values and gradients."""
import numpy as np
import pytest

from conformance.finite_differences import directional_check
from conformance.inputs import CASES, random_batch


@pytest.mark.parametrize("case", CASES, ids=str)
def test_forward_chains_encoder_and_decoder(model, check, rng, case):
    """EncoderDecoder.forward(enc_X, dec_X, lens) == decoder(dec_X, init_state(encoder(enc_X, lens), lens))[0]."""
    batch = random_batch(rng, model, case)
    check.close(model.forward(batch), model.teacher_forced(batch), "forward vs encoder -> init_state -> decoder")


@pytest.mark.parametrize("case", CASES, ids=str)
def test_outputs_depend_on_source(model, check, rng, case):
    """Replacing the whole source (every token, frame or image) changes every example's logits."""
    batch = random_batch(rng, model, case)
    changed = batch.with_src(model.source.other(rng, batch.src))
    before, after = model.teacher_forced(batch), model.teacher_forced(changed)
    for i in range(case.batch):
        check.differ(after[i], before[i], f"example {i}'s logits after replacing all its source tokens")


@pytest.mark.parametrize("case", CASES, ids=str)
def test_init_state_keeps_encoder_outputs(model, check, rng, case):
    """encoder outputs are bit for bit the same after init_state(enc_outputs) and a decode from it."""
    batch = random_batch(rng, model, case)
    enc = model.encode(batch.src, batch.src_valid_len)
    before = model.to_numpy(enc)
    model.decode(batch.tgt, model.init_state(enc, batch.src_valid_len))
    check.trees_identical(model.to_numpy(enc), before, "encoder outputs after init_state and decoding")


def test_encoder_gradient_through_state(model, check, rng):
    """d/dh L(w_enc + h d) at 0 == grad_enc L . d: gradients reach the encoder through the state,
    checked against central finite differences along a random direction d."""
    batch = random_batch(rng, model, CASES[1])
    cotangent = rng.standard_normal((*batch.tgt.shape, model.vocab.tgt_size))
    found = directional_check(model, batch, cotangent, model.gradients(batch, cotangent), ("encoder",), rng)
    slope, tolerance = found.slope, found.tolerance
    if slope is None:
        check.fail(f"finite differences did not settle (kinks?): {'; '.join(found.tried)}", compared=True)
    if abs(slope.numeric) <= slope.noise:
        check.fail(f"logits do not depend on the encoder's parameters (finite difference {slope.numeric:.2e} <= noise "
                   f"{slope.noise:.1e})", compared=True)
    if not found.agrees:
        check.fail(
            f"gradient along a random direction of the encoder's parameters is {found.analytic:.10g}, finite differences "
            f"give {slope.numeric:.10g} at h={slope.step:g}: relative error {found.error:.2e} > {tolerance:.0e} "
            f"({model.precision})", compared=True)
