"""Runs: every run with its ingest state (progress while it runs, the error when it failed),
and per run how the belief state evolves across training (checkpoint timeline of summary
metrics, scores and chronic findings), the run audit of `beliefscope audit`, plus its episodes
ranked by review priority. A signed-in user can delete a run (a failed ingest, a run ingested by
mistake).

URL: /?run=<run_id>
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dash
import dash_ag_grid as dag
from dash import Input, Output, State, callback, dcc, html
from dash.exceptions import PreventUpdate

from beliefscope.errors import BeliefscopeError, NotFoundError
from beliefscope.values.audit import PROBE
from beliefscope.values.jobs import JobInfo
from beliefscope.values.page import MAX_LIMIT
from beliefscope.values.traces import CheckpointInfo, RunInfo
from dashboard import data, session, ui
from dashboard.components.audit import audit_card
from dashboard.components.truth import TRUTH_COLUMNS, keep_row, truth_columns, truth_filter
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
    rows = _run_rows(runs)
    columns = [
        {"field": "run", "flex": 2, "minWidth": 160},
        {"field": "family", "width": 110},
        {"field": "checkpoints", "width": 110, "type": "rightAligned"},
        {"field": "episodes", "width": 100, "type": "rightAligned"},
        {"field": "traces", "width": 90, "type": "rightAligned"},
        {"field": "ingest", "width": 260, "tooltipField": "ingest"},
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
            # while an ingest runs, the grid's counts and progress refresh on their own
            dcc.Interval(id="runs-refresh", interval=3000, disabled=not _ingesting(runs)),
            html.Div(_run_detail(chosen.id), id="runs-detail", style={"marginTop": "12px"}),
        ]
    )


def _latest_job(run_id: int) -> JobInfo | None:
    jobs = current().queries.list_jobs(run_id=run_id, limit=1).items
    return jobs[0] if jobs else None


def _ingesting(runs: Sequence[RunInfo]) -> bool:
    return any(r.latest_job_state in ("queued", "running") for r in runs)


def _run_rows(runs: Sequence[RunInfo]) -> list[dict[str, Any]]:
    rows = []
    for r in runs:
        job = _latest_job(r.id) if r.latest_job_state else None
        rows.append(
            {
                "id": str(r.id),
                "run": r.name,
                "family": r.family or "—",
                "format": r.format or "—",
                "checkpoints": r.n_checkpoints,
                "episodes": r.n_episodes,
                "traces": r.n_traces,
                "ingest": "—" if job is None else job.progress(),
                "created": f"{r.created:%Y-%m-%d %H:%M}",
                "logdir": r.logdir,
            }
        )
    return rows


def _ingest_state(run: RunInfo) -> list[Any]:
    """The run's latest ingest as a user needs it: its error when it failed (with the first
    files it refused), its progress while it runs; and, for a signed-in user, a delete."""
    job = _latest_job(run.id)
    out: list[Any] = []
    if job is not None and job.state == "failed":
        errors = current().queries.list_job_errors(job_id=job.id, limit=5).items
        out.append(
            html.Div(
                [
                    html.Strong(f"Ingest failed (job {job.id}): "),
                    job.message or "see its errors",
                    html.Ul([html.Li(f"{e.file or e.unit}: {e.reason}") for e in errors]),
                ],
                className="bs-finding",
                id="runs-failed",
            )
        )
    elif job is not None and job.state in ("queued", "running"):
        out.append(html.Div(f"Ingest {job.progress()}", className="bs-sub", id="runs-progress"))
    if session.reviewer_name() is not None:
        out += [
            html.Button("Delete run", id="runs-delete", className="bs-btn bs-btn-confirm"),
            dcc.ConfirmDialog(
                id="runs-delete-confirm",
                message=(
                    f"Delete run {run.name}: its {run.n_checkpoints} checkpoints, "
                    f"{run.n_episodes} episodes, {run.n_traces} traces, and their flags and "
                    "reviews? This cannot be undone."
                ),
            ),
            dcc.Store(id="runs-delete-id", data=run.id),
        ]
    return out


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
    steps = [c.step for c in checkpoints]
    index = {c.id: i for i, c in enumerate(checkpoints)}

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
        (index[f.checkpoint], f.kind.replace("_", " ")) for f in findings if f.checkpoint in index
    ]
    labels = [ui.step_label(c) for c in checkpoints]
    figure = timeline_figure(steps, rows, labels=labels, findings=marks)
    latest = checkpoints[-1] if checkpoints else None
    return html.Div(
        [
            html.Div(
                [
                    html.Div(
                        [
                            html.H2(f"{run.name} · across training"),
                            html.Span(f"{len(checkpoints)} checkpoints", className="bs-sub"),
                            *_ingest_state(run),
                        ],
                        className="bs-card-head",
                    ),
                    dcc.Graph(id="runs-timeline", figure=figure, config=ui.GRAPH_CONFIG),
                    html.Div(
                        _findings(findings, {c.id: c for c in checkpoints})
                        or [html.Div("No chronic findings.", className="bs-sub")],
                        id="runs-findings",
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


def _findings(findings, checkpoints: dict[int, CheckpointInfo]) -> list[html.Div]:
    """One line per kind of finding: what it means once, then each checkpoint it is about with
    its own figure (`share: what it means` summaries)."""
    kinds: dict[str, list] = {}
    for f in findings:
        kinds.setdefault(f.kind, []).append(f)
    out = []
    for kind, group in kinds.items():
        meaning = group[0].summary.partition(": ")[2] or group[0].summary
        items = [
            html.Li(
                [
                    html.B(
                        ui.step_label(checkpoints[f.checkpoint])
                        if f.checkpoint in checkpoints
                        else f"checkpoint {f.checkpoint}"
                    ),
                    " · " + f.summary.partition(": ")[0],
                ]
            )
            for f in group
        ]
        out.append(
            html.Div(
                [html.B(kind.replace("_", " ")), f": {meaning}", html.Ul(items)],
                className="bs-finding",
            )
        )
    return out


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


def episode_rows(run_id: int, latest) -> list[dict[str, Any]]:
    """Rows of a run's episode list, by review priority under `latest`, with their ground
    truth where they have one."""
    q = current().queries
    episodes = q.list_episodes(run_id=run_id, limit=MAX_LIMIT).items
    priority = (
        current().reviews.episode_priorities(checkpoint_id=latest.id) if latest is not None else {}
    )
    facts = current().reviews.truth_facts(
        run_id=run_id, checkpoint_id=latest.id if latest is not None else None
    )
    rows = []
    for i, e in enumerate(episodes, start=1):
        truth = facts.get(e.id)
        rows.append(
            {
                "id": str(e.id),
                "#": i,
                "episode": ui.episode_name(e.key),
                "key": e.key,
                "steps": e.length,
                "return": None if e.episode_return is None else round(e.episode_return, 3),
                "priority": round(priority.get(e.id, 0.0), 3),
                **truth_columns(truth),
            }
        )
    rows.sort(key=lambda r: -float(r["priority"] or 0))
    return rows


def _episodes(run_id: int, latest) -> list[Any]:
    rows = episode_rows(run_id, latest)
    label = ui.ckpt_label(latest, latest.id) if latest else "—"
    return [
        html.Div(
            [
                html.H2("Episodes"),
                html.Span(
                    f"ranked by review priority under {label} · click to open at that checkpoint",
                    className="bs-sub",
                ),
                truth_filter("runs-truth", any(r["slips"] is not None for r in rows)),
            ],
            className="bs-card-head",
        ),
        dcc.Store(id="runs-latest", data=latest.id if latest is not None else None),
        dcc.Store(id="runs-run", data=run_id),
        dag.AgGrid(
            id="runs-episodes",
            rowData=rows,
            columnDefs=[
                {"field": "#", "width": 70, "type": "rightAligned"},
                {"field": "episode", "flex": 2, "minWidth": 120, "tooltipField": "key"},
                {"field": "priority", "width": 100, "type": "rightAligned", "sort": "desc"},
                {"field": "steps", "width": 90, "type": "rightAligned"},
                {"field": "return", "width": 100, "type": "rightAligned"},
                *TRUTH_COLUMNS,
            ],
            defaultColDef={"sortable": True, "filter": True, "resizable": True},
            dashGridOptions={**GRID_OPTIONS, "tooltipShowDelay": 300},
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
    Output("runs-grid", "rowData"),
    Output("runs-refresh", "disabled"),
    Input("runs-refresh", "n_intervals"),
    prevent_initial_call=True,
)
def refresh_runs(_n: int) -> tuple[list[dict[str, Any]], bool]:
    runs = list(current().queries.list_runs(limit=1000).items)
    return _run_rows(runs), not _ingesting(runs)


@callback(
    Output("runs-delete-confirm", "displayed"),
    Input("runs-delete", "n_clicks"),
    prevent_initial_call=True,
)
def ask_delete(clicks: int | None) -> bool:
    if not clicks:
        raise PreventUpdate
    return True


@callback(
    Output("bs-toast", "children", allow_duplicate=True),
    Output("bs-url", "href", allow_duplicate=True),
    Input("runs-delete-confirm", "submit_n_clicks"),
    State("runs-delete-id", "data"),
    prevent_initial_call=True,
)
def delete_run(confirmed: int | None, run_id: int) -> tuple[Any, Any]:
    if not confirmed:
        raise PreventUpdate
    try:
        who = session.require("admin")
        gone = current().store.writer.delete_run(run_id, who=who)
    except (session.NotAllowed, BeliefscopeError) as err:
        return session.toast(str(err), ok=False), dash.no_update
    message = (
        f"run {gone.name} deleted: {gone.checkpoints} checkpoints, {gone.episodes} episodes, "
        f"{gone.traces} traces"
    )
    return session.toast(message), "/"


@callback(
    Output("bs-url", "href", allow_duplicate=True),
    Input("runs-episodes", "cellClicked"),
    State("runs-latest", "data"),
    prevent_initial_call=True,
)
def open_episode(cell: dict | None, checkpoint_id: int | None) -> str:
    """The episode at the checkpoint the list ranks it under."""
    if not cell or cell.get("rowId") is None:
        raise PreventUpdate
    at = "" if checkpoint_id is None else f"?checkpoint={checkpoint_id}"
    return f"/episodes/{cell['rowId']}{at}"


@callback(
    Output("runs-episodes", "rowData"),
    Input("runs-truth", "value"),
    State("runs-latest", "data"),
    State("runs-run", "data"),
    prevent_initial_call=True,
)
def filter_by_truth(wanted: str | None, checkpoint_id: int | None, run_id: int) -> list[dict]:
    """The list's rows narrowed by ground truth."""
    latest = (
        None
        if checkpoint_id is None
        else current().queries.get_checkpoint(checkpoint_id=checkpoint_id)
    )
    return [r for r in episode_rows(run_id, latest) if keep_row(r, wanted)]
