"""What every backend's broken-model module shares: contract groups, and the harness faults.

The faults are not contract bugs but outputs the harness itself must turn into one line per
contract: NaN or time-major logits, a model that raises, a factory that declines a family.
"""
from conformance.spec import Unsupported

AUTOREGRESSIVE = {"stepwise_equals_teacher_forced", "chunked_equals_teacher_forced", "greedy_cached_equals_recomputed"}
CACHE_BUG = AUTOREGRESSIVE | {"reordered_state_decodes_reordered_examples"}  # decoding on from a state
GRADIENTS = {"encoder_gradient_through_state", "future_tokens_do_not_change_past_gradients"}
PADDING = {"extra_padding_changes_nothing", "garbage_beyond_valid_length_changes_nothing"}
OUT_OF_VOCABULARY = {"out_of_vocabulary_source_raises", "out_of_vocabulary_target_raises"}
# A model consistent in itself that computes other mathematics than the specification's.
CROSS_FRAMEWORK = {"logits_match_reference", "greedy_tokens_match_reference", "golden_vectors"}


def fault_factories(broken, make_model, nan_logits, time_major_logits, raises_in_init_state):
    """Factories for the harness faults, given a backend's `broken(spec, **classes)`, its reference
    factory, and its three faulty Seq2SeqDecoder subclasses."""

    def factory(decoder):
        return lambda spec: broken(spec, Seq2SeqDecoder=decoder)

    def declines_transformer(spec):
        if spec.family == "transformer":
            raise Unsupported("this port has no Transformer yet")
        return make_model(spec)

    return factory(nan_logits), factory(time_major_logits), factory(raises_in_init_state), declines_transformer
