"""Reset alignment: does `is_first` mark exactly the steps where a new episode begins?

Two counterfactuals, both with the model's own KL (the information the frames add to what the
belief expected):
- a cut: at every ordinary step t, re-filter `WINDOW` steps from a fresh reset at t. Where the
  fresh start explains those frames with much less KL than the carried belief did
  (`CUT_RATIO`), the frames jumped to something the prior did not expect at all: an episode
  boundary without `is_first` (dropped, or two episodes spliced);
- a needless reset: at every `is_first` after a stream's first step, carry the belief across
  instead. Where the carried belief explains the frame far better than the reset did
  (`CONTINUE_RATIO`), the frames continue: the reset sits inside an episode (one step early
  when a cut follows it).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from beliefscope.rssm.core import action_input, observe
from beliefscope.values.audit import Check, Where
from ingest.audit.filtered import Filtered, kl_of, too_few

WINDOW = 3
CUT_RATIO = 1.4
"""Carried KL / fresh-start KL over the window above which a step is a cut."""
CONTINUE_RATIO = 0.35
"""Carried KL / reset KL at a reset step below which the frames continue across it."""
MEMORY_RATIO = 0.5
"""If the carried belief's KL is not below this share of a fresh start's on a typical step,
the model's memory is too weak for a cut to stand out: inconclusive."""
ROWS = 1024
"""Counterfactual windows computed per call (bounds memory on long episodes)."""
ACTIONS = 256
"""Recorded actions tried at a reset step whose own action the replay zeroed."""


