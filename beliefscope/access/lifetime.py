"""Token lifetimes as people type them: `90m`, `12h`, `30d`, `2w`."""

from __future__ import annotations

import re
from datetime import timedelta

from beliefscope.errors import BadInputError

_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_LIFETIME = re.compile(r"^\s*(\d{1,6})\s*([mhdw])\s*$")


def parse_lifetime(text: str) -> timedelta:
    match = _LIFETIME.match(text.lower())
    if match is None or int(match.group(1)) == 0:
        raise BadInputError(
            f"expiry {text!r}: use a positive number and a unit, m, h, d or w (e.g. 30d)"
        )
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
