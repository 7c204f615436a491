"""Locating the batch axis of every leaf of a state tree, and reordering a state along it."""
from __future__ import annotations

import numpy as np

from .trees import array_leaves, map_arrays_with_path


def batch_axes(tree_a, tree_b, batch_a: int, batch_b: int) -> tuple[dict[str, int], list[str]]:
    """Compare the same tree built for two batch sizes (numpy trees).

    Returns ({leaf path: batch axis}, [problems]). A leaf's batch axis is the one axis whose
    length changed from batch_a to batch_b. 0-d leaves (a step counter, say) are shared by the
    whole batch and need none.
    """
    leaves_a, leaves_b = array_leaves(tree_a), array_leaves(tree_b)
    if [p for p, _ in leaves_a] != [p for p, _ in leaves_b]:
        return {}, [f"the tree has leaves {[p for p, _ in leaves_a]} at batch {batch_a} but {[p for p, _ in leaves_b]} at batch {batch_b}"]
    axes, problems = {}, []
    for (path, a), (_, b) in zip(leaves_a, leaves_b):
        if a.ndim == 0 and b.ndim == 0:
            continue
        changed = [i for i, (n, m) in enumerate(zip(a.shape, b.shape)) if n != m] if a.ndim == b.ndim else None
        if changed is None or len(changed) != 1 or (a.shape[changed[0]], b.shape[changed[0]]) != (batch_a, batch_b):
            problems.append(f"leaf {path} has shape {a.shape} at batch {batch_a} and {b.shape} at batch {batch_b}")
        else:
            axes[path] = changed[0]
    return axes, problems


def take_along_batch(tree, axes: dict[str, int], index) -> object:
    """The numpy tree with every leaf's batch axis indexed by `index` (as beam search reorders)."""
    return map_arrays_with_path(lambda path, a: np.take(a, index, axis=axes[path]) if path in axes else a, tree)


def floating_leaf_dtypes(tree) -> dict[str, str]:
    return {path: str(a.dtype) for path, a in array_leaves(tree) if np.issubdtype(a.dtype, np.floating)}
