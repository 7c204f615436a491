"""Reference implementations, one package per backend; each exposes `make_model(spec)`."""
import functools

# How every reference fuses attention projections, where the canonical weights (docs/weights.md)
# keep them apart: self-attention's W_qkv stacks W_q, W_k, W_v along its outputs, cross-attention's
# W_kv stacks W_k, W_v.
FUSED_PROJECTIONS = {"W_qkv": ("W_q", "W_k", "W_v"), "W_kv": ("W_k", "W_v")}


def unfused(name: str) -> list[str]:
    """The canonical names a reference parameter stacks, in order (`...W_qkv.bias` -> W_q, W_k, W_v
    biases): its own name unless it is a fused projection. `name` is already in canonical form."""
    prefix, projection, kind = name.rsplit(".", 2)
    return [f"{prefix}.{part}.{kind}" for part in FUSED_PROJECTIONS.get(projection, (projection,))]


# The speech family's subsampling (docs/weights.md): two convolutions over time, kernel 3, stride 2,
# zero padding 1. Each maps L frames to (L - 1) // 2 + 1 positions.
def conv_lengths(lengths):
    return (lengths - 1) // 2 + 1


def speech_encoder_lengths(lengths):
    """Encoder output lengths of the speech family for source lengths in frames: ~L / 4."""
    return conv_lengths(conv_lengths(lengths))


ENCODER_LENGTHS = {"speech": speech_encoder_lengths}  # families whose encoder changes the time axis


def reference_factory(make_model):
    """What `--impl=<backend>` runs: `make_model(spec)`, declaring what the suite cannot know of a
    reference (conformance.Declared): that it holds `spec.weights` when given one, and the encoder
    output lengths of a family whose encoder subsamples. Callers of `make_model` get the bare model."""
    from conformance.spec import Declared

    @functools.wraps(make_model)
    def factory(spec):
        model = make_model(spec)
        declared = {"canonical_weights": spec.weights is not None, "encoder_lengths": ENCODER_LENGTHS.get(spec.family)}
        return Declared(model, **declared) if any(declared.values()) else model

    return factory
