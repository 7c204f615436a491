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
# An encoder whose outputs depend on the other examples of the batch: the decoder state it hands over
# reorders with the batch all the same, so only the example alone differs.
BATCH_DEPENDENT = {"example_alone_equals_example_in_batch"}

# Bugs of sources that are not token ids (issue 17), one class each, and the contracts that catch them:
# {factory name: (family, expected failures)}. Every backend's module defines a factory of each name
# (`CASES` then takes them with `source_cases`), so the same bug is caught the same way everywhere.
SOURCE_BUGS = {
    # The subsampled lengths scaled from the padded width, ceil(L * positions / frames) (ESPnet #6600,
    # WeNet #1513): right at widths that are multiples of 4, one position too many at others. With
    # padded frames zeroed before each convolution that position holds no garbage: only another
    # padded width shows it.
    "speech_lengths_from_padded_width": ("speech", {"extra_padding_changes_nothing"}),
    # Padded frames leak through the convolutions (not zeroed before each, torchaudio #2242's class).
    "speech_convolution_reads_padding": ("speech", PADDING),
    # Per-utterance feature normalisation (mean and variance over time) computed over the padded width.
    "speech_normalises_over_padded_time": ("speech", PADDING),
    # The encoder masks, but cross-attention reads every memory position (Optimum #775): the positions
    # past a length hold no garbage here (see above), their number changes with the padded width.
    "speech_cross_attention_ignores_lengths": ("speech", {"extra_padding_changes_nothing"}),
    # Sensitivity: an off-by-one mask lets the first padded frame into the convolutions, scaled by 1e-6
    # (a leak a loose tolerance would hide). Odd lengths put that frame in a valid position's window.
    "speech_leaks_one_padded_frame_at_a_millionth": ("speech", PADDING),
    # Features normalised per utterance (mean and variance over its valid frames only) would be right;
    # over every valid frame of the batch, an utterance's transcript depends on its neighbours
    # (the batch-size dependence of ESPnet #6600, WeNet #1513, SpeechBrain #1597).
    "speech_normalises_over_the_batch": ("speech", BATCH_DEPENDENT),
    # Declared encoder lengths L // 4 where two stride-2 convolutions give ceil(L / 4).
    "speech_declares_floor_encoder_lengths": ("speech", {"encoder_lengths_are_as_declared"}),
    # Reads the first num_features features of whatever it is given, zero-padding fewer.
    "speech_crops_features": ("speech", {"wrong_source_size_raises"}),
    # Reads the first `channels` channels of whatever image it is given (an RGBA or grey image taken silently).
    "captioning_crops_channels": ("captioning", {"wrong_source_size_raises"}),
    # BatchNorm normalises with the batch's statistics in evaluation (no running statistics used).
    "captioning_batch_statistics_in_eval": ("captioning", BATCH_DEPENDENT),
    # BatchNorm left in training mode: batch statistics, and its running statistics updated by every call.
    "captioning_batchnorm_in_training_mode": ("captioning", BATCH_DEPENDENT | {"eval_calls_leave_model_unchanged"}),
    # A decoder that counts its calls in a buffer: nothing it computes reads it, only the model changes.
    "transformer_counts_calls_in_a_buffer": ("transformer", {"eval_calls_leave_model_unchanged"}),
}


def source_cases(module) -> list[tuple[str, str, set[str]]]:
    """CASES entries for every SOURCE_BUGS factory, each of which `module` must define."""
    missing = [name for name in SOURCE_BUGS if not callable(getattr(module, name, None))]
    assert not missing, f"{module.__name__} lacks the source bug factories {missing}"
    return [(name, family, expected) for name, (family, expected) in SOURCE_BUGS.items()]


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
