"""Review queue: flags across runs, filtered and sorted, with one-key review and bulk actions,
and the episodes of a checkpoint ranked by review priority.

URL: /review?run=<id>&checkpoint=<id>&state=<state>&category=<c>&severity=<s>&truth=<t>
&flag=<id>. Flags come sorted by severity rank, then peak, from the query itself, and every
filter but ground truth is part of that query, so the row limit never drops a matching flag
(the ground-truth filter reads every matching flag before it cuts). Selecting a flag shows its
frame at the peak, its facts and history; "Open episode" jumps to the episode page at the flag.
"""

from __future__ import annotations

from typing import Any

import dash
import dash_ag_grid as dag
from dash import Input, Output, State, callback, dcc, html
from dash.exceptions import PreventUpdate

from beliefscope.errors import BeliefscopeError
from beliefscope.values.page import MAX_LIMIT
from beliefscope.values.review import FLAG_CATEGORIES, FLAG_STATES, SEVERITIES
from dashboard import data, session, ui
from dashboard.components.truth import (
    FLAG_TRUTH_COLUMNS,
    FLAG_TRUTH_FILTERS,
    TRUTH_COLUMNS,
    flag_truth_columns,
    keep_flag,
    keep_row,
    truth_columns,
    truth_filter,
)
from dashboard.context import current

dash.register_page(__name__, path="/review", title="Review · Beliefscope", name="Review")

MAX_ROWS = 5000
ORDER = "-severity,-peak"
"""The queue's order: high severity first (by rank, not by name), then the highest peak."""


def layout(
    run: str | None = None,
    checkpoint: str | None = None,
    state: str | None = "open",
    category: str | None = None,
    severity: str | None = None,
    truth: str | None = None,
    flag: str | None = None,
    **_: Any,
) -> html.Div:
    if not session.can_read():
        return ui.sign_in_needed()
    q = current().queries
    runs = list(q.list_runs(limit=1000).items)
    run_id = int(run) if run and run.isdigit() else None
    ckpts = data.checkpoints_of(run_id) if run_id is not None else []
    filters = html.Div(
        [
            ui.field(
                "run",
                dcc.Dropdown(
                    id="rv-run",
                    options=[{"label": r.name, "value": r.id} for r in runs],
                    value=run_id,
                    placeholder="all runs",
                    className="bs-dd",
                ),
            ),
            ui.field(
                "checkpoint",
                dcc.Dropdown(
                    id="rv-ckpt",
                    options=[{"label": ui.ckpt_label(c, c.id), "value": c.id} for c in ckpts],
                    value=int(checkpoint) if checkpoint and checkpoint.isdigit() else None,
                    placeholder="all checkpoints",
                    className="bs-dd",
                ),
            ),
            ui.field(
                "state",
                dcc.Dropdown(
                    id="rv-state",
                    options=list(FLAG_STATES),
                    value=state or None,
                    placeholder="any state",
                    className="bs-dd",
                ),
            ),
            ui.field(
                "category",
                dcc.Dropdown(
                    id="rv-category",
                    options=list(FLAG_CATEGORIES),
                    value=category,
                    placeholder="any category",
                    className="bs-dd",
                ),
            ),
            ui.field(
                "severity",
                dcc.Dropdown(
                    id="rv-severity",
                    options=list(SEVERITIES),
                    value=severity,
                    placeholder="any severity",
                    className="bs-dd",
                ),
            ),
            ui.field(
                "ground truth",
                dcc.Dropdown(
                    id="rv-truth",
                    options=[{"label": v, "value": k} for k, v in FLAG_TRUTH_FILTERS.items()],
                    value=truth if truth in FLAG_TRUTH_FILTERS else None,
                    placeholder="any",
                    className="bs-dd",
                    style={"minWidth": "210px"},
                ),
            ),
            html.Span(id="rv-count", className="bs-sub"),
        ],
        className="bs-toolbar",
    )
    bulk = html.Div(
        [
            html.Span("Checked rows:", className="bs-sub"),
            html.Button("Confirm", id="rv-bulk-confirm", className="bs-btn bs-btn-confirm"),
            html.Button("Dismiss", id="rv-bulk-dismiss", className="bs-btn"),
            dcc.Dropdown(
                id="rv-bulk-category",
                options=list(FLAG_CATEGORIES),
                placeholder="set category…",
                className="bs-dd",
                style={"minWidth": "140px"},
            ),
            html.Span(
                "keys: j / k move · c confirm · d dismiss · o reopen · Enter opens",
                className="bs-sub",
                style={"marginLeft": "auto"},
            ),
        ],
        className="bs-toolbar",
    )
    grid = dag.AgGrid(
        id="rv-grid",
        columnDefs=[
            {
                "field": "id",
                "headerName": "#",
                "width": 80,
                "checkboxSelection": True,
                "headerCheckboxSelection": True,
            },
            {"field": "run", "width": 120},
            {"field": "ckpt", "headerName": "checkpoint", "width": 110, "type": "rightAligned"},
            {"field": "episode", "flex": 2, "minWidth": 110, "tooltipField": "key"},
            {"field": "steps", "width": 100},
            {"field": "len", "width": 70, "type": "rightAligned"},
            {"field": "peak", "width": 90, "type": "rightAligned"},
            {
                "field": "severity",
                "width": 95,
                "sort": "desc",
                "comparator": {"function": "bsSeverity"},
            },
            {"field": "state", "width": 105},
            *FLAG_TRUTH_COLUMNS,
            {"field": "category", "width": 105},
            {"field": "rule", "width": 140},
            {"field": "by", "width": 100},
        ],
        defaultColDef={"sortable": True, "filter": True, "resizable": True},
        dashGridOptions={
            "rowSelection": "multiple",
            "suppressRowClickSelection": True,
            "rowHeight": 28,
            "headerHeight": 30,
            "animateRows": False,
            "tooltipShowDelay": 300,
        },
        getRowId="params.data.id",
        style={"height": "calc(100vh - 250px)", "minHeight": "360px"},
    )
    detail = html.Div(
        [
            html.Div([html.H2("Flag"), html.Span(id="rv-open")], className="bs-card-head"),
            html.Div(
                html.Img(id="rv-frame", className="rv-frame", alt="frame at the flag's peak"),
                id="rv-frame-box",
            ),
            html.Div("Select a flag (click a row).", id="rv-hint", className="bs-sub"),
            ui.review_controls("rv"),
        ],
        className="bs-card",
        style={"width": "440px", "flex": "none"},
    )
    return html.Div(
        [
            html.Div([html.H1("Review queue")], className="bs-title"),
            filters,
            dcc.Tabs(
                [
                    dcc.Tab(
                        html.Div(
                            [
                                html.Div([bulk, grid], className="bs-card bs-grow"),
                                detail,
                            ],
                            className="bs-row",
                            style={"marginTop": "10px"},
                        ),
                        label="Flags",
                        value="flags",
                    ),
                    dcc.Tab(
                        html.Div(id="rv-priority", style={"marginTop": "10px"}),
                        label="Episode priority",
                        value="priority",
                    ),
                ],
                value="flags",
                className="bs-tabs",
            ),
            dcc.Store(id="rv-sel", data=int(flag) if flag and flag.isdigit() else None),
            dcc.Store(id="rv-rev", data=0),
            dcc.Store(id="rv-catrev", data=0),
        ]
    )


