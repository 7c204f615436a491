"""Reference implementations, one package per backend; each exposes `make_model(spec)`."""

# How every reference fuses attention projections, where the canonical weights (docs/weights.md)
# keep them apart: self-attention's W_qkv stacks W_q, W_k, W_v along its outputs, cross-attention's
# W_kv stacks W_k, W_v.
FUSED_PROJECTIONS = {"W_qkv": ("W_q", "W_k", "W_v"), "W_kv": ("W_k", "W_v")}


def unfused(name: str) -> list[str]:
    """The canonical names a reference parameter stacks, in order (`...W_qkv.bias` -> W_q, W_k, W_v
    biases): its own name unless it is a fused projection. `name` is already in canonical form."""
    prefix, projection, kind = name.rsplit(".", 2)
    return [f"{prefix}.{part}.{kind}" for part in FUSED_PROJECTIONS.get(projection, (projection,))]
