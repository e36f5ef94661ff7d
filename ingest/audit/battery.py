"""The battery: filter once, then every check in report order."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace

import torch

from beliefscope.errors import BadInputError
from beliefscope.replay.base import Episode
from beliefscope.rssm.core import WorldModel
from beliefscope.values.audit import CHECKS, AuditReport, Check
from ingest.audit.alignment import action_alignment, reward_alignment
from ingest.audit.filtered import MIN_STEPS, Filtered, filter_episodes, too_few
from ingest.audit.latents import latent_groups, no_memory, posterior_collapse
from ingest.audit.observation import ALTERNATIVES, observation_convention
from ingest.audit.resets import reset_alignment
from ingest.audit.semantics import kl_semantics
from ingest.units import check_compatible

BATTERY: dict[str, Callable[[Filtered], Check]] = {
    "action_alignment": action_alignment,
    "reset_alignment": reset_alignment,
    "reward_alignment": reward_alignment,
    "observation_convention": observation_convention,
    "posterior_collapse": posterior_collapse,
    "latent_groups": latent_groups,
    "no_memory": no_memory,
    "kl_semantics": lambda f: kl_semantics(f.model),
}
assert list(BATTERY) == list(CHECKS), "the battery runs the checks in report order"


def audit(
    model: WorldModel, episodes: Sequence[Episode], device: torch.device | str = "cpu"
) -> AuditReport:
    """Every check of one checkpoint over `episodes` (each at least two steps long).

    The two checks whose failure would mislead every other one run first: when the frames were
    written in another convention, or the actions sit at other steps, the remaining checks read
    the replay repaired (as the model would see it after the fix, and their findings say so),
    so one root cause does not show up as a dozen unrelated failures."""
    if not episodes:
        raise BadInputError("the audit needs at least one episode")
    for ep in episodes:
        check_compatible(ep, model)
        if ep.length < 2:
            raise BadInputError(
                "episode has one step; the audit needs at least two", path=ep.ref.path
            )
    start = time.perf_counter()
    with torch.inference_mode():
        filtered = filter_episodes(model, episodes, device)
        ordinary = int((filtered.valid & (filtered.since_first > 0)).sum())
        if ordinary < MIN_STEPS:  # too short for any statistic but the config's
            short = {n: too_few(n, ordinary, "steps after a reset") for n in CHECKS}
            short["kl_semantics"] = kl_semantics(model)
            return _report(model, episodes, start, [c for c in short.values() if c])
        done = {"observation_convention": observation_convention(filtered)}
        repairs: list[str] = []
        read_as = done["observation_convention"].numbers.get("read_as")
        if read_as in ALTERNATIVES:
            undo = ALTERNATIVES[read_as][0]
            converted = [
                replace(ep, image=undo(torch.from_numpy(ep.image)).numpy()) for ep in episodes
            ]
            filtered = filter_episodes(model, converted, device)
            repairs.append(f"the frames read as {read_as}")
        done["action_alignment"] = _repaired(action_alignment(filtered), repairs)
        if done["action_alignment"].status == "fail":
            shift = int(done["action_alignment"].numbers["best_shift"])
            filtered = filtered.refiltered(action=filtered.shifted_actions(shift))
            repairs.append(f"the actions re-aligned (step t fed action[t{-shift:+d}])")
        done["reset_alignment"] = _repaired(reset_alignment(filtered), repairs)
        repair = done["reset_alignment"].numbers.get("repair")
        if repair:
            rows = {ep.ref.key: i for i, ep in enumerate(filtered.episodes)}
            first = filtered.is_first.copy()
            for value, steps in ((True, repair["add"]), (False, repair["remove"])):
                for key, t in steps:
                    first[rows[key], t] = value
            filtered = filtered.refiltered(is_first=first)
            repairs.append("is_first moved to where the frames cut")
        checks = [
            done[name] if name in done else _repaired(check(filtered), repairs)
            for name, check in BATTERY.items()
        ]
    return _report(model, episodes, start, checks)


def _repaired(check: Check, repairs: Sequence[str]) -> Check:
    """A check computed on the repaired replay says so (the KL settings need no replay)."""
    if not repairs or check.name == "kl_semantics":
        return check
    lead = f"With {' and '.join(repairs)}: "
    return replace(check, finding=lead + check.finding[:1].lower() + check.finding[1:])


def _report(
    model: WorldModel, episodes: Sequence[Episode], start: float, checks: Sequence[Check]
) -> AuditReport:
    return AuditReport(
        family=model.spec.family,
        step=model.spec.config.get("step"),
        episodes=tuple(ep.ref.key for ep in episodes),
        steps=sum(ep.length for ep in episodes),
        seconds=time.perf_counter() - start,
        checks=tuple(checks),
    )