def _rows(run_id, checkpoint_id, state, category, severity, truth=None) -> list[dict[str, Any]]:
    """Grid rows of the matching flags, by severity rank then peak, from one read (each flag
    names its run, checkpoint step and episode key) plus one read of episodes per run for
    their ground truth."""
    reviews = current().store.reviews
    query = {
        "run_id": run_id,
        "checkpoint_id": checkpoint_id,
        "state": state,
        "category": category,
        "severity": severity,
        "sort": ORDER,
    }
    if truth:
        every = reviews.all_flags(**query)
        facts = current().reviews.flag_truth(every)
        flags = [f for f in every if keep_flag(facts.get(f.id), truth)][:MAX_ROWS]
    else:
        flags = list(reviews.list_flags(**query, limit=MAX_ROWS).items)
        facts = current().reviews.flag_truth(flags)
    return [
        {
            "id": str(f.id),
            "run": f.run_name,
            "ckpt": f.checkpoint_step,
            "episode": ui.episode_name(f.episode_key),
            "key": f.episode_key,
            "steps": f"{f.t0}–{f.t1}",
            "len": f.t1 - f.t0 + 1,
            "peak": None if f.peak is None else round(f.peak, 4),
            "severity": f.severity,
            "state": f.state + (" · stale" if f.stale else ""),
            "category": f.category or "",
            "rule": f.rule_name or "manual",
            "by": f.updated_by,
            **flag_truth_columns(facts.get(f.id)),
        }
        for f in flags
    ]


