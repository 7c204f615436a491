"""Every numeric tolerance of the suite, with the reason for it.

Errors are measured relative to the scale of the expected values:
    error = max|actual - expected| / max(1, max|expected|)
so a tolerance reads as "this many units of the logits' magnitude".

Two computations of the same thing (cached vs full pass, batched vs alone, padded vs not) differ
only by rounding. In float64 that is ~1e-15 here (measured on the reference families at logit
magnitudes 0.1-3: worst 7e-16); 1e-10 leaves five orders of headroom for deeper models, and a
structural bug that moves attention by 1e-5 moves the logits by ~1e-6, four orders above it.

float32 is the fallback for implementations that cannot run float64. Correct cached decoders of
well-known toolkits differ from their own full pass by up to 2e-6 at logits around 3 (7e-7
relative), batching alone moved one by 1.7e-6; 1e-5 relative (~80 float32 ulps) clears those.
It cannot see bugs whose effect is smaller than ~1e-5: the report marks such runs as float32.
"""

CLOSE = {"float64": 1e-10, "float32": 1e-5}

# Gradient check by central differences, (L(w + h d) - L(w - h d)) / 2h against grad . d.
# Truncation error is O(h^2); rounding error ~eps |L| / h, which the contract adds to the bound.
# ReLU makes L piecewise smooth: a kink inside [-h, h] biases the quotient by about half the
# slope jump (1e-5 relative was measured at h=1e-6, float64). The contract compares the quotients
# at h and h/2, which such a kink makes disagree, and then shrinks h along the same direction (a
# unit whose input sits ~1e-7 from zero puts a kink that close along every direction: seen once
# in 44 runs), then tries another direction.
FINITE_DIFFERENCE = {
    "float64": {"steps": (1e-7, 1e-8, 1e-9), "tolerance": 1e-6, "directions": 2},
    "float32": {"steps": (1e-3, 3e-4), "tolerance": 5e-2, "directions": 2},  # its bound absorbs kinks
}
