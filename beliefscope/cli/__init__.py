"""The `beliefscope` command: the composition layer on top of every package.

This package is the only code allowed to know every other one (the import contract in
pyproject.toml says so and checks it): each subcommand lives in the module that owns its work
and exposes `configure(parser)` and `run(args) -> int`; `serve` and `demo` live here because
they put the server, the dashboard, ingest and the world together. Only the chosen subcommand is
imported, so `beliefscope --help` stays fast and a subcommand's heavy dependencies (torch,
MuJoCo, Dash) load only when it runs.
"""

from __future__ import annotations

import argparse
import sys
from types import ModuleType

from beliefscope.errors import BeliefscopeError

COMMANDS: dict[str, str] = {
    "world": "generate MuJoCo occlusion-world replay episodes",
    "train": "train the native RSSM on a replay directory",
    "ingest": "recompute belief traces of checkpoints x episodes into the store",
    "watch": "keep ingesting new checkpoints and episodes of a log dir",
    "probe": "what-if replays: dropout, delay, open-loop, belief decoding",
    "audit": "check checkpoints against their replay: alignment, resets, conventions, collapse",
    "score": "score review flags against ground truth",
    "export": "export traces and flags: CSV, Parquet, TensorBoard, W&B",
    "serve": "serve the REST API and the dashboard",
    "demo": "world + training + live ingest + dashboard in one command",
    "db": "store schema: upgrade, current",
    "token": "API tokens: create, list, revoke",
    "rules": "review-flag rules: list, set, apply",
}


def command_module(name: str) -> ModuleType:
    """The module of subcommand `name`, imported now (and only now)."""
    if name == "world":
        from beliefscope.world import cli as world

        return world
    if name == "train":
        from beliefscope.rssm import train

        return train
    if name == "ingest":
        from ingest import cli as ingest

        return ingest
    if name == "watch":
        from ingest import watch

        return watch
    if name == "probe":
        from ingest import probes_cli

        return probes_cli
    if name == "audit":
        from ingest import audit_cli

        return audit_cli
    if name == "score":
        from beliefscope.review import cli_score

        return cli_score
    if name == "export":
        from beliefscope.export import cli as export

        return export
    if name == "serve":
        from beliefscope.cli import serve

        return serve
    if name == "demo":
        from beliefscope.cli import demo

        return demo
    if name == "db":
        from beliefscope.store import cli as db

        return db
    if name == "token":
        from server import tokens_cli

        return tokens_cli
    if name == "rules":
        from beliefscope.review import cli_rules

        return cli_rules
    raise KeyError(name)


def build_parser(chosen: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="beliefscope", description="Belief-state forensics for RSSM world models."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            command_module(name).configure(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    chosen = next((a for a in argv if not a.startswith("-")), None)
    chosen = chosen if chosen in COMMANDS else None
    args = build_parser(chosen).parse_args(argv)
    try:
        return int(command_module(args.command).run(args) or 0)
    except BeliefscopeError as err:
        print(f"beliefscope {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
