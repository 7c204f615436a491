"""State trees (tuples, lists, dicts, None, arrays) seen leaf by leaf, whatever the framework.

A state may also hold objects of the model's own (a key/value cache kept in a class, as Hugging Face's
`Cache`). The suite sees into such an object only through a state codec registered for its class;
any other object is an opaque leaf, which the state contracts refuse to pass over in silence.

A codec is only ever handed the model's own arrays. Where `tree_map` turns an object's arrays into
numpy ones (an adapter's `to_numpy`), the object becomes an `Encoded`: its class, the codec's aux data
and the numpy children, which the suite can compare, snapshot and reorder; where it turns them back
(`from_numpy`), the codec's unflatten rebuilds the object from the model's arrays. So a constructor
that needs framework tensors (`DynamicCache`'s) serves as unflatten as it is.
"""
from __future__ import annotations

import numbers
import warnings

import numpy as np
import optree

from .text import clean

NAMESPACE = "conformance"  # optree registry of the state codecs; the default registry stays untouched
CODECS: dict[type, tuple] = {}  # class -> (flatten, unflatten), as registered


class StateCodecError(Exception):
    """A registered state codec raised: the message names the class and the call."""


class Encoded:
    """An object of the model's own while the suite holds its arrays as numpy (see the module's doc)."""

    __slots__ = ("cls", "aux", "children")

    def __init__(self, cls: type, aux, children: tuple):
        self.cls, self.aux, self.children = cls, aux, tuple(children)

    def __repr__(self) -> str:
        return f"Encoded({qualified_name(self.cls)}, {len(self.children)} children)"


optree.register_pytree_node(Encoded, lambda e: (e.children, (e.cls, e.aux)),
                            lambda meta, children: Encoded(*meta, children), namespace=NAMESPACE)


def register_state_codec(cls: type, flatten, unflatten) -> type:
    """Let the suite see into instances of `cls` inside a decoder state.

    `flatten(obj) -> (children, aux)`: the arrays (or nested tuples/lists/dicts of arrays) the object
    holds, and whatever else is needed to rebuild it; `unflatten(aux, children) -> obj` builds a new
    object from them, always arrays of the model's own framework (the suite keeps its numpy copies
    apart). Neither may modify the object. Registering a class again replaces its codec, with a
    warning unless the new one is the same code (its module imported again).
    """
    previous = CODECS.get(cls)
    if previous is not None:
        if [code_of(f) for f in previous] != [code_of(f) for f in (flatten, unflatten)]:
            warnings.warn(f"a second state codec for {qualified_name(cls)} replaces the first", UserWarning, stacklevel=2)
        optree.unregister_pytree_node(cls, namespace=NAMESPACE)
    CODECS[cls] = (flatten, unflatten)
    optree.register_pytree_node(cls, lambda obj: codec_call(cls, "flatten", obj),
                                lambda aux, children: codec_call(cls, "unflatten", aux, children), namespace=NAMESPACE)
    return cls


def code_of(function) -> tuple:
    """What tells two registrations of one codec from two codecs: where the function is written, and its code."""
    code = getattr(function, "__code__", None)
    return (code.co_filename, code.co_firstlineno, code.co_code) if code else (id(function),)


def codec_call(cls: type, which: str, *args):
    """The registered codec's `which` ("flatten" or "unflatten"); its error names the codec."""
    try:
        return CODECS[cls][which == "unflatten"](*args)
    except Exception as exc:
        call = "flatten(obj)" if which == "flatten" else "unflatten(aux, children)"
        raise StateCodecError(f"the state codec registered for {qualified_name(cls)} raised in {call}: "
                              f"{clean(type(exc).__name__, 100)}: {clean(exc)}") from exc


def has_codec(x) -> bool:
    return type(x) in CODECS or isinstance(x, Encoded)


def tree_map(fn, tree):
    """Apply `fn` to every leaf; None stays None (it is no leaf), containers keep their type, and an
    object with a state codec is seen through (an `Encoded` while its arrays are numpy ones it did not have)."""
    return optree.tree_map(lambda x: map_object(fn, x) if has_codec(x) else fn(x), tree,
                           is_leaf=has_codec, none_is_leaf=False, namespace=NAMESPACE)


def map_object(fn, obj):
    """`fn` applied to the arrays of an object with a codec, or of its `Encoded` form: an `Encoded`
    while the result holds numpy arrays of the suite's, the object rebuilt by its codec otherwise."""
    if isinstance(obj, Encoded):
        cls, aux, children = obj.cls, obj.aux, obj.children
    else:
        cls = type(obj)
        children, aux = codec_call(cls, "flatten", obj)[:2]
    children = tuple(children)
    mapped = tree_map(fn, children)
    before, after = plain_leaves(children), plain_leaves(mapped)
    made_numpy = [isinstance(a, np.ndarray) and not isinstance(b, np.ndarray) for b, a in zip(before, after)]
    kept_numpy = [isinstance(a, np.ndarray) and isinstance(b, np.ndarray) for b, a in zip(before, after)]
    if any(made_numpy) or (isinstance(obj, Encoded) and any(kept_numpy)):
        return Encoded(cls, aux, mapped)
    return codec_call(cls, "unflatten", aux, mapped)


def plain_leaves(tree) -> list:
    """The leaves of `tree`, an object with a codec counting as one."""
    return optree.tree_leaves(tree, is_leaf=has_codec, none_is_leaf=False, namespace=NAMESPACE)


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
