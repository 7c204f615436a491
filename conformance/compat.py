"""The one place framework import quirks live."""


def import_mxnet():
    """MXNet 1.9.1 still uses `np.bool`, removed in numpy 1.24: alias it before the import."""
    import numpy as np

    if not hasattr(np, "bool"):
        np.bool = bool
    import mxnet

    return mxnet
