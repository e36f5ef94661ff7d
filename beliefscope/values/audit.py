"""Run audit: a battery of checks of a checkpoint against its replay, each with its evidence.

A check is a small counterfactual or statistic computed with the model itself (`ingest.audit`);
it says `pass`, `warn`, `fail`, or `inconclusive` when the model cannot tell (a reward head that
predicts nothing cannot show that rewards are shifted: that is not a pass). Its evidence is the
numbers it compared, the rule it applied, and the steps concerned (`Where`), which the dashboard
and the API turn into links that open the episode at those steps. The report is stored as the
checkpoint's probe summary named `audit` (plain JSON: `to_dict` / `from_dict`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

Status = Literal["pass", "warn", "fail", "inconclusive"]

STATUSES: tuple[str, ...] = ("pass", "inconclusive", "warn", "fail")
"""In order of concern: a report's status is its most concerning check's."""

CHECKS: dict[str, str] = {
    "action_alignment": "Action alignment",
    "reset_alignment": "Reset alignment",
    "reward_alignment": "Reward / continuation alignment",
    "observation_convention": "Observation convention",
    "posterior_collapse": "Posterior collapse",
    "latent_groups": "Dead and saturated latent groups",
    "no_memory": "No memory",
    "kl_semantics": "KL semantics",
}
"""Check name -> title, in report order."""

PROBE = "audit"
"""The probe-summary name the report is stored under, one per checkpoint."""


@dataclass(frozen=True)
class Where:
    """Steps of one audited episode that show a finding."""

    episode: str  # the episode's key
    t: int
    t_end: int | None = None  # last step of a stretch (inclusive); None: the single step t
    note: str = ""
    episode_id: int | None = None  # the store's id, set once the episode is registered

    def link(self, checkpoint_id: int) -> str | None:
        """The dashboard URL that opens the episode at `t` under the audited checkpoint."""
        if self.episode_id is None:
            return None
        return f"/episodes/{self.episode_id}?checkpoint={checkpoint_id}&t={self.t}"


@dataclass(frozen=True)
class Check:
    """One check's verdict and its evidence."""

    name: str  # a key of CHECKS
    status: Status
    finding: str
    """One sentence: what the evidence means and what to look at."""
    corruption: str | None = None
    """The replay or model bug the evidence points to, by name; None when nothing is wrong."""
    rule: str = ""
    """The threshold the verdict applied, in words."""
    numbers: Mapping[str, Any] = field(default_factory=dict)
    """The measured values (JSON: numbers, strings, lists of them; None for not measured)."""
    where: tuple[Where, ...] = ()

    @property
    def title(self) -> str:
        return CHECKS.get(self.name, self.name)


@dataclass(frozen=True)
class AuditReport:
    """The checks of one checkpoint over a sample of its replay's episodes."""

    family: str
    step: int | None
    episodes: tuple[str, ...]  # keys of the audited episodes
    steps: int  # audited steps in all
    seconds: float  # time the checks took
    checks: tuple[Check, ...]

    @property
    def status(self) -> Status:
        worst = max((STATUSES.index(c.status) for c in self.checks), default=0)
        return STATUSES[worst]  # type: ignore[return-value]

    def check(self, name: str) -> Check:
        for found in self.checks:
            if found.name == name:
                return found
        raise KeyError(name)

    def with_episode_ids(self, ids: Mapping[str, int]) -> AuditReport:
        """The same report with each `Where` knowing its episode's store id."""
        checks = tuple(
            replace(
                c,
                where=tuple(
                    replace(w, episode_id=ids.get(w.episode, w.episode_id)) for w in c.where
                ),
            )
            for c in self.checks
        )
        return replace(self, checks=checks)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON (tuples as lists), with the overall status for readers that only list."""
        return {**_json(asdict(self)), "status": self.status}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AuditReport:
        return cls(
            family=str(data["family"]),
            step=data.get("step"),
            episodes=tuple(data.get("episodes", ())),
            steps=int(data.get("steps", 0)),
            seconds=float(data.get("seconds", 0.0)),
            checks=tuple(
                Check(
                    name=c["name"],
                    status=c["status"],
                    finding=c["finding"],
                    corruption=c.get("corruption"),
                    rule=c.get("rule", ""),
                    numbers=dict(c.get("numbers", {})),
                    where=tuple(
                        Where(
                            w["episode"],
                            int(w["t"]),
                            w.get("t_end"),
                            w.get("note", ""),
                            w.get("episode_id"),
                        )
                        for w in c.get("where", ())
                    ),
                )
                for c in data.get("checks", ())
            ),
        )


def _json(value: Any) -> Any:
    """`value` with tuples as lists and non-finite floats as None (JSON has no NaN)."""
    if isinstance(value, Mapping):
        return {str(k): _json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
