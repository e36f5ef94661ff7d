"""Containment: the server reads files only inside its registered data roots.

MLflow's long line of path-traversal CVEs came from checking a path before decoding it fully,
or before resolving symlinks. Here a path is percent-decoded until it stops changing, refused
if it holds a NUL, resolved to its real location (symlinks followed), and only then compared
with the real locations of the roots.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from urllib.parse import unquote

from beliefscope.errors import NotFoundError

_MAX_DECODES = 8


def fully_decoded(raw: str) -> str:
    """Percent-decode until the text stops changing (`%252e%252e` -> `%2e%2e` -> `..`)."""
    text = raw
    for _ in range(_MAX_DECODES):
        decoded = unquote(text)
        if decoded == text:
            return text
        text = decoded
    raise NotFoundError("path is encoded too many times")


def contained(raw: str | Path, roots: Iterable[Path]) -> Path:
    """The real path of `raw` when it exists inside one of `roots`; else `NotFoundError`
    (the same answer for "outside" and "missing", so probing learns nothing)."""
    text = fully_decoded(str(raw))
    if "\x00" in text or not text.strip():
        raise NotFoundError("no such file in the registered data roots")
    try:
        real = Path(text).expanduser().resolve(strict=True)
    except (OSError, RuntimeError):  # missing, a symlink loop, a name too long
        raise NotFoundError("no such file in the registered data roots") from None
    for root in roots:
        try:
            root_real = root.expanduser().resolve(strict=True)
        except (OSError, RuntimeError):
            continue
        if real == root_real or real.is_relative_to(root_real):
            return real
    raise NotFoundError("no such file in the registered data roots")