def _fresh_start_kl(f: Filtered, rows: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """KL over the WINDOW steps from (rows, steps) re-filtered from a reset there: (N, W)."""
    out = np.empty((len(rows), WINDOW))
    for s in range(0, len(rows), ROWS):
        r, t = rows[s : s + ROWS], steps[s : s + ROWS]
        index = t[:, None] + np.arange(WINDOW)  # (n, W), inside the segment by the caller
        first = torch.zeros(index.shape, dtype=torch.bool, device=f.batch.is_first.device)
        first[:, 0] = True
        traj = observe(
            f.model.cell, f.embed[r[:, None], index], f.batch.action[r[:, None], index], first
        )
        out[s : s + ROWS] = kl_of(f.model, traj.post, traj.prior).float().cpu().numpy()
    return out


def _carried_kl(f: Filtered, rows: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """KL at reset steps (rows, steps) had the belief of the step before been carried on.

    A replay zeroes the action of a reset row, so the action that led to the frame is lost:
    the step is fed each of up to ACTIONS actions recorded elsewhere in the sample (and zero),
    and the lowest KL counts, i.e. the frame as the carried belief would expect it under the
    likeliest action."""
    if not len(rows):
        return np.zeros(0)
    recorded = f.batch.action[torch.from_numpy(f.valid & ~f.is_first)]  # (M, A)
    pick = np.random.default_rng(0).permutation(len(recorded))[:ACTIONS]
    candidates = torch.cat([torch.zeros_like(recorded[:1]), recorded[pick]])  # (C, A)
    n, c = len(rows), len(candidates)
    state = {  # each reset repeated once per candidate: (n*C, ...)
        "deter": f.traj.deter[rows, steps - 1].repeat_interleave(c, 0),
        "stoch": f.traj.stoch[rows, steps - 1].repeat_interleave(c, 0),
    }
    action = action_input(f.model.cell, candidates.repeat(n, 1))
    deter, prior = f.model.cell.img_step(state, action)
    post = f.model.cell.obs_dist(deter, f.embed[rows, steps].repeat_interleave(c, 0))
    kl = kl_of(f.model, post, prior).float().cpu().numpy().reshape(n, c)
    return kl.min(1)


def reset_alignment(f: Filtered) -> Check:
    kl = f.kl.float().cpu().numpy()
    first = f.is_first
    ordinary = f.valid & (f.since_first > 0)
    rule = (
        f"fail where a fresh start explains the next {WINDOW} frames with {CUT_RATIO:g}x less KL "
        f"than the carried belief (a cut without is_first), or where carrying the belief across "
        f"an is_first needs under {CONTINUE_RATIO:g}x the KL of the reset (a needless reset)"
    )
    # every ordinary step whose window lies inside its segment (a cut in a segment's last
    # WINDOW - 1 steps goes unseen: its evidence is too short to tell from noise)
    rows, steps = np.nonzero(ordinary & (f.until_end >= WINDOW - 1))
    short = too_few("reset_alignment", len(rows), "steps after a reset", rule)
    if short:
        return short
    fresh = _fresh_start_kl(f, rows, steps)  # (N, W)
    carried = kl[rows[:, None], steps[:, None] + np.arange(WINDOW)]
    score = carried.sum(1) / np.maximum(fresh.sum(1), 1e-6)
    memory = float(np.median(carried[:, 0] / np.maximum(fresh[:, 0], 1e-6)))

    resets = np.nonzero(f.valid & first & (np.arange(kl.shape[1]) > 0))
    reset_kl = kl[resets]
    continued = _carried_kl(f, *resets) / np.maximum(reset_kl, 1e-6)
    needless = continued < CONTINUE_RATIO

    # |h_t - h_{t-1}| at step t is deter_delta[:, t - 1]
    deter_delta = torch.linalg.vector_norm(f.traj.deter.diff(dim=1), dim=-1).float().cpu().numpy()
    starts = f.valid & (f.since_first == 0)
    after_first = (f.valid & (f.since_first == 1))[:, 1:]
    typical = (ordinary & (f.since_first > 1))[:, 1:]
    numbers: dict[str, Any] = {
        "kl_at_first": _mean(kl[starts]),
        "kl_after_first": _mean(kl[:, 1:][after_first]),
        "kl_typical": _median(kl[ordinary]),
        "deter_change_after_first": _mean(deter_delta[after_first]),
        "deter_change_typical": _median(deter_delta[typical]),
        "memory_ratio": memory,
        "max_cut_score": float(score.max()),
        "cut_ratio": CUT_RATIO,
        "resets_inside_streams": int(len(reset_kl)),
        "continue_ratio": CONTINUE_RATIO,
    }
    cuts = _cuts(rows, steps, score)
    numbers["cuts"] = len(cuts)
    numbers["needless_resets"] = int(needless.sum())
    if not cuts and not needless.any():
        if memory > MEMORY_RATIO:
            return Check(
                "reset_alignment",
                "inconclusive",
                f"The carried belief explains a frame hardly better than a fresh start (median KL "
                f"ratio {memory:.2f}), so a cut without is_first would not stand out.",
                rule=rule,
                numbers=numbers,
            )
        return Check(
            "reset_alignment",
            "pass",
            f"Resets sit where the frames start over: KL at is_first {numbers['kl_at_first']:.1f}"
            f" nats vs {numbers['kl_typical']:.1f} typical, and no step's frames are explained "
            f"better by a fresh start (highest score {numbers['max_cut_score']:.2f}, cut at "
            f"{CUT_RATIO:g}).",
            rule=rule,
            numbers=numbers,
        )
    needless_at = {(int(r), int(t)) for r, t, n in zip(*resets, needless, strict=True) if n}
    where: list[Where] = []
    kinds: list[str] = []
    add: list[tuple[int, int]] = []  # where is_first belongs: the repair the battery applies
    horizon = first.shape[1]
    for r, t, s in cuts:
        early = next((k for k in (1, 2) if t - k >= 0 and first[r, t - k]), None)
        late = next((k for k in (1, 2) if t + k < horizon and first[r, t + k]), None)
        add.append((r, t))
        if early:
            needless_at.add((r, t - early))  # the reset that fired early goes too
            kinds.append(f"is_first fires {early} step{'s' if early > 1 else ''} early")
            note = f"cut at {t}, is_first at {t - early} (score {s:.2f})"
        elif late:
            needless_at.add((r, t + late))
            kinds.append(f"is_first fires {late} step{'s' if late > 1 else ''} late")
            note = f"cut at {t}, is_first at {t + late} (score {s:.2f})"
        else:
            kinds.append("frame cut without is_first (is_first dropped or episodes spliced)")
            note = f"frames explained {s:.1f}x better by a fresh start"
        where.append(f.where(r, t, note))
    moved = {(r, t + k) for r, t, _ in cuts for k in (-2, -1, 1, 2)}
    for r, t in sorted(needless_at - moved):
        kinds.append("is_first inside an episode (the frames continue across it)")
        where.append(f.where(r, t, "reset where the frames continue"))
    key = f.episodes
    numbers["repair"] = {
        "add": [[key[r].ref.key, t] for r, t in add],
        "remove": [[key[r].ref.key, t] for r, t in sorted(needless_at)],
    }
    named = list(dict.fromkeys(kinds))
    shown = ", ".join(f"{w.episode.split(':')[-1]} t={w.t}" for w in where[:3])
    return Check(
        "reset_alignment",
        "fail",
        f"{len(where)} episode boundar{'y is' if len(where) == 1 else 'ies are'} out of place "
        f"({shown}): {named[0]}; open the steps and look for the frames jumping to another "
        "scene.",
        "; ".join(named),
        rule,
        numbers,
        tuple(where),
    )


def _cuts(rows: np.ndarray, steps: np.ndarray, score: np.ndarray) -> list[tuple[int, int, float]]:
    """(row, t, score) of each cut: the highest-scoring step of each run of cut steps at most
    two steps apart (a cut also lifts the windows that start just after it)."""
    out: list[tuple[int, int, float]] = []
    last: tuple[int, int] | None = None
    for i in np.flatnonzero(score >= CUT_RATIO):
        r, t, s = int(rows[i]), int(steps[i]), float(score[i])
        if last is not None and last[0] == r and t - last[1] <= 2:
            if s > out[-1][2]:
                out[-1] = (r, t, s)
        else:
            out.append((r, t, s))
        last = (r, t)
    return out


def _mean(values: np.ndarray) -> float | None:
    return float(values.mean()) if values.size else None


def _median(values: np.ndarray) -> float | None:
    return float(np.median(values)) if values.size else None
