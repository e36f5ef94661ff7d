"""Does a checkpoint remember the hidden box, and do its signals tell a slip from a plain
reappearance? The evidence table behind docs/memory.md.

    python bench/memory.py --fit TRAIN_DIR --eval HELD_OUT_DIR CKPT [CKPT ...]
        [--resamples 1000] [--json out.json]

For each checkpoint: the belief probe (fit on --fit's episodes, which should be the ones the
model trained on; scored on --eval's, which it never saw) as error by steps since hiding on
plain occlusions, beside the visible-step error and the training-mean baseline, for both probe
fits (`known`: view and memory; `visible`: the view only); then the slip-vs-plain AUC of the
window peak of kl, correction, reward surprise and the belief jump, with 95% bootstrap
intervals (episodes resampled). Everything is computed in this process, one torch thread.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from beliefscope.replay.base import Episode, detect_format  # noqa: E402
from beliefscope.review.scoring import EpisodeTruth, score  # noqa: E402
from beliefscope.rssm import formats  # noqa: E402
from ingest import probes  # noqa: E402
from ingest.compute import compute_traces, pad_batch  # noqa: E402

AUC_METRICS = ("kl", "correction", "reward_error", "belief_jump")
SHOWN = (1, 3, 5, 7, 9)
"""Steps since hiding in the table; the last column is 9 and more."""


def load(root: Path) -> list[Episode]:
    fmt = detect_format(root)
    return [fmt.load(ref) for ref in fmt.list(root)]


def signals(model, episodes: list[Episode], probe: probes.RidgeProbe) -> list[dict]:  # noqa: ANN001
    """Per episode: kl, correction, reward surprise (filter trace) and the belief jump."""
    out = []
    for start in range(0, len(episodes), 8):
        part = episodes[start : start + 8]
        for ep, trace in zip(part, compute_traces(model, pad_batch(part)), strict=True):
            out.append(
                {
                    "kl": trace.metrics["kl"],
                    "correction": trace.metrics["correction"],
                    "reward_error": trace.metrics.get("reward_error", np.full(ep.length, np.nan)),
                    "belief_jump": probes.decode_episode(model, probe, ep).jump,
                }
            )
    return out


def memory_row(report: probes.MemoryReport) -> dict:
    plain = {}
    for k in SHOWN:
        rows = report.since >= k if k == SHOWN[-1] else report.since == k
        count = report.plain_count[rows]
        total = np.nansum(report.plain[rows] * count)
        plain[k] = float(total / count.sum()) if count.sum() else float("nan")
    return {
        "visible": report.visible_error,
        "mean_baseline": report.mean_baseline,
        "plain": plain,
        "plain_5_over_visible": plain[5] / report.visible_error,
        "plain_5_over_mean": plain[5] / report.mean_baseline,
    }


def evaluate(path: Path, fit: list[Episode], held: list[Episode], resamples: int) -> dict:
    model = formats.load(next(r for r in formats.discover(path.parent) if r.path == path))
    if isinstance(model, torch.nn.Module):
        model.eval()
    result: dict = {"checkpoint": str(path), "memory": {}}
    probe = None
    for kind in ("known", "visible"):
        fitted, report = probes.decode_beliefs(model, fit, held, fit=kind)  # type: ignore[arg-type]
        result["memory"][kind] = memory_row(report)
        probe = fitted if kind == "known" else probe
    assert probe is not None
    series = signals(model, held, probe)
    result["auc"] = {}
    for metric in AUC_METRICS:
        eps = [
            EpisodeTruth(
                np.asarray(ep.truth["occluded"], bool),
                np.asarray(ep.truth["slip"], bool),
                s[metric],
                [],
            )
            for ep, s in zip(held, series, strict=True)
        ]
        sc = score(eps, resamples=resamples)
        lo, hi = sc.intervals.get("slip_auc", (float("nan"), float("nan")))
        result["auc"][metric] = {
            "auc": sc.slip_auc,
            "lo": lo,
            "hi": hi,
            "slip": sc.slip_events,
            "plain": sc.plain_events,
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+", type=Path)
    parser.add_argument("--fit", type=Path, required=True, help="episodes the model trained on")
    parser.add_argument("--eval", type=Path, required=True, help="held-out episodes")
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    fit, held = load(args.fit), load(args.eval)
    print(f"load average {os.getloadavg()[0]:.2f}; fit on {len(fit)}, held out {len(held)}")
    head = " ".join(f"{k}{'+' if k == SHOWN[-1] else ''}".rjust(5) for k in SHOWN)
    print(f"{'checkpoint':<44} fit     vis {head}  mean | AUC kl | correction | reward | jump")
    rows = []
    for path in args.checkpoints:
        row = evaluate(path, fit, held, args.resamples)
        rows.append(row)
        name = f"{path.parent.name}/{path.name}"[-44:]
        auc = "  ".join(
            f"{row['auc'][m]['auc']:.2f} ({row['auc'][m]['lo']:.2f}-{row['auc'][m]['hi']:.2f})"
            for m in AUC_METRICS
        )
        for kind in ("known", "visible"):
            mem = row["memory"][kind]
            cells = " ".join(f"{100 * mem['plain'][k]:5.1f}" for k in SHOWN)
            tail = auc if kind == "known" else ""
            print(
                f"{name:<44} {kind:<7} {100 * mem['visible']:4.1f} {cells} "
                f"{100 * mem['mean_baseline']:5.1f} | {tail}"
            )
            name = ""
        sys.stdout.flush()
    a = rows[0]["auc"]["kl"]
    print(f"(cm; AUC on {a['slip']} slip / {a['plain']} plain reappearances, 95% bootstrap)")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
