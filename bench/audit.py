"""Does the run audit find real replay bugs, and does it stay quiet on clean replays?

    python bench/audit.py [--checkpoint CKPT] [--seeds 1 2 3 4 5] [--episodes 16]

For each world seed: generate the MuJoCo occlusion world (held-out seeds: the demo model trained
on seed 0), then for the clean replay and each known corruption (tests/audit/corrupt.py) write
a corrupted copy, read it back through the replay reader and audit the checkpoint over it.
Prints, per case, how often the matching check failed and named the corruption, which other
checks failed or warned, and the time of one audit with the load average. Default checkpoint:
the newest in server/demo_checkpoints/. One torch thread per core less one, as the CLI uses.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from beliefscope.replay.base import detect_format  # noqa: E402
from beliefscope.rssm import formats  # noqa: E402
from beliefscope.rssm.core import WorldModel  # noqa: E402
from ingest.audit import audit  # noqa: E402
from ingest.units import default_threads  # noqa: E402
from tests.audit.corrupt import (  # noqa: E402
    CORRUPTIONS,
    EXPECTED,
    corrupted_copy,
    episode_files,
    every_pair,
)
from tests.builders import make_world  # noqa: E402

DEMO = Path(__file__).resolve().parent.parent / "server" / "demo_checkpoints"


def latest_demo() -> Path:
    found = sorted(DEMO.glob("ckpt-*.safetensors"))
    if not found:
        raise SystemExit(f"no checkpoints in {DEMO}")
    return found[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=None, help="default: newest demo one")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--episodes", type=int, default=16)
    parser.add_argument("--length", type=int, default=150)
    args = parser.parse_args()
    torch.set_num_threads(default_threads())
    path = (args.checkpoint or latest_demo()).resolve()
    (ref,) = [r for r in formats.discover(path.parent) if r.path.resolve() == path]
    model = formats.load(ref)
    cases = {"clean": None, **CORRUPTIONS}
    detected: Counter[str] = Counter()
    failed: dict[str, Counter[str]] = {case: Counter() for case in cases}
    warned: dict[str, Counter[str]] = {case: Counter() for case in cases}
    unsure: dict[str, Counter[str]] = {case: Counter() for case in cases}
    tallies = {"fail": failed, "warn": warned, "inconclusive": unsure}
    seconds: list[float] = []
    pairs = {True: [0, 0], False: [0, 0]}  # spliced / is_first dropped: cuts found, cuts made
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            clean = make_world(
                Path(tmp) / f"world-{seed}", episodes=args.episodes, length=args.length, seed=seed
            )
            for case, corruption in cases.items():
                copy = corrupted_copy(clean, Path(tmp) / f"{case}-{seed}", corruption)
                fmt = detect_format(copy)
                episodes = [fmt.load(r) for r in fmt.list(copy)]
                start = time.perf_counter()
                report = audit(model, episodes)
                if case == "clean":
                    seconds.append(time.perf_counter() - start)
                for check in report.checks:
                    if check.status in tallies:
                        tallies[check.status][case][check.name] += 1
                if case in EXPECTED:
                    name, words = EXPECTED[case]
                    found = report.check(name)
                    detected[case] += found.status == "fail" and words in (found.corruption or "")
                print(f"  seed {seed} {case}: {report.status}", file=sys.stderr)
            for spliced in (True, False):
                found, total = cuts_found(
                    model, clean, Path(tmp) / f"pairs-{spliced}-{seed}", spliced
                )
                pairs[spliced][0] += found
                pairs[spliced][1] += total
    n = len(args.seeds)
    print(f"checkpoint {path.name} (step {model.spec.config.get('step')}, {model.spec.family})")
    print(f"world seeds {' '.join(map(str, args.seeds))}: {args.episodes} episodes x {args.length}")
    print()
    print(f"{'case':24s} {'expected check':24s} {'found':>6s}  other checks failed | warned | n/a")
    for case in cases:
        if case == "clean":  # any failure on a clean replay is a false alarm
            expected, found = "-", f"{sum(failed[case].values())} fail"
        else:
            expected, found = EXPECTED[case][0], f"{detected[case]}/{n}"
        other = Counter({k: v for k, v in failed[case].items() if k != expected})
        print(
            f"{case:24s} {expected:24s} {found:>6s}  {_list(other)} | {_list(warned[case])} | "
            f"{_list(unsure[case])}"
        )
    print()
    for spliced, (found, total) in pairs.items():
        what = "halves of two episodes spliced" if spliced else "two episodes, is_first dropped"
        print(f"every pair of files joined ({what}): {found}/{total} cuts found at their step")
    print()
    load = os.getloadavg()
    print(
        f"audit of one checkpoint over {args.episodes} episodes (clean): median "
        f"{statistics.median(seconds):.1f} s (min {min(seconds):.1f}, max {max(seconds):.1f}) "
        f"with {torch.get_num_threads()} torch thread(s), load average "
        f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )


def cuts_found(model: WorldModel, clean: Path, out: Path, spliced: bool) -> tuple[int, int]:
    """Join every pair of the replay's files and count the cuts the reset check finds within
    two steps of where they are."""
    files = episode_files(clean)
    lengths = {p.name.rsplit("-", 1)[0]: int(p.stem.rsplit("-", 1)[1]) for p in files}
    joined = [p.name.rsplit("-", 1)[0] for p in files[0::2][: len(files) // 2]]
    copy = corrupted_copy(clean, out, lambda arrays: every_pair(arrays, spliced))
    fmt = detect_format(copy)
    episodes = [fmt.load(r) for r in fmt.list(copy)]
    cuts = {}
    for ep in episodes:
        stem = ep.ref.path.name.rsplit("-", 1)[0]
        if stem in joined:
            cuts[ep.ref.key] = lengths[stem] // 2 if spliced else lengths[stem]
    where = audit(model, episodes).check("reset_alignment").where
    hits = {w.episode for w in where if w.episode in cuts and abs(w.t - cuts[w.episode]) <= 2}
    return len(hits), len(cuts)


def _list(counts: Counter[str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "-"


if __name__ == "__main__":
    main()
