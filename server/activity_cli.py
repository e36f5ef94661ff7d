"""`beliefscope activity`: the append-only log of state changes (reviews, rule edits, tokens,
sessions, webhooks, ingest jobs, deletions), newest first."""

from __future__ import annotations

import argparse
import json

from beliefscope.store.engine import open_store
from beliefscope.values.page import MAX_LIMIT


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--who", help="only this token name (or cli:<login>)")
    parser.add_argument("--action", help="an action (flag.delete) or a family (flag, token, ...)")
    parser.add_argument("--target", help="only this thing, e.g. flag:3 or webhook:2")
    parser.add_argument(
        "--limit", type=int, default=50, help="how many entries (default %(default)s)"
    )


def run(args: argparse.Namespace) -> int:
    store = open_store(args.store)
    try:
        page = store.activity.list_activity(
            who=args.who,
            action=args.action,
            target=args.target,
            limit=max(1, min(args.limit, MAX_LIMIT)),
        )
    finally:
        store.close()
    for e in page.items:
        details = json.dumps(e.details, default=str) if e.details else ""
        print(f"{e.at:%Y-%m-%d %H:%M:%S}\t{e.who}\t{e.action}\t{e.target}\t{details}".rstrip())
    if page.total > len(page.items):
        print(f"({page.total - len(page.items)} older entries; --limit shows more)")
    return 0
