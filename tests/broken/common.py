"""What every backend's broken-model module shares: contract groups, and the harness faults.

The faults are not contract bugs but outputs the harness itself must turn into one line per
contract: NaN or time-major logits, a model that raises, a factory that declines a family.
"""
import numpy as np

from conformance import canonical
from conformance.spec import Unsupported, declares_canonical_weights

AUTOREGRESSIVE = {"stepwise_equals_teacher_forced", "chunked_equals_teacher_forced", "greedy_cached_equals_recomputed"}
# A state that decodes on wrongly once reordered too (memory kept on the module, not in the state).
CACHE_BUG = AUTOREGRESSIVE | {"reordered_state_decodes_reordered_examples"}
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


def converted(make_model, load_canonical, transform):
    """A factory whose canonical-weights converter applies `transform(name, array, spec)` to each
    weight on its way in: a converter bug, in a model that is otherwise the backend's reference."""

    @declares_canonical_weights
    def factory(spec):
        model = make_model(spec.replace(weights=None))
        if spec.weights is not None:
            weights = canonical.load(spec.weights, spec)
            load_canonical(model, {name: transform(name, value, spec) for name, value in weights.items()})
        return model

    return factory


def reset_and_update_rows_swapped(name, value, spec):
    """Keras orders a GRU's gate rows update, reset, new; a converter that forgot it swaps the first two."""
    if ".rnn." not in name:
        return value
    h = spec.num_hiddens
    return np.concatenate([value[h : 2 * h], value[:h], value[2 * h :]])
