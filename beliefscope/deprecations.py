"""Old spellings that keep working, with a note: scripts written for them do not break.

`--probe SPEC` named a trace variant before `probe` came to mean only the forensic analyses
(`beliefscope probe decode|openloop|...`); it is now `--variant SPEC`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any


class _OldSpelling(argparse.Action):
    def __init__(self, *args: Any, new: str, append: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.new, self.append = new, append

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        print(f"{parser.prog}: {option_string} is deprecated, use {self.new}", file=sys.stderr)
        if self.append:
            values = [*(getattr(namespace, self.dest) or []), values]
        setattr(namespace, self.dest, values)


def old_option(
    parser: argparse.ArgumentParser, old: str, new: str, *, dest: str, append: bool = False
) -> None:
    """Accept `old` as a hidden spelling of option `new` (same destination; appending when
    `new` appends), noting on stderr that it is deprecated."""
    parser.add_argument(
        old, dest=dest, action=_OldSpelling, new=new, append=append, help=argparse.SUPPRESS
    )
