"""The `beliefscope` command.

Each subcommand lives in the module that owns its work and exposes `configure(parser)` and
`run(args) -> int`; only the chosen one is imported, so `beliefscope --help` stays fast and a
subcommand's heavy dependencies (torch, MuJoCo, Dash) load only when it runs.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from beliefscope.errors import BeliefscopeError

COMMANDS: dict[str, tuple[str, str]] = {
    "world": ("beliefscope.world.cli", "generate MuJoCo occlusion-world replay episodes"),
    "train": ("beliefscope.rssm.train", "train the native RSSM on a replay directory"),
    "ingest": ("ingest.cli", "recompute belief traces of checkpoints x episodes into the store"),
    "watch": ("ingest.watch", "keep ingesting new checkpoints and episodes of a log dir"),
    "probe": ("ingest.probes_cli", "what-if replays: dropout, delay, open-loop, belief decoding"),
    "score": ("beliefscope.review.cli_score", "score review flags against ground truth"),
    "export": ("beliefscope.export.cli", "export traces and flags: CSV, Parquet, TensorBoard, W&B"),
    "serve": ("server.cli", "serve the REST API and the dashboard"),
    "demo": ("server.demo", "world + training + live ingest + dashboard in one command"),
    "db": ("beliefscope.store.cli", "store schema: upgrade, current"),
    "token": ("server.tokens_cli", "API tokens: create, list, revoke"),
    "rules": ("beliefscope.review.cli_rules", "review-flag rules: list, set, apply"),
}


def build_parser(chosen: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="beliefscope", description="Belief-state forensics for RSSM world models."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            importlib.import_module(module).configure(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    chosen = next((a for a in argv if not a.startswith("-")), None)
    chosen = chosen if chosen in COMMANDS else None
    args = build_parser(chosen).parse_args(argv)
    try:
        return int(importlib.import_module(COMMANDS[args.command][0]).run(args) or 0)
    except BeliefscopeError as err:
        print(f"beliefscope {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
