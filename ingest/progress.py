"""Terminal progress for long ingests (tqdm on a terminal, quiet otherwise)."""

from __future__ import annotations

import sys
from types import TracebackType

from tqdm import tqdm


class Progress:
    def __init__(self, title: str) -> None:
        self._bar = tqdm(
            desc=title, unit="trace", disable=not sys.stderr.isatty(), dynamic_ncols=True
        )

    def start(self, total: int) -> None:
        self._bar.reset(total=total)

    def advance(self, units: int, description: str) -> None:
        self._bar.set_postfix_str(description, refresh=False)
        self._bar.update(units)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self._bar.close()
