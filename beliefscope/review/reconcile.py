"""Re-applying a rule without losing a human's review: new segments against existing flags.

A new segment overlapping an existing flag of the same rule on the same trace *is* that flag
(its id, state, notes and history stay; its bounds and peak follow the rule; the largest overlap
wins, each flag matches once). A flag the rule no longer finds is deleted only if nobody
reviewed it, otherwise it stays, marked stale; a reviewed flag that moves, or comes back from
stale, gets a history entry.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from beliefscope.values.review import FlagPlan, Found, RuleFlag


def plan_flags(found: Sequence[Found], old: Mapping[int, Sequence[RuleFlag]]) -> FlagPlan:
    """What to write so that the rule's flags are `found`; `old`: trace id -> its flags."""
    taken: set[int] = set()
    inserts: list[Found] = []
    updates: list[tuple[int, Found]] = []
    history: list[tuple[int, str, dict[str, list[Any]]]] = []
    for segment in found:
        match = _best_overlap(old.get(segment.trace_id, ()), segment.t0, segment.t1, taken)
        if match is None:
            inserts.append(segment)
            continue
        taken.add(match.id)
        updates.append((match.id, segment))
        moved = (match.t0, match.t1) != (segment.t0, segment.t1)
        if match.reviewed and (moved or match.stale):
            changes: dict[str, list[Any]] = {}
            if moved:
                changes = {"t0": [match.t0, segment.t0], "t1": [match.t1, segment.t1]}
            if match.stale:
                changes["stale"] = [True, False]
            history.append((match.id, "rule-update", changes))
    gone = [f for flags in old.values() for f in flags if f.id not in taken]
    stales = tuple(f.id for f in gone if f.reviewed and not f.stale)
    history += [(i, "stale", {"stale": [False, True]}) for i in stales]
    return FlagPlan(
        inserts=tuple(inserts),
        updates=tuple(updates),
        deletes=tuple(f.id for f in gone if not f.reviewed),
        stales=stales,
        history=tuple(history),
    )


def _best_overlap(
    candidates: Iterable[RuleFlag], t0: int, t1: int, taken: set[int]
) -> RuleFlag | None:
    best, best_len = None, 0
    for flag in candidates:
        overlap = min(t1, flag.t1) - max(t0, flag.t0) + 1
        if overlap > best_len and flag.id not in taken:
            best, best_len = flag, overlap
    return best
