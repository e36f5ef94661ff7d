"""Runs: every run with its ingest state, and per run how the belief state evolves across
training (checkpoint timeline of summary metrics, scores and chronic findings), the run audit
of `beliefscope audit`, plus its episodes ranked by review priority.

URL: /?run=<run_id>
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dash
import dash_ag_grid as dag
from dash import Input, Output, State, callback, dcc, html
from dash.exceptions import PreventUpdate

from beliefscope.errors import NotFoundError
from beliefscope.values.audit import PROBE
from beliefscope.values.page import MAX_LIMIT
from beliefscope.values.traces import CheckpointInfo
from dashboard import data, session, ui
from dashboard.components.audit import audit_card
from dashboard.context import current
from dashboard.figures import memory_figure, timeline_figure

dash.register_page(__name__, path="/", title="Runs · Beliefscope", name="Runs")

GRID_OPTIONS = {
    "rowSelection": {"mode": "singleRow", "checkboxes": False, "enableClickSelection": True},
    "rowHeight": 28,
    "headerHeight": 30,
    "suppressCellFocus": True,
    "animateRows": False,
}


def layout(run: str | None = None, **_: Any) -> html.Div:
    if not session.can_read():
        return ui.sign_in_needed()
    q = current().queries
    runs = list(q.list_runs(limit=1000).items)
    if not runs:
        return ui.missing(
            "No runs yet. Ingest a training log dir: `beliefscope ingest RUN_DIR`, or run "
            "`beliefscope demo`."
        )
    chosen = next((r for r in runs if str(r.id) == str(run)), runs[0])
    rows = [
        {
            "id": str(r.id),
            "run": r.name,
            "family": r.family or "—",
            "format": r.format or "—",
            "checkpoints": r.n_checkpoints,
            "episodes": r.n_episodes,
            "traces": r.n_traces,
            "ingest": r.latest_job_state or "—",
            "created": f"{r.created:%Y-%m-%d %H:%M}",
            "logdir": r.logdir,
        }
        for r in runs
    ]
    columns = [
        {"field": "run", "flex": 2, "minWidth": 160},
        {"field": "family", "width": 110},
        {"field": "checkpoints", "width": 110, "type": "rightAligned"},
        {"field": "episodes", "width": 100, "type": "rightAligned"},
        {"field": "traces", "width": 90, "type": "rightAligned"},
        {"field": "ingest", "width": 100},
        {"field": "created", "width": 140},
        {"field": "logdir", "flex": 3, "minWidth": 200},
    ]
    grid = dag.AgGrid(
        id="runs-grid",
        rowData=rows,
        columnDefs=columns,
        defaultColDef={"sortable": True, "filter": True, "resizable": True},
        dashGridOptions=GRID_OPTIONS,
        selectedRows=[r for r in rows if r["id"] == str(chosen.id)],
        getRowId="params.data.id",
        style={"height": f"{min(36 + 28 * len(rows), 240) + 4}px"},
    )
    return html.Div(
        [
            html.Div(
                [html.H1("Runs"), html.Span(f"{len(runs)} in the store", className="bs-sub")],
                className="bs-title",
            ),
            html.Div(grid, className="bs-card"),
            html.Div(_run_detail(chosen.id), id="runs-detail", style={"marginTop": "12px"}),
        ]
    )


def _run_detail(run_id: int) -> html.Div:
    q = current().queries
    store = current().store
    run = q.get_run(run_id=run_id)
    checkpoints = data.checkpoints_of(run_id)
    summaries = {s.checkpoint_id: s for s in q.checkpoint_summaries(run_id=run_id)}
    scored = store.reviews.list_scores(run_id=run_id, split=None)
    split = "held-out" if any(s.split == "held-out" for s in scored) else "all"
    scores = {s.checkpoint_id: s.score for s in scored if s.split == split}
    findings = current().reviews.run_findings(run_id=run_id)
    flag_counts = {
        c.id: store.reviews.list_flags(checkpoint_id=c.id, limit=1).total for c in checkpoints
    }
    steps = [c.step if c.step is not None else i for i, c in enumerate(checkpoints)]
    by_id = {c.id: s for c, s in zip(checkpoints, steps, strict=True)}

    def col(fn) -> list[float | None]:
        return [fn(c) for c in checkpoints]

    rows: dict[str, dict[str, list[float | None]]] = {
        "KL": {
            "mean": col(lambda c: summaries[c.id].kl.mean if c.id in summaries else None),
            "p95": col(lambda c: summaries[c.id].kl.p95 if c.id in summaries else None),
        },
        "correction": {
            "mean": col(lambda c: summaries[c.id].correction.mean if c.id in summaries else None),
            "p95": col(lambda c: summaries[c.id].correction.p95 if c.id in summaries else None),
        },
        "flags / trace": {
            "flags / trace": col(
                lambda c: (
                    flag_counts[c.id] / summaries[c.id].n_traces
                    if c.id in summaries and summaries[c.id].n_traces
                    else None
                )
            )
        },
    }
    if scores:
        title = "scores (held-out)" if split == "held-out" else "scores"
        figures = {
            "slip recall": "slip_recall",
            "slip precision": "slip_precision",
            "plain flagged": "plain_flagged",
            "slip AUC": "slip_auc",
        }
        rows[title] = {
            name: col(lambda c, f=field: getattr(scores[c.id], f) if c.id in scores else None)
            for name, field in figures.items()
        }
    marks = [
        (by_id[f.checkpoint], f.kind.replace("_", " ")) for f in findings if f.checkpoint in by_id
    ]
    figure = timeline_figure(steps, rows, findings=marks)
    latest = checkpoints[-1] if checkpoints else None
    return html.Div(
        [
            html.Div(
                [
                    html.Div(
                        [
                            html.H2(f"{run.name} · across training"),
                            html.Span(f"{len(checkpoints)} checkpoints", className="bs-sub"),
                        ],
                        className="bs-card-head",
                    ),
                    dcc.Graph(id="runs-timeline", figure=figure, config=ui.GRAPH_CONFIG),
                    html.Div(
                        [html.Div(f.summary, className="bs-finding") for f in findings]
                        or [html.Div("No chronic findings.", className="bs-sub")],
                    ),
                ],
                className="bs-card",
            ),
            audit_card(store.reviews.list_probe_summaries(run_id=run_id, probe=PROBE)),
            _memory(checkpoints),
            html.Div(_episodes(run_id, latest), className="bs-card"),
        ],
        className="bs-col",
    )


def _memory(checkpoints: Sequence[CheckpointInfo]) -> html.Div:
    """The belief probe of each checkpoint that has one, as small multiples."""
    panels = []
    for ckpt in checkpoints:
        try:
            summary = current().store.reviews.get_probe_summary(
                checkpoint_id=ckpt.id, probe="decode"
            )
        except NotFoundError:
            continue
        panels.append((ui.ckpt_label(ckpt, ckpt.id), summary))
    tested = panels[-1][1].get("test_episodes", []) if panels else []
    return html.Div(
        [
            html.Div(
                [
                    html.H2("Belief memory"),
                    html.Span(
                        "where the belief puts the hidden box, by steps since it was hidden "
                        f"(decode probe, {len(tested)} held-out episodes)",
                        className="bs-sub",
                    ),
                ],
                className="bs-card-head",
            ),
            dcc.Graph(id="runs-memory", figure=memory_figure(panels[-6:]), config=ui.GRAPH_CONFIG),
        ],
        className="bs-card",
    )


def _episodes(run_id: int, latest) -> list[Any]:
    q = current().queries
    episodes = q.list_episodes(run_id=run_id, limit=MAX_LIMIT).items
    priority = (
        current().reviews.episode_priorities(checkpoint_id=latest.id) if latest is not None else {}
    )
    rows = [
        {
            "id": str(e.id),
            "episode": e.key,
            "steps": e.length,
            "return": None if e.episode_return is None else round(e.episode_return, 3),
            "truth": "yes" if e.has_truth else "",
            "priority": round(priority.get(e.id, 0.0), 3),
        }
        for e in episodes
    ]
    rows.sort(key=lambda r: -float(r["priority"] or 0))
    label = ui.ckpt_label(latest, latest.id) if latest else "—"
    return [
        html.Div(
            [
                html.H2("Episodes"),
                html.Span(
                    f"ranked by review priority under {label} · click to open", className="bs-sub"
                ),
            ],
            className="bs-card-head",
        ),
        dag.AgGrid(
            id="runs-episodes",
            rowData=rows,
            columnDefs=[
                {"field": "episode", "flex": 3, "minWidth": 220},
                {"field": "priority", "width": 100, "type": "rightAligned", "sort": "desc"},
                {"field": "steps", "width": 90, "type": "rightAligned"},
                {"field": "return", "width": 100, "type": "rightAligned"},
                {"field": "truth", "width": 80},
            ],
            defaultColDef={"sortable": True, "filter": True, "resizable": True},
            dashGridOptions=GRID_OPTIONS,
            getRowId="params.data.id",
            style={"height": "300px"},
        ),
    ]


@callback(
    Output("bs-url", "href", allow_duplicate=True),
    Input("runs-grid", "selectedRows"),
    State("bs-url", "search"),
    prevent_initial_call=True,
)
def select_run(selected: list[dict] | None, search: str | None) -> str:
    if not selected:
        raise PreventUpdate
    href = f"/?run={selected[0]['id']}"
    if (search or "") == href[1:] or (not search and selected[0]["id"] == str(_first_run_id())):
        raise PreventUpdate  # the grid reporting the selection it was rendered with
    return href


def _first_run_id() -> int | None:
    items = current().queries.list_runs(limit=1).items
    return items[0].id if items else None


@callback(
    Output("bs-url", "href", allow_duplicate=True),
    Input("runs-episodes", "cellClicked"),
    prevent_initial_call=True,
)
def open_episode(cell: dict | None) -> str:
    if not cell or cell.get("rowId") is None:
        raise PreventUpdate
    return f"/episodes/{cell['rowId']}"