@callback(
    Output("rv-grid", "rowData"),
    Output("rv-count", "children"),
    Output("rv-ckpt", "options"),
    Input("rv-run", "value"),
    Input("rv-ckpt", "value"),
    Input("rv-state", "value"),
    Input("rv-category", "value"),
    Input("rv-severity", "value"),
    Input("rv-truth", "value"),
    Input("rv-rev", "data"),
    Input("rv-catrev", "data"),
)
def load(run_id, checkpoint_id, state, category, severity, truth, _rev, _catrev):
    rows = _rows(run_id, checkpoint_id, state, category, severity, truth)
    options = (
        [{"label": ui.ckpt_label(c, c.id), "value": c.id} for c in data.checkpoints_of(run_id)]
        if run_id is not None
        else []
    )
    return rows, f"{len(rows)} flags", options


@callback(
    Output("rv-sel", "data"),
    Input("rv-grid", "cellClicked"),
    prevent_initial_call=True,
)
def select(cell: dict | None) -> int:
    if not cell or cell.get("colId") == "id" or cell.get("rowId") is None:
        raise PreventUpdate
    return int(cell["rowId"])


@callback(
    Output("rv-category", "value"),
    Output("rv-note", "value"),
    Output("rv-review", "style"),
    Output("rv-frame", "src"),
    Output("rv-open", "children"),
    Output("rv-hint", "style"),
    Input("rv-sel", "data"),
    Input("rv-rev", "data"),
)
def show(flag_id: int | None, _rev: int) -> tuple[Any, ...]:
    flag = _flag(flag_id)
    _, category, note, _, style = ui.review_fill(flag, ())
    if flag is None:
        return category, note, style, None, None, {}
    at = flag.peak_t if flag.peak_t is not None else flag.t0
    src = (
        current()
        .frame_url(flag.episode_id, checkpoint_id=flag.checkpoint_id)
        .replace("{t}", str(at))
    )
    href = (
        f"/episodes/{flag.episode_id}?checkpoint={flag.checkpoint_id}&variant={flag.variant}"
        f"&t={flag.t0}&flag={flag.id}"
    )
    link = html.Span(
        dcc.Link(
            "Open episode at flag →",
            href=href,
            id="rv-open-link",
            className="bs-btn",
            style={"lineHeight": "24px", "display": "inline-block"},
        ),
        **ui.data_attrs(bs_key="Enter"),
    )
    return category, note, style, src, link, {"display": "none"}


@callback(
    Output("rv-facts", "children"),
    Output("rv-history", "children"),
    Input("rv-sel", "data"),
    Input("rv-rev", "data"),
    Input("rv-catrev", "data"),
)
def log(flag_id: int | None, _rev: int, _catrev: int) -> tuple[Any, ...]:
    """The flag's facts and history (apart from `show`: a category edit refreshes only these,
    so the category dropdown is never both an input and an output of one chain)."""
    flag = _flag(flag_id)
    history = current().store.reviews.flag_history(flag_id=flag.id) if flag else ()
    facts, _, _, items, _ = ui.review_fill(flag, history)
    return facts, items


def _flag(flag_id: int | None):
    if flag_id is None:
        return None
    return data.get_or_none(current().store.reviews.get_flag, flag_id=flag_id)


@callback(
    Output("rv-rev", "data"),
    Output("bs-toast", "children", allow_duplicate=True),
    Input("rv-confirm", "n_clicks"),
    Input("rv-dismiss", "n_clicks"),
    Input("rv-reopen", "n_clicks"),
    Input("rv-save-note", "n_clicks"),
    Input("rv-bulk-confirm", "n_clicks"),
    Input("rv-bulk-dismiss", "n_clicks"),
    Input("rv-bulk-category", "value"),
    State("rv-note", "value"),
    State("rv-sel", "data"),
    State("rv-grid", "selectedRows"),
    State("rv-rev", "data"),
    prevent_initial_call=True,
)
def write(_c, _d, _r, _n, _bc, _bd, bulk_category, note, flag_id, checked, rev):
    """Review writes: the selected flag (one click or key) or every checked row (bulk)."""
    trigger = dash.ctx.triggered_id
    if trigger is None:
        raise PreventUpdate
    if trigger.startswith("rv-bulk"):
        ids = [int(r["id"]) for r in checked or []]
        changes = ui.review_changes(trigger.replace("bulk-", ""), category=bulk_category, note=None)
        if not ids or changes is None or (trigger == "rv-bulk-category" and not bulk_category):
            raise PreventUpdate
    else:
        changes = ui.review_changes(trigger, category=None, note=note)
        if flag_id is None or changes is None or not dash.ctx.triggered[0]["value"]:
            raise PreventUpdate
        ids = [flag_id]
    return _review(ids, changes, rev)


