"""The Dash app: a shell (top bar, sign-in, page container) around the pages in `pages/`.

Dash 4 runs on FastAPI directly (`backend="fastapi"`); the command wiring
(`beliefscope.cli.serve`) mounts `app.server` at `/` beside the API, so one process serves both
and the frame player loads frames from the same origin. Nothing touches the store until a page
is requested.
"""

from __future__ import annotations

from pathlib import Path

import dash
from dash import Dash, Input, Output, State, dcc, html
from dash.exceptions import DependencyException
from starlette.requests import Request
from starlette.responses import JSONResponse

from beliefscope.access import Authorizer
from beliefscope.config import Settings
from beliefscope.store.engine import Store
from dashboard.context import Context
from dashboard.dash_internals import finish_setup

HERE = Path(__file__).parent

NAV = (
    ("Runs", "/"),
    ("Review", "/review"),
    ("Compare", "/compare"),
    ("Rules", "/rules"),
)


def create_dash(
    store: Store, settings: Settings, *, access: Authorizer, api_prefix: str = "/api/v1"
) -> Dash:
    """The dashboard reading `store` and authorizing with `access` (the API's policy); mount
    `app.server` (a FastAPI app) at `/`."""
    app = Dash(
        __name__,
        backend="fastapi",
        use_pages=True,
        pages_folder=str(HERE / "pages"),
        assets_folder=str(HERE / "assets"),
        title="Beliefscope",
        update_title="",
        suppress_callback_exceptions=True,
        compress=False,
        use_async=False,  # sync setup hooks, run below
    )
    app.server.state.beliefscope_dashboard = Context(
        store=store, settings=settings, access=access, api_prefix=api_prefix
    )
    app.layout = _shell
    app.server.add_exception_handler(DependencyException, _no_such_asset)
    _register_shell_callbacks(app)
    # Dash finishes its setup on its first request and adds the deep-link route on the ASGI
    # lifespan event, which a mounted sub-app never gets: do both now. Setting up now also binds
    # the pages' callbacks to this app even when a process builds several.
    finish_setup(app)
    return app


async def _no_such_asset(_request: Request, _err: Exception) -> JSONResponse:
    """A component-suite path Dash does not serve (`/_dash-component-suites/dash/..%2f..`)
    names nothing: 404, where Dash itself would answer 500."""
    return JSONResponse({"detail": "no such asset", "status": 404}, 404)


def _shell() -> html.Div:
    from dashboard import session

    links = [dcc.Link(label, href=href, className="bs-nav-link") for label, href in NAV]
    return html.Div(
        [
            html.Header(
                [
                    dcc.Link(
                        [html.Span("◉", className="bs-logo"), "Beliefscope"],
                        href="/",
                        className="bs-brand",
                    ),
                    html.Nav(links, className="bs-nav", id="bs-nav"),
                    html.Div(id="bs-crumbs", className="bs-crumbs"),
                    html.Div(
                        [
                            html.Span(id="bs-user", className="bs-user"),
                            dcc.Input(
                                id="bs-token",
                                type="password",
                                placeholder="API token",
                                className="bs-input bs-token",
                                debounce=True,
                            ),
                            html.Button("Sign in", id="bs-signin", className="bs-btn"),
                            html.Button(
                                "Sign out", id="bs-signout", className="bs-btn bs-btn-quiet"
                            ),
                        ],
                        className="bs-auth",
                        title=f"sign in with a token from `{session.token_command()}`",
                    ),
                ],
                className="bs-topbar",
            ),
            html.Main(dash.page_container, className="bs-main"),
            html.Div(id="bs-toast", className="bs-toast", role="status"),
            dcc.Location(id="bs-url", refresh="callback-nav"),
        ],
        className="bs-app",
    )


def _register_shell_callbacks(app: Dash) -> None:
    from dashboard import session

    @app.callback(
        Output("bs-user", "children"),
        Output("bs-token", "style"),
        Output("bs-signin", "style"),
        Output("bs-signout", "style"),
        Output("bs-toast", "children", allow_duplicate=True),
        Input("bs-url", "pathname"),
        Input("bs-signin", "n_clicks"),
        Input("bs-signout", "n_clicks"),
        Input("bs-token", "n_submit"),
        State("bs-token", "value"),
        prevent_initial_call="initial_duplicate",
    )
    def auth_bar(_path, _signin, _signout, _submit, token):
        trigger = dash.ctx.triggered_id
        message: str | html.Span = ""
        name = session.reviewer_name()
        try:
            if trigger in ("bs-signin", "bs-token") and token:
                name = session.sign_in(token)
                message = session.toast(f"signed in as {name}")
            elif trigger == "bs-signout":
                session.sign_out()
                name, message = None, session.toast("signed out")
        except session.NotAllowed as err:
            hint = "" if trigger == "bs-signout" else f"; `{session.token_command()}` makes one"
            message = session.toast(f"{err}{hint}", ok=False)
        hidden: dict[str, str] = {"display": "none"}
        shown: dict[str, str] = {}
        if name:
            return f"● {name}", hidden, hidden, shown, message
        return "read-only", shown, shown, hidden, message
