"""State trees (tuples, lists, dicts, None, arrays) seen leaf by leaf, whatever the framework.

A state may also hold objects of the model's own (a key/value cache kept in a class, as Hugging Face's
`Cache`). The suite sees into such an object only through a state codec registered for its class;
any other object is an opaque leaf, which the state contracts refuse to pass over in silence.
"""
from __future__ import annotations

import numbers

import numpy as np
import optree

NAMESPACE = "conformance"  # optree registry of the state codecs; the default registry stays untouched


def register_state_codec(cls: type, flatten, unflatten) -> type:
    """Let the suite see into instances of `cls` inside a decoder state.

    `flatten(obj) -> (children, aux)`: the arrays (or nested tuples/lists/dicts of arrays) the object
    holds, and whatever else is needed to rebuild it; `unflatten(aux, children) -> obj` builds a new
    object from them (with numpy arrays while the suite inspects a state, native ones when it hands a
    state back). Neither may modify the object. Registering a class twice keeps the first codec.
    """
    try:
        optree.register_pytree_node(cls, flatten, unflatten, namespace=NAMESPACE)
    except ValueError:  # already registered (a factory module imported twice, say)
        pass
    return cls


def tree_map(fn, tree):
    """Apply `fn` to every leaf; None stays None (it is no leaf), containers keep their type."""
    return optree.tree_map(fn, tree, none_is_leaf=False, namespace=NAMESPACE)


def leaves_with_paths(tree) -> list[tuple[str, object]]:
    paths, leaves, _ = optree.tree_flatten_with_path(tree, none_is_leaf=False, namespace=NAMESPACE)
    return [(path_str(p), leaf) for p, leaf in zip(paths, leaves)]


def array_leaves(tree) -> list[tuple[str, np.ndarray]]:
    """(path, array) for every numpy leaf of an already converted tree; paths read like `[1][0]`."""
    return [(path, leaf) for path, leaf in leaves_with_paths(tree) if isinstance(leaf, np.ndarray)]


def opaque_leaves(tree) -> list[tuple[str, str]]:
    """(path, type name) of every leaf of a converted tree that is neither an array nor a plain value."""
    plain = (np.ndarray, np.generic, numbers.Number, str, bytes)
    return [(path, qualified_name(type(leaf))) for path, leaf in leaves_with_paths(tree) if not isinstance(leaf, plain)]


def qualified_name(cls: type) -> str:
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def path_str(path) -> str:
    return "".join(f"[{k!r}]" for k in path) or "(root)"


def map_arrays_with_path(fn, tree):
    """Apply `fn(path, array)` to numpy leaves only; Python scalars and other leaves are kept."""
    return optree.tree_map_with_path(
        lambda p, x: fn(path_str(p), x) if isinstance(x, np.ndarray) else x, tree, none_is_leaf=False, namespace=NAMESPACE
    )
