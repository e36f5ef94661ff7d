"""Ground truth in the lists: columns and a quick filter for occlusions, slips and flags at a
slip reappearance (Runs episode list, review queue, priority tab). Rows without ground truth
leave these columns empty and never pass a ground-truth filter."""

from __future__ import annotations

from typing import Any

from dash import dcc

from beliefscope.review.truth import FlagTruth, TruthFacts

TRUTH_COLUMNS: list[dict[str, Any]] = [
    {"field": "occlusions", "width": 110, "type": "rightAligned", "filter": "agNumberColumnFilter"},
    {"field": "slips", "width": 80, "type": "rightAligned", "filter": "agNumberColumnFilter"},
    {
        "field": "slips flagged",
        "headerTooltip": "slip reappearances a flag overlaps (scoring's window), of all",
        "width": 120,
    },
]
"""Ground-truth columns of an episode list (empty where an episode has no ground truth)."""


def truth_columns(truth: TruthFacts | None) -> dict[str, Any]:
    """An episode row's ground-truth cells (and the flags `keep_row` reads)."""
    if truth is None:
        return {"occlusions": None, "slips": None, "slips flagged": "", "slip_hit": None}
    return {
        "occlusions": truth.occlusions,
        "slips": truth.slips,
        "slips flagged": f"{truth.slips_flagged} / {truth.slip_reappearances}",
        "slip_hit": truth.slips_flagged > 0,
        "slip_missed": truth.slips_flagged < truth.slip_reappearances,
    }


TRUTH_FILTERS = {
    "slips": "with slips",
    "hit": "a flag at a slip reappearance",
    "missed": "a slip reappearance no flag found",
    "none": "no slips",
}


FLAG_TRUTH_COLUMNS: list[dict[str, Any]] = [
    {
        "field": "at slip",
        "width": 90,
        "headerTooltip": "the flag overlaps a slip reappearance of its episode (scoring's window)",
    },
    {"field": "occlusions", "headerName": "occl.", "width": 80, "type": "rightAligned"},
    {"field": "slips", "width": 75, "type": "rightAligned"},
]
"""Ground-truth columns of a flag list: the flag's own hit, its episode's counts."""

FLAG_TRUTH_FILTERS = {
    "slip": "at a slip reappearance",
    "other": "not at a slip reappearance",
    "slips": "on an episode with slips",
}


def flag_truth_columns(truth: FlagTruth | None) -> dict[str, Any]:
    if truth is None:
        return {"at slip": "", "occlusions": None, "slips": None}
    return {
        "at slip": "yes" if truth.at_slip else "no",
        "occlusions": truth.occlusions,
        "slips": truth.slips,
    }


def keep_flag(truth: FlagTruth | None, wanted: str | None) -> bool:
    """Whether a flag passes the ground-truth filter `wanted` (a FLAG_TRUTH_FILTERS key)."""
    if not wanted:
        return True
    if truth is None:
        return False
    return {"slip": truth.at_slip, "other": not truth.at_slip, "slips": truth.slips > 0}[wanted]


def truth_filter(component_id: str, shown: bool, choices: dict[str, str] = TRUTH_FILTERS) -> Any:
    """A quick filter of a list by ground truth (hidden where nothing in it has any)."""
    return dcc.Dropdown(
        id=component_id,
        options=[{"label": v, "value": k} for k, v in choices.items()],
        placeholder="ground truth: any",
        clearable=True,
        className="bs-dd",
        style={"minWidth": "260px", "display": "block" if shown else "none"},
    )


def keep_row(row: dict[str, Any], wanted: str | None) -> bool:
    """Whether an episode row passes the ground-truth filter `wanted` (a TRUTH_FILTERS key)."""
    if not wanted:
        return True
    if row.get("slips") is None:
        return False
    return {
        "slips": row["slips"] > 0,
        "hit": bool(row.get("slip_hit")),
        "missed": bool(row.get("slip_missed")),
        "none": row["slips"] == 0,
    }[wanted]
