"""The two private Dash internals the dashboard relies on, in one place.

Dash 4's FastAPI backend has no public API for either: the request a callback runs for (the
session cookie and the Origin header come from it) and running its first-request setup now
(a mounted sub-app gets no ASGI lifespan event, and a deep link opened first would be served
before the pages' scripts exist). `dash` is pinned below its next major in pyproject.toml;
`tests/dashboard/test_dash_internals.py` fails loudly, naming this module, if they move.
"""

from __future__ import annotations

from typing import Any

from dash import Dash
from starlette.requests import Request


def current_request() -> Request:
    """The HTTP request the running callback answers."""
    from dash.backends._fastapi import get_current_request

    return get_current_request()


def finish_setup(app: Dash) -> None:
    """Dash's own first-request setup (assets, the pages router, the pages' callbacks) and
    the catch-all route for deep links (`/episodes/12?t=40`), run now."""
    backend: Any = app.backend
    for hook in backend._before_request_funcs:
        hook()
    backend._setup_catchall()
