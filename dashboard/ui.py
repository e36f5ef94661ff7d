"""Small shared widgets: labels, pills, empty states, and the flag review panel.

The review panel's buttons carry `data-bs-key`: `assets/keys.js` clicks the visible button
whose key was pressed, so c / d / o review a flag in one key.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from dash import dcc, html

from beliefscope.values.review import FLAG_CATEGORIES, FlagInfo, HistoryEntry
from beliefscope.values.traces import CheckpointInfo, RunInfo
from dashboard.figures import STATE_COLOR
from dashboard.session import token_command

GRAPH_CONFIG: Any = {
    "displaylogo": False,
    "responsive": True,
    "modeBarButtonsToRemove": ["lasso2d", "autoScale2d", "toImage"],
    "doubleClick": "reset",
}


def data_attrs(**values: str) -> dict[str, Any]:
    """`data-*` attributes for a Dash html component (`bs_key="c"` -> `data-bs-key="c"`)."""
    return {"data-" + k.replace("_", "-"): v for k, v in values.items()}


def field(label: str, control: Any) -> html.Label:
    return html.Label([label, control], className="bs-field")


def missing(message: str) -> html.Div:
    return html.Div(message, className="bs-card bs-empty")


def sign_in_needed() -> html.Div:
    return missing(
        "This server needs an API token to read: sign in (top right) with a token from "
        f"`{token_command()}`."
    )


def ckpt_label(ckpt: CheckpointInfo | None, checkpoint_id: int) -> str:
    if ckpt is None:
        return f"checkpoint {checkpoint_id}"
    return f"{step_label(ckpt)} · {ckpt.content_hash[:7]}"


def step_label(ckpt: CheckpointInfo) -> str:
    """`step 2,000`, or the content hash where the training step is unknown."""
    return f"step {ckpt.step:,}" if ckpt.step is not None else f"ckpt {ckpt.content_hash[:7]}"


def run_ckpt_label(run: RunInfo, ckpt: CheckpointInfo) -> str:
    """A checkpoint named with its run, for views that may mix runs: `pretrained-tiny @ 2,000`."""
    at = f"{ckpt.step:,}" if ckpt.step is not None else ckpt.content_hash[:7]
    return f"{run.name} @ {at}"


_STAMPED = re.compile(r"^\d{8}T\d{6}\w*?-([0-9A-Za-z]{8})[0-9A-Za-z]*-")
SHORT_NAME = 24


def episode_name(key: str) -> str:
    """A short, readable name for an episode key (`beliefscope:20261125T083752-50c4c8e3...
    -150.npz` -> `50c4c8e3`): the file's short id where its name has one, else its name,
    trimmed; a part index of a multi-episode file stays (`6iE5O9Xo:2`). Show the full key on
    hover (`title=`)."""
    _, _, rest = key.partition(":") if ":" in key else ("", "", key)
    name, *parts = rest.split(":")
    name = name.rsplit("/", 1)[-1]
    stamped = _STAMPED.match(name)
    short = stamped.group(1) if stamped else re.sub(r"\.(npz|pt|safetensors)$", "", name)
    if len(short) > SHORT_NAME:
        short = short[: SHORT_NAME // 2 - 1] + "…" + short[-(SHORT_NAME // 2) :]
    return ":".join([short, *parts])


def state_pill(state: str, *, stale: bool = False) -> html.Span:
    return html.Span(
        state + (" · stale" if stale else ""),
        className=f"bs-pill bs-pill-{state}",
        title="the rule no longer finds this reviewed flag" if stale else state,
    )


def state_legend() -> html.Span:
    return html.Span(
        [
            html.Span([html.Span(className="bs-swatch", style={"background": c}), s])
            for s, c in STATE_COLOR.items()
        ],
        className="bs-legend",
    )


def review_controls(prefix: str) -> html.Div:
    """One flag's review controls, always in the layout (hidden until a flag is selected) so
    their callbacks always have inputs: ids `<prefix>-confirm`, `-dismiss`, `-reopen`,
    `-category`, `-note`, `-save-note`, filled by `review_fill`."""
    buttons = html.Div(
        [
            html.Button(
                ["Confirm", html.Kbd("c")],
                id=f"{prefix}-confirm",
                className="bs-btn bs-btn-confirm",
                **data_attrs(bs_key="c"),
            ),
            html.Button(
                ["Dismiss", html.Kbd("d")],
                id=f"{prefix}-dismiss",
                className="bs-btn bs-btn-dismiss",
                **data_attrs(bs_key="d"),
            ),
            html.Button(
                ["Reopen", html.Kbd("o")],
                id=f"{prefix}-reopen",
                className="bs-btn",
                **data_attrs(bs_key="o"),
            ),
            dcc.Dropdown(
                id=f"{prefix}-category",
                options=list(FLAG_CATEGORIES),
                placeholder="category",
                clearable=True,
                className="bs-dd",
                style={"minWidth": "130px"},
            ),
        ],
        className="bs-toolbar",
        style={"margin": "8px 0 6px"},
    )
    return html.Div(
        [
            html.Div(id=f"{prefix}-facts"),
            buttons,
            dcc.Textarea(id=f"{prefix}-note", className="bs-note", placeholder="note"),
            html.Button("Save note", id=f"{prefix}-save-note", className="bs-btn"),
            html.H2("History", style={"marginTop": "8px"}),
            html.Ul(id=f"{prefix}-history", className="bs-history"),
        ],
        id=f"{prefix}-review",
        className="bs-review",
        style={"display": "none"},
    )


def review_fill(flag: FlagInfo | None, history: Sequence[HistoryEntry]) -> tuple[Any, ...]:
    """(facts, category, note, history items, style) of `review_controls` for `flag`."""
    if flag is None:
        return None, None, "", [], {"display": "none"}
    facts = html.Dl(
        [
            html.Dt("flag"),
            html.Dd(f"#{flag.id} · {flag.source}"),
            html.Dt("steps"),
            html.Dd(f"{flag.t0}–{flag.t1} ({flag.t1 - flag.t0 + 1})"),
            html.Dt("peak"),
            html.Dd("—" if flag.peak is None else f"{flag.peak:.4g} at {flag.peak_t}"),
            html.Dt("rule"),
            html.Dd(f"{flag.rule_name} v{flag.rule_version}" if flag.rule_name else "manual"),
            html.Dt("state"),
            html.Dd(state_pill(flag.state, stale=flag.stale)),
        ],
        className="bs-kv",
    )
    items = [
        html.Li(
            f"{h.at:%Y-%m-%d %H:%M} · {h.who} · {h.action}"
            + (
                ": " + describe_changes({k: v[1] for k, v in h.changes.items()})
                if h.changes
                else ""
            )
        )
        for h in reversed(history)
    ]
    style = {"borderTop": "1px solid #eef1f4", "marginTop": "8px", "paddingTop": "8px"}
    return facts, flag.category, flag.notes, items, style


def review_changes(trigger: str, *, category: str | None, note: str | None) -> dict | None:
    """The `review_flag` keywords a review control's event means (None: nothing to do)."""
    action = trigger.rsplit("-", 1)[-1] if isinstance(trigger, str) else ""
    if action == "confirm":
        return {"state": "confirmed"}
    if action == "dismiss":
        return {"state": "dismissed"}
    if action == "reopen":
        return {"state": "open"}
    if action == "category":
        return {"category": category} if category else {"clear_category": True}
    if action == "note":
        return {"notes": note or ""}
    return None


def describe_changes(changes: dict[str, Any]) -> str:
    return ", ".join(
        "category cleared" if k == "clear_category" else f"{k} → {v}" for k, v in changes.items()
    )


def selected_span(selection: dict | None) -> tuple[int, int] | None:
    """Steps covered by a box selection on an x-linked plot (None when nothing is selected)."""
    if not selection:
        return None
    rng = selection.get("range") or {}
    xs = next((v for k, v in rng.items() if k.startswith("x")), None)
    if xs:
        lo, hi = sorted(xs)
    else:
        points = [p["x"] for p in selection.get("points", []) if "x" in p]
        if not points:
            return None
        lo, hi = min(points), max(points)
    return max(int(round(lo)), 0), int(round(hi))
