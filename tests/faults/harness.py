"""Ingest processes to hurt: killed with SIGKILL at random points, or run two at once.

Run as `python -m tests.faults.harness {kill,concurrent} ...`; prints one JSON document. The
harness imports everything once and then forks each ingest, so twenty kills cost twenty forks,
not twenty interpreter and torch start-ups. It never holds a database connection across a
fork (each census opens and closes its own engine).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import torch

from beliefscope.store.engine import open_store
from ingest.request import IngestRequest
from tests.builders import ingest
from tests.faults.integrity import census


def _request(args: argparse.Namespace, variants: list[str]) -> IngestRequest:
    return IngestRequest(
        logdir=args.run, replay=(args.replay,), batch_size=1, variants=tuple(variants)
    )


def _fork_ingest(url: str, request: IngestRequest, out: Path | None = None) -> int:
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        store = open_store(url)
        report = ingest(store, request)
        if out is not None:
            out.write_text(
                json.dumps(
                    {"written": report.written, "skipped": report.skipped, "errors": report.errors}
                )
            )
        code = 0
    except BaseException:  # noqa: BLE001 - the child reports and exits, whatever happened
        traceback.print_exc()
    finally:
        os._exit(code)


def _state(url: str) -> dict[str, int]:
    found = census(url)
    return {
        "traces": len(found.keys),
        "partial": len(found.partial),
        "duplicates": found.duplicates,
        "orphan_steps": found.orphan_steps,
        "arrayless": found.arrayless,
    }


def _exited(pid: int) -> bool:
    """Whether the child has exited, without reaping it (it stays waitable)."""
    return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def _kill_unless_done(pid: int) -> tuple[bool, int]:
    """SIGKILL the child unless it has already exited; (killed, wait status)."""
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        return False, status
    os.kill(pid, signal.SIGKILL)  # a zombie (exited, not yet reaped) takes the signal harmlessly
    _, status = os.waitpid(pid, 0)
    return os.WIFSIGNALED(status), status


def kill(args: argparse.Namespace) -> dict[str, Any]:
    """`rounds` ingests, each SIGKILLed: even rounds a random moment (0-50 ms) after the child
    commits its next trace, so always mid-ingest; odd rounds at a uniformly random time up to
    1.5x the last time-to-commit, so anywhere in start-up, planning, snapshots or writing.
    A child that finished before its kill is recorded as such (`killed` false, its exit code),
    never signalled after it was reaped. Then one ingest that may finish."""
    rng = random.Random(args.seed)
    request = _request(args, args.variant)
    rounds = []
    to_commit = args.max_delay
    for i in range(args.rounds):
        before = len(census(args.url).keys)
        pid = _fork_ingest(args.url, request)
        began = time.monotonic()
        if i % 2:
            time.sleep(rng.uniform(0.0, 1.5 * to_commit))
        else:
            while time.monotonic() - began < 120 and len(census(args.url).keys) <= before:
                if _exited(pid):
                    break
                time.sleep(0.01)
            to_commit = time.monotonic() - began
            time.sleep(rng.uniform(0.0, 0.05))
        killed, status = _kill_unless_done(pid)
        state = _state(args.url)
        rounds.append(
            {
                "at_s": round(time.monotonic() - began, 3),
                "killed": killed,
                "exit": None if killed else os.waitstatus_to_exitcode(status),
                "new_traces": state["traces"] - before,
                **state,
            }
        )
    pid = _fork_ingest(args.url, request)
    _, status = os.waitpid(pid, 0)
    return {
        "rounds": rounds,
        "final_exit": os.waitstatus_to_exitcode(status),
        "final": _state(args.url),
    }


def concurrent(args: argparse.Namespace) -> dict[str, Any]:
    """Two ingests of overlapping work started together; a deadlock shows as a timeout."""
    outs = [args.out / "a.json", args.out / "b.json"]
    requests = [_request(args, args.variant), _request(args, args.other_variant)]
    began = time.monotonic()
    pids = [_fork_ingest(args.url, req, out) for req, out in zip(requests, outs, strict=True)]
    exits: list[int | None] = [None, None]
    while None in exits and time.monotonic() - began < args.timeout:
        for i, pid in enumerate(pids):
            if exits[i] is None:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    exits[i] = os.waitstatus_to_exitcode(status)
        time.sleep(0.05)
    for i, pid in enumerate(pids):
        if exits[i] is None:  # deadlocked or stuck: end it, and say so
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    reports = [json.loads(o.read_text()) if o.exists() else None for o in outs]
    return {
        "exits": exits,
        "seconds": round(time.monotonic() - began, 2),
        "reports": reports,
        "final": _state(args.url),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["kill", "concurrent"])
    parser.add_argument("--url", required=True)
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--replay", type=Path, required=True)
    parser.add_argument("--variant", action="append", required=True)
    parser.add_argument("--other-variant", action="append", default=[])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-delay", type=float, default=1.0)
    parser.add_argument("--timeout", type=float, default=180.0)
    parser.add_argument("--out", type=Path, default=Path("."))
    args = parser.parse_args()
    torch.set_num_threads(1)
    result = kill(args) if args.mode == "kill" else concurrent(args)
    print(json.dumps(result))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
