"""The private Dash internals `dashboard.dash_internals` wraps are still where it expects them.
If this fails after a Dash upgrade, update that module (and the pin in pyproject.toml)."""

from __future__ import annotations

import dash

MOVED = "Dash moved an internal dashboard/dash_internals.py relies on: update that module"


def test_the_request_of_a_callback_is_where_we_read_it() -> None:
    from dash.backends import _fastapi

    assert callable(getattr(_fastapi, "get_current_request", None)), MOVED


def test_the_first_request_setup_is_where_we_run_it() -> None:
    app = dash.Dash(__name__, backend="fastapi")
    backend = app.backend
    hooks = getattr(backend, "_before_request_funcs", None)
    assert isinstance(hooks, list) and all(callable(h) for h in hooks), MOVED
    assert callable(getattr(backend, "_setup_catchall", None)), MOVED
