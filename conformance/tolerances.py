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

# Two implementations from the same canonical weights (conformance/test_cross_framework.py): the same
# mathematics in another order of operations, so again only rounding, and CLOSE's bounds hold.
# Measured on the six families, teacher-forced, every pair of numpy, torch, tensorflow and mxnet:
# float64 <= 2.1e-15, except 1.4e-13 for MXNet's Transformers (its LayerNorm keeps eps as a C float,
# 9.99999975e-06); a float32 reference against the float64 specification <= 9.2e-7. A convention
# wrong anywhere (gate order, a transposed projection, pre-norm) moves logits by 1e-1 and more; a
# position table rounded to float32 inside a float64 model moved them by 6e-9, still caught.
AGREE = CLOSE

# Gradient check by central differences (conformance/finite_differences.py): a quotient that agrees
# with the one at half its step to tolerance / 4 is compared with grad . d within `tolerance`, plus
# the measured rounding of L divided by h. Steps start where truncation and ReLU kinks are small:
# in float64 at h=1e-7 the quotients of the reference families agree with grad . d to ~1e-9 of
# |grad|. In float32 a step of 1e-3 along a random direction crosses many ReLU kinks of a
# Transformer (12% error measured); at 3e-4 and below errors stayed under 5e-3 of |grad| for the
# float32 references and a float32-softmax model, with rounding at 3e-5 still below 5e-2.
# Directions: one whose quotients never settle gives way to another.
FINITE_DIFFERENCE = {
    "float64": {"steps": (1e-7, 1e-8, 1e-9), "tolerance": 1e-6, "directions": 2},
    "float32": {"steps": (3e-4, 1e-4, 3e-5), "tolerance": 5e-2, "directions": 2},
}