@callback(
    Output("rv-catrev", "data"),
    Output("bs-toast", "children", allow_duplicate=True),
    Input("rv-category", "value"),
    State("rv-sel", "data"),
    State("rv-catrev", "data"),
    prevent_initial_call=True,
)
def categorize(category: str | None, flag_id: int | None, rev: int) -> tuple[Any, ...]:
    flag = _flag(flag_id)
    if flag is None or flag.category == category:
        raise PreventUpdate  # the panel showing a newly selected flag's category
    return _review([flag.id], ui.review_changes("rv-category", category=category, note=None), rev)


def _review(ids: list[int], changes: dict | None, rev: int) -> tuple[Any, ...]:
    assert changes is not None
    try:
        who = session.require("review")
        for i in ids:
            current().store.reviews.review_flag(flag_id=i, who=who, **changes)
    except (session.NotAllowed, BeliefscopeError) as err:
        return dash.no_update, session.toast(str(err), ok=False)
    what = f"{len(ids)} flags" if len(ids) > 1 else f"flag #{ids[0]}"
    return rev + 1, session.toast(f"{what}: {ui.describe_changes(changes)}")


@callback(
    Output("rv-priority", "children"),
    Input("rv-run", "value"),
    Input("rv-ckpt", "value"),
    Input("rv-rev", "data"),
)
def priorities(run_id: int | None, checkpoint_id: int | None, _rev: int) -> Any:
    if checkpoint_id is None:
        ckpts = data.checkpoints_of(run_id) if run_id is not None else []
        if not ckpts:
            return ui.missing("Pick a run (and optionally a checkpoint) to rank its episodes.")
        checkpoint_id = ckpts[-1].id
    rows = _priority_rows(checkpoint_id)
    return html.Div(
        [
            html.Div(
                [
                    html.H2("Episodes by review priority"),
                    truth_filter("rv-priority-truth", any(r["slips"] is not None for r in rows)),
                ],
                className="bs-card-head",
            ),
            dcc.Store(id="rv-priority-ckpt", data=checkpoint_id),
            dag.AgGrid(
                id="rv-priority-grid",
                rowData=rows,
                columnDefs=[
                    {
                        "field": "episode",
                        "flex": 2,
                        "cellRenderer": "markdown",
                        "tooltipField": "key",
                        "valueGetter": {
                            "function": "'[' + params.data.episode + '](' + params.data.href + ')'"
                        },
                    },
                    {"field": "score", "width": 100, "sort": "desc", "type": "rightAligned"},
                    {"field": "flags", "width": 90, "type": "rightAligned"},
                    {"field": "peak", "width": 100, "type": "rightAligned"},
                    {"field": "flagged steps", "width": 130, "type": "rightAligned"},
                    *TRUTH_COLUMNS,
                ],
                defaultColDef={"sortable": True, "resizable": True, "filter": True},
                dashGridOptions={"rowHeight": 28, "headerHeight": 30, "tooltipShowDelay": 300},
                getRowId="params.data.id",
                style={"height": "420px"},
            ),
        ],
        className="bs-card",
    )


def _priority_rows(checkpoint_id: int) -> list[dict[str, Any]]:
    """The checkpoint's flagged episodes by review priority, with their ground truth."""
    ranked = current().reviews.review_queue(checkpoint_id=checkpoint_id, limit=MAX_LIMIT)
    run_id = current().queries.get_checkpoint(checkpoint_id=checkpoint_id).run_id
    facts = current().reviews.truth_facts(run_id=run_id, checkpoint_id=checkpoint_id)
    return [
        {
            "id": str(e.episode_id),
            "episode": ui.episode_name(e.episode_key),
            "key": e.episode_key,
            "score": round(e.score, 3),
            "flags": e.count,
            "peak": round(e.peak, 4),
            "flagged steps": e.duration,
            "href": f"/episodes/{e.episode_id}?checkpoint={checkpoint_id}",
            **truth_columns(facts.get(e.episode_id)),
        }
        for e in ranked
    ]


@callback(
    Output("rv-priority-grid", "rowData"),
    Input("rv-priority-truth", "value"),
    State("rv-priority-ckpt", "data"),
    prevent_initial_call=True,
)
def filter_priorities(wanted: str | None, checkpoint_id: int) -> list[dict[str, Any]]:
    return [r for r in _priority_rows(checkpoint_id) if keep_row(r, wanted)]
