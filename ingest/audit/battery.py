"""The battery: filter once, then every check in report order."""

from __future__ import annotations

import time
from dataclasses import replace
from collections.abc import Callable, Sequence

import torch

from beliefscope.errors import BadInputError
from beliefscope.replay.base import Episode
from beliefscope.rssm.core import WorldModel
from beliefscope.values.audit import CHECKS, AuditReport, Check
from ingest.audit.alignment import action_alignment, reward_alignment
from ingest.audit.filtered import Filtered, filter_episodes
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

    The observation convention is checked first: when the frames were written in another
    convention, every other check reads them converted (as the model would after the fix), so
    one wrong convention does not show up as a dozen unrelated failures."""
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
        convention = observation_convention(filtered)
        read_as = convention.numbers.get("read_as")
        if read_as in ALTERNATIVES:
            undo = ALTERNATIVES[read_as][0]
            converted = [
                replace(ep, image=undo(torch.from_numpy(ep.image)).numpy()) for ep in episodes
            ]
            filtered = filter_episodes(model, converted, device)
        checks = []
        for name, check in BATTERY.items():
            if name == "observation_convention":
                checks.append(convention)
                continue
            found = check(filtered)
            if read_as in ALTERNATIVES and name != "kl_semantics":
                found = replace(found, finding=f"With the frames read as {read_as}: {found.finding}")
            checks.append(found)
    return AuditReport(
        family=model.spec.family,
        step=model.spec.config.get("step"),
        episodes=tuple(ep.ref.key for ep in episodes),
        steps=sum(ep.length for ep in episodes),
        seconds=time.perf_counter() - start,
        checks=tuple(checks),
    )
