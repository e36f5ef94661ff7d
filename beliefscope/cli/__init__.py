"""The `beliefscope` command: the composition layer on top of every package.

This package is the only code allowed to know every other one (the import contract in
pyproject.toml says so and checks it): each subcommand lives in the module that owns its work
and exposes `configure(parser)` and `run(args) -> int`; `serve` and `demo` live here because
they put the server, the dashboard, ingest and the world together. Only the chosen subcommand is
imported, so `beliefscope --help` stays fast and a subcommand's heavy dependencies (torch,
MuJoCo, Dash) load only when it runs.

`--store URL` is added here, to every parser of a command that uses the store (the command's
and each of its actions'), so it is accepted in the same places everywhere: before the command,
after it, before or after the action.
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
    "db": "store schema and data: upgrade, current, backup, restore",
    "token": "API tokens: create (with a scope and expiry), list, revoke",
    "activity": "the activity log: who changed what, and when",
    "rules": "review-flag rules: list, set, apply",
    "runs": "runs in the store: list, delete",
}

STORELESS = frozenset({"world", "train"})
"""Commands that never open the store (and so take no --store)."""

STORE_HELP = (
    "SQLAlchemy URL of the store (default: BELIEFSCOPE_STORE, else SQLite at "
    "~/.beliefscope/beliefscope.db; the demo keeps its own)"
)


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
    if name == "activity":
        from server import activity_cli

        return activity_cli
    if name == "rules":
        from beliefscope.review import cli_rules

        return cli_rules
    if name == "runs":
        from beliefscope.cli import runs

        return runs
    raise KeyError(name)


def add_store_option(parser: argparse.ArgumentParser) -> None:
    """`--store` on `parser` and, recursively, on every parser of its sub-commands. Its
    default is suppressed on each of them, so a value given at any level survives the levels
    parsed after it; the top-level parser supplies the default (None)."""
    parser.add_argument("--store", default=argparse.SUPPRESS, metavar="URL", help=STORE_HELP)
    for action in parser._actions:  # argparse keeps sub-parsers only here
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                add_store_option(sub)


def build_parser(chosen: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="beliefscope", description="Belief-state forensics for RSSM world models."
    )
    parser.add_argument("--store", default=None, metavar="URL", help=STORE_HELP)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            command_module(name).configure(p)
            if name not in STORELESS:
                add_store_option(p)
    return parser


def chosen_command(argv: list[str]) -> str | None:
    """The subcommand named in `argv` (the first word that is not an option or the value of
    a top-level `--store`)."""
    words = iter(argv)
    for word in words:
        if word == "--store":
            next(words, None)
        elif not word.startswith("-"):
            return word if word in COMMANDS else None
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(chosen_command(argv)).parse_args(argv)
    try:
        return int(command_module(args.command).run(args) or 0)
    except BeliefscopeError as err:
        print(f"beliefscope {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
