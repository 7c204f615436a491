"""Factories whose --impl names carry non-ASCII letters and punctuation, which pytest escapes or keeps
in its node ids: the suite must attribute their results, crashes included, by structure."""
from tests.broken import faulty
from tests.broken.faulty import segfaults_in_decoder as sëgv  # noqa: F401
from impls.torch import make_model as wörks  # noqa: F401

# Names no `def` can spell, reachable as module:factory all the same.
globals()["sëgv-[x]::y"] = faulty.segfaults_in_decoder
globals()["wörks-[x]::y"] = wörks
