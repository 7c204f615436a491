"""Text a model controls (exception messages, `Unsupported` reasons) on its way to the terminal and
the reports: one line of printable characters, of a readable length, and escaped for Markdown.

A model's text may hold terminal control sequences (clear screen, OSC-8 hyperlinks, a bell,
backspaces over what was printed before) or markup (an `<img>`, a table row, a heading); shown raw,
it could hide or forge verdicts. The suite's own colours are added after this, by rich.
"""
from __future__ import annotations

import re

LIMIT = 300  # characters of a model's text kept in a verdict: a readable line, not a 100 KB dump

CONTROLS = re.compile(
    r"""\x1b\[[0-?]*[ -/]*[@-~]              # CSI: colours, clear screen, cursor moves
      | \x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?   # OSC up to BEL or ST: window titles, OSC-8 hyperlinks
      | \x1b[PX^_][^\x1b]*(?:\x1b\\)?        # DCS, SOS, PM, APC up to ST
      | \x1b[ -/]*[0-~]?                     # any other escape (ESC c resets the terminal)
      | \x9b[0-?]*[ -/]*[@-~]                # CSI in its 8-bit form
      | [\x00-\x08\x0e-\x1f\x7f-\x9f]        # other C0 and C1 controls: bell, backspace, ...
      | [\u202a-\u202e\u2066-\u2069]         # bidirectional overrides: text shown other than it reads
    """,
    re.VERBOSE,
)


def clean(text: str, limit: int | None = LIMIT) -> str:
    """`text` without control sequences, its lines and runs of white space joined by one space, cut
    to `limit` characters (None: uncut) with a note of how much was cut."""
    text = " ".join(CONTROLS.sub("", str(text)).split())
    if limit is not None and len(text) > limit:
        return f"{text[:limit]}... ({len(text) - limit} more characters)"
    return text


MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>|~#&!])")


def markdown(text: str) -> str:
    """Text shown as itself in Markdown (CommonMark and GitHub's): every character that could start
    emphasis, code, a link or image, HTML, an entity, a table cell or a heading is escaped."""
    return MARKDOWN_SPECIAL.sub(r"\\\1", clean(text, limit=None))


def code_span(text: str) -> str:
    """`text` as a Markdown code span, whatever backticks it holds."""
    text = clean(text, limit=None)
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"
