"""Correct Keras 3 models with a property the reference models lack (see tests/tricky/torch_models.py)."""
import keras
import numpy as np

from conformance import Declared
from impls.tensorflow.d2l import EncoderDecoder
from impls.tensorflow.factory import BUILDERS, dtype_policy


def tied_embeddings(spec):
    """One embedding layer for the encoder's and the decoder's tokens (BART), over one vocabulary."""
    size = max(spec.src_vocab, spec.tgt_vocab)
    spec = spec.replace(src_vocab=size, tgt_vocab=size)
    keras.utils.set_random_seed(spec.seed)
    with dtype_policy(spec.dtype):
        encoder, decoder = BUILDERS[spec.family](spec)
        decoder.embedding = encoder.embedding  # before the first call: Keras locks a built layer
        model = EncoderDecoder(encoder, decoder)
        one = np.zeros((1, 1), dtype=np.int32)
        model(one, one, np.ones(1, dtype=np.int32), training=False)
    return Declared(model, src_vocab=size, tgt_vocab=size)
