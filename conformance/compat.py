"""The one place framework import quirks live."""


def import_mxnet():
    """MXNet 1.9.1 still uses `np.bool`, removed in numpy 1.24: alias it before the import."""
    import numpy as np

    if "bool" not in np.__dict__:  # hasattr() would itself warn about the removed alias
        np.bool = bool
    import mxnet

    return mxnet
