"""State codecs: a codec is only ever handed the model's own arrays, so a constructor that needs framework
tensors serves as unflatten; a codec that raises is named; registering a class again replaces its codec,
with a warning where the code differs."""
import warnings

import numpy as np
import pytest

from conformance.trees import CODECS, Encoded, array_leaves, register_state_codec, tree_map

torch = pytest.importorskip("torch", reason="torch is not installed")


class TensorCache:
    """Takes torch tensors only, as Hugging Face's DynamicCache does."""

    def __init__(self, keys, values):
        if not (torch.is_tensor(keys) and torch.is_tensor(values)):
            raise TypeError(f"TensorCache holds torch tensors, not {type(keys).__name__}")
        self.keys, self.values = keys, values


register_state_codec(TensorCache, lambda c: ((c.keys, c.values), None), lambda aux, children: TensorCache(*children))


def to_numpy(tree):
    return tree_map(lambda x: x.numpy().copy() if torch.is_tensor(x) else x, tree)


def from_numpy(tree):
    return tree_map(lambda x: torch.from_numpy(x.copy()) if isinstance(x, np.ndarray) else x, tree)


def test_a_codec_gets_the_models_arrays_and_the_suite_keeps_its_numpy_copies_apart():
    state = (torch.ones(2, 3), TensorCache(torch.zeros(2, 1), torch.full((2, 1), 2.0)))
    seen = to_numpy(state)
    assert isinstance(seen[1], Encoded) and seen[1].cls is TensorCache
    assert [path for path, _ in array_leaves(seen)] == ["[0]", "[1][0]", "[1][1]"], "paths as through the object"
    back = from_numpy(tree_map(lambda x: x * 2 if isinstance(x, np.ndarray) else x, seen))
    assert isinstance(back[1], TensorCache) and torch.equal(back[1].values, torch.full((2, 1), 4.0))


def test_an_object_of_numpy_arrays_stays_itself():
    """A model whose own arrays are numpy ones: its codec sees numpy arrays, its own."""

    class NumpyCache:
        def __init__(self, keys):
            self.keys = np.asarray(keys)

    register_state_codec(NumpyCache, lambda c: ((c.keys,), None), lambda aux, children: NumpyCache(*children))
    copied = tree_map(np.copy, [NumpyCache(np.arange(3.0))])
    assert isinstance(copied[0], NumpyCache) and copied[0].keys.tolist() == [0.0, 1.0, 2.0]


def test_a_codec_that_raises_is_named():
    class Fragile:
        def __init__(self, keys):
            self.keys = keys

    register_state_codec(Fragile, lambda c: ((c.keys,), None), lambda aux, children: Fragile(*children, "one too many"))
    with pytest.raises(Exception, match=r"the state codec registered for .*Fragile raised in unflatten\(aux, children\): TypeError"):
        from_numpy(to_numpy(Fragile(torch.ones(1))))


def test_registering_a_class_again_replaces_its_codec_and_warns_where_the_code_differs():
    class Cache:
        def __init__(self, keys):
            self.keys = keys

    def flatten(c):
        return (c.keys,), None

    register_state_codec(Cache, flatten, lambda aux, children: Cache(*children))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        register_state_codec(Cache, flatten, CODECS[Cache][1])  # the same code again: a module imported twice
    with pytest.warns(UserWarning, match=r"a second state codec for .*Cache replaces the first"):
        register_state_codec(Cache, lambda c: ((c.keys * 0,), "new"), lambda aux, children: Cache(*children))
    assert to_numpy(Cache(torch.ones(2))).aux == "new" and to_numpy(Cache(torch.ones(2))).children[0].tolist() == [0.0, 0.0]
