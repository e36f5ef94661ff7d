"""`beliefscope serve`: the REST API and the dashboard in one uvicorn process.

`build_app` puts the two together: the API (`server.app.create_app`) and the dashboard mounted
at `/` with the API's own access policy (and its inline scripts' hashes added to the API's
Content-Security-Policy), so neither package imports the other.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from beliefscope.config import Settings, get_settings

if TYPE_CHECKING:
    from fastapi import FastAPI

    from beliefscope.store.engine import Store


def build_app(
    settings: Settings | None = None,
    *,
    store: Store | None = None,
    dashboard: bool = True,
    webhook_interval_s: float = 2.0,
) -> FastAPI:
    """The API for `settings` (see `create_app`), with the dashboard at `/` unless told not."""
    from server.app import API_PREFIX, create_app

    app = create_app(settings, store=store, webhook_interval_s=webhook_interval_s)
    if dashboard:
        from dashboard.app import create_dash

        ctx = app.state.ctx
        dash_app = create_dash(ctx.store, ctx.settings, access=ctx.access, api_prefix=API_PREFIX)
        ctx.content_policy.script_hashes.extend(dash_app.csp_hashes())
        app.mount("/", dash_app.server)
    return app


def configure(parser: argparse.ArgumentParser) -> None:
    settings = get_settings()
    parser.add_argument("--host", default=settings.host, help="bind address (default %(default)s)")
    parser.add_argument("--port", type=int, default=settings.port, help="(default %(default)s)")
    parser.add_argument(
        "--open-reads",
        action=argparse.BooleanOptionalAction,
        default=settings.open_reads,
        help="allow reads without a token (default: only on a loopback bind)",
    )
    parser.add_argument("--no-dashboard", action="store_true", help="serve the API only")
    parser.add_argument("--log-level", default="info")


def run(args: argparse.Namespace) -> int:
    import uvicorn

    settings = get_settings().model_copy(
        update={
            "host": args.host,
            "port": args.port,
            "open_reads": args.open_reads,
            **({"store": args.store} if args.store else {}),
        }
    )
    app = build_app(settings, dashboard=not args.no_dashboard)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=False)
    return 0
