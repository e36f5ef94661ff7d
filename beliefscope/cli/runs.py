"""`beliefscope runs list|delete`: the runs in the store, with their ingest state, and removing
one (a failed ingest, a run ingested by mistake) with everything stored of it."""

from __future__ import annotations

import argparse

from beliefscope.access import terminal_user
from beliefscope.store.engine import open_store


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    sub.add_parser("list", help="runs with their counts and the state of their latest ingest")
    delete = sub.add_parser(
        "delete", help="remove a run: its checkpoints, episodes, traces, flags and reviews"
    )
    delete.add_argument("name", help="the run's name (as `runs list` shows it)")


def run(args: argparse.Namespace) -> int:
    store = open_store(args.store)
    try:
        q = store.queries
        if args.action == "list":
            for info in q.list_runs(limit=1000).items:
                jobs = q.list_jobs(run_id=info.id, limit=1).items
                state = jobs[0].progress() if jobs else "never ingested"
                print(
                    f"{info.name}\t{info.n_checkpoints} checkpoints\t{info.n_episodes} episodes"
                    f"\t{info.n_traces} traces\t{state}"
                )
            return 0
        gone = store.writer.delete_run(q.find_run(name=args.name).id, who=terminal_user())
        print(
            f"run {gone.name!r} deleted: {gone.checkpoints} checkpoints, {gone.episodes} "
            f"episodes, {gone.traces} traces and their flags"
        )
        return 0
    finally:
        store.close()
