"""The one place framework import quirks live."""
from __future__ import annotations

import contextlib
import os
import sys

# MXNet's operator threads as fixed when it loaded through import_mxnet: None where its environment
# did not say (MXNet's own default then) or it was imported some other way.
mxnet_threads: int | None = None


def import_mxnet():
    """MXNet 1.9.1 still uses `np.bool`, removed in numpy 1.24: alias it before the import.
    MXNet also fixes the threads its engine's workers run operators on when it loads (OpenMP's and its
    bundled OpenBLAS's); MXSetNumOMPThreads afterwards reaches only the calling thread. So the count
    the suite asks for (conformance.bridges.threads) is put in the environment it reads then."""
    import numpy as np

    if "bool" not in np.__dict__:  # hasattr() would itself warn about the removed alias
        np.bool = bool
    if "mxnet" not in sys.modules:
        from conformance import bridges

        global mxnet_threads
        with mxnet_load_environment(bridges.threads):
            mxnet_threads = threads_from_environment()
            import mxnet  # noqa: F401
    import mxnet

    return mxnet


def threads_from_environment() -> int | None:
    """The operator threads MXNet takes from the environment as it loads: OMP_NUM_THREADS where set
    (MXNET_OMP_MAX_THREADS is then ignored), else MXNET_OMP_MAX_THREADS, else None (its default)."""
    for name in ("OMP_NUM_THREADS", "MXNET_OMP_MAX_THREADS"):
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return None


@contextlib.contextmanager
def mxnet_load_environment(threads: int | None):
    """The environment MXNet reads when it loads, for `threads` operator threads (None: as it is)."""
    if threads is None:
        yield
        return
    names = ("OMP_NUM_THREADS", "MXNET_OMP_MAX_THREADS", "OPENBLAS_NUM_THREADS")
    saved = {name: os.environ.get(name) for name in names}
    os.environ.pop("OMP_NUM_THREADS", None)  # where set, MXNet follows it instead of its own maximum
    os.environ.update(MXNET_OMP_MAX_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads))
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
