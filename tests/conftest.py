import pytest

# Frameworks are imported once, before pytester's in-process runs snapshot sys.modules:
# re-importing torch inside a run would fail.
import torch  # noqa: F401

pytest_plugins = ["pytester"]
