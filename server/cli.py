"""`beliefscope serve`: the REST API and the dashboard in one uvicorn process."""

from __future__ import annotations

import argparse

from beliefscope.config import get_settings


def configure(parser: argparse.ArgumentParser) -> None:
    settings = get_settings()
    parser.add_argument("--store", default=None, help="store URL (default: BELIEFSCOPE_STORE)")
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

    from server.app import create_app

    settings = get_settings().model_copy(
        update={
            "host": args.host,
            "port": args.port,
            "open_reads": args.open_reads,
            **({"store": args.store} if args.store else {}),
        }
    )
    app = create_app(settings, dashboard=not args.no_dashboard)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=False)
    return 0
