"""State trees (tuples, lists, dicts, None, arrays) seen leaf by leaf, whatever the framework."""
from __future__ import annotations

import numpy as np
import optree


def tree_map(fn, tree):
    """Apply `fn` to every leaf; None stays None (it is no leaf), containers keep their type."""
    return optree.tree_map(fn, tree, none_is_leaf=False)


def array_leaves(tree) -> list[tuple[str, np.ndarray]]:
    """(path, array) for every numpy leaf of an already converted tree; paths read like `[1][0]`."""
    paths, leaves, _ = optree.tree_flatten_with_path(tree, none_is_leaf=False)
    return [(path_str(p), leaf) for p, leaf in zip(paths, leaves) if isinstance(leaf, np.ndarray)]


def path_str(path) -> str:
    return "".join(f"[{k!r}]" for k in path) or "(root)"


def map_arrays_with_path(fn, tree):
    """Apply `fn(path, array)` to numpy leaves only; Python scalars and other leaves are kept."""
    return optree.tree_map_with_path(
        lambda p, x: fn(path_str(p), x) if isinstance(x, np.ndarray) else x, tree, none_is_leaf=False
    )
