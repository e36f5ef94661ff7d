"""Compare two checkpoints on the same episode under one cursor, and over all shared episodes.

URL: /compare?episode=<id>&a=<checkpoint>&b=<checkpoint>&t=<step>. Defaults: A the run's
earliest checkpoint and B its latest (by training step) with a trace on the episode; a link
that names only A (the episode page's "Compare checkpoints", from the checkpoint it showed)
compares that one with the latest. Labels name the run: `pretrained-tiny @ 2,000`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dash
import dash_ag_grid as dag
from dash import Input, Output, Patch, State, callback, dcc, html
from dash.exceptions import PreventUpdate

from beliefscope.values.page import MAX_LIMIT
from dashboard import data, session, ui
from dashboard.components import player
from dashboard.context import current
from dashboard.figures import compare_figure

dash.register_page(__name__, path="/compare", title="Compare · Beliefscope", name="Compare")

GRAPH = "cmp-graph"
METRICS = ("kl", "correction")
player.register("cmp", [GRAPH])


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def layout(
    episode: str | None = None,
    a: str | None = None,
    b: str | None = None,
    t: str | None = None,
    **_: Any,
) -> html.Div:
    if not session.can_read():
        return ui.sign_in_needed()
    q = current().queries
    ep = data.get_or_none(q.get_episode, episode_id=_int(episode)) if episode else None
    if ep is None:
        ep = _default_episode()
        if ep is None:
            return ui.missing("Nothing to compare yet: ingest at least two checkpoints.")
    run = q.get_run(run_id=ep.run_id)
    ordered = data.checkpoints_of(ep.run_id)
    checkpoints = {c.id: c for c in ordered}
    traces = [x for x in data.traces_of_episode(ep.id) if x.variant == "filter"]
    traced = {x.checkpoint_id for x in traces}
    have = [c.id for c in ordered if c.id in traced]
    a_id, b_id = default_pair(have, _int(a), _int(b))
    options = [{"label": ui.ckpt_label(checkpoints.get(i), i), "value": i} for i in have]
    episodes = q.list_episodes(run_id=ep.run_id, limit=MAX_LIMIT).items
    toolbar = html.Div(
        [
            ui.field(
                "episode",
                dcc.Dropdown(
                    id="cmp-episode",
                    options=[
                        {
                            "label": html.Span(
                                f"{run.name} · {ui.episode_name(e.key)}", title=e.key
                            ),
                            "value": e.id,
                            "search": e.key,
                        }
                        for e in episodes
                    ],
                    value=ep.id,
                    clearable=False,
                    className="bs-dd",
                    style={"minWidth": "260px"},
                ),
            ),
            ui.field(
                "A",
                dcc.Dropdown(
                    id="cmp-a", options=options, value=a_id, clearable=False, className="bs-dd"
                ),
            ),
            ui.field(
                "B",
                dcc.Dropdown(
                    id="cmp-b", options=options, value=b_id, clearable=False, className="bs-dd"
                ),
            ),
            dcc.Link(
                "Open episode →",
                href=f"/episodes/{ep.id}?checkpoint={b_id}",
                className="bs-btn",
                style={"lineHeight": "24px"},
            ),
        ],
        className="bs-toolbar",
    )
    head = html.Div(
        [
            html.H1("Compare checkpoints"),
            html.Span(
                f"episode {ui.episode_name(ep.key)} of {run.name} · {ep.length} steps",
                className="bs-sub",
                title=ep.key,
            ),
        ],
        className="bs-title",
    )
    if a_id is None or b_id is None:
        return html.Div([head, toolbar, ui.missing("This episode has no traces yet.")])
    trace_a = data.pick_trace(traces, a_id, "filter")
    trace_b = data.pick_trace(traces, b_id, "filter")
    assert trace_a is not None and trace_b is not None
    step = min(max(_int(t) or 0, 0), ep.length - 1)
    flags_a, flags_b = data.flags_of(trace_a.id), data.flags_of(trace_b.id)
    only_a, only_b = data.only_in_one(flags_a, flags_b)
    label_a = ui.run_ckpt_label(run, checkpoints[a_id])
    label_b = ui.run_ckpt_label(run, checkpoints[b_id])
    figure = _figure(trace_a, trace_b, label_a, label_b, flags_a, flags_b, only_a, only_b)
    truth, _unreadable = data.truth_of(ep)
    return html.Div(
        [
            head,
            toolbar,
            dcc.Store(
                id="cmp-traces",
                data={
                    "a": trace_a.id,
                    "b": trace_b.id,
                    "labels": [label_a, label_b],
                    "length": ep.length,
                    "episode": ep.id,
                    "checkpoints": [a_id, b_id],
                },
            ),
            html.Div(
                player.frame_player(
                    "cmp",
                    panels=_panels(ep, (a_id, b_id), (label_a, label_b), truth),
                    length=ep.length,
                    t=step,
                    graphs=[GRAPH],
                    flags=[flags_a, flags_b],
                    columns=4,
                ),
                className="bs-card",
            ),
            html.Div(
                [
                    html.Div(
                        dcc.Graph(id=GRAPH, figure=figure, config=ui.GRAPH_CONFIG),
                        className="bs-card",
                    ),
                    html.Div(
                        [
                            html.Div(html.H2("Flags"), className="bs-card-head"),
                            _flag_diff(flags_a, flags_b, only_a, only_b),
                        ],
                        className="bs-card",
                    ),
                ],
                className="cmp-grid",
            ),
            html.Div(
                [
                    html.Div(
                        [
                            html.H2("All shared episodes"),
                            html.Span("filter traces of A and B, B − A", className="bs-sub"),
                        ],
                        className="bs-card-head",
                    ),
                    _summary(a_id, b_id),
                ],
                className="bs-card",
                style={"marginTop": "12px"},
            ),
        ]
    )


def default_pair(
    have: Sequence[int], a: int | None, b: int | None
) -> tuple[int | None, int | None]:
    """(A, B) among the checkpoints `have` (ids by training step): as asked where they exist;
    B defaults to the latest; A to the earliest, or, named alone, is compared with the
    latest (and the latest alone with the earliest)."""
    if not have:
        return None, None
    a = a if a in have else None
    b = b if b in have else None
    if b is None:
        b = have[-1] if a != have[-1] else have[0]
        if a is None:
            a = have[0]
    if a is None:
        a = have[0] if b != have[0] else have[-1]
    return a, b


def _panels(ep, checkpoint_ids, labels, truth) -> list[player.Panel]:
    """A row per checkpoint: observation (the ground-truth view on B's row where the episode
    has one), then that checkpoint's reconstruction, prediction and error."""
    ctx = current()
    rows = []
    for side, (cid, label) in enumerate(zip(checkpoint_ids, labels, strict=True)):
        name = "AB"[side]
        strip = ctx.strip_url(ep.id, checkpoint_id=cid)
        first = player.Panel("observation", strip, col=0, cols=4, flags=-1)
        if side == 1 and truth is not None and truth.has_state:
            first = player.Panel(
                "overview camera · ground truth", ctx.truth_url(ep.id), kind="step", flags=-1
            )
        rows.append(first)
        rows += [
            player.Panel(f"{name} · {what} · {label}", strip, col=col, cols=4, flags=side)
            for col, what in ((1, "posterior recon"), (2, "prior prediction"), (3, "error"))
        ]
    return rows


def _default_episode():
    """The first episode of the first run with two checkpoints or more (else of any run)."""
    q = current().queries
    runs = sorted(q.list_runs(limit=1000).items, key=lambda r: r.n_checkpoints < 2)
    for run in runs:
        episodes = q.list_episodes(run_id=run.id, limit=1).items
        if episodes:
            return episodes[0]
    return None


def _figure(
    trace_a,
    trace_b,
    label_a,
    label_b,
    flags_a,
    flags_b,
    only_a,
    only_b,
    t0=None,
    t1=None,
    x_range=None,
):
    series_a, _ = data.trace_series(trace_a, metrics=METRICS, t0=t0, t1=t1)
    series_b, _ = data.trace_series(trace_b, metrics=METRICS, t0=t0, t1=t1)
    return compare_figure(
        series_a,
        series_b,
        label_a=label_a,
        label_b=label_b,
        length=trace_a.length,
        bands_a=flags_a,
        bands_b=flags_b,
        only_a=only_a,
        only_b=only_b,
        x_range=x_range,
    )


def _flag_diff(flags_a, flags_b, only_a, only_b) -> html.Table | html.Div:
    rows = [("A", f, f.id in only_a) for f in flags_a] + [("B", f, f.id in only_b) for f in flags_b]
    if not rows:
        return html.Div("Neither checkpoint has flags on this episode.", className="bs-empty")
    rows.sort(key=lambda r: (r[1].t0, r[0]))
    head = html.Tr([html.Th(h) for h in ("", "#", "steps", "peak", "rule", "state", "")])
    body = [
        html.Tr(
            [
                html.Td(html.B(side)),
                html.Td(f.id, className="bs-mono"),
                html.Td(f"{f.t0}–{f.t1}", className="bs-mono"),
                html.Td("—" if f.peak is None else f"{f.peak:.3g}", className="bs-mono"),
                html.Td(f.rule_name or "manual"),
                html.Td(ui.state_pill(f.state)),
                html.Td(
                    html.Span(f"only {side}", className="bs-pill bs-pill-confirmed") if solo else ""
                ),
            ]
        )
        for side, f, solo in rows
    ]
    return html.Table([html.Thead(head), html.Tbody(body)], className="bs-flags")


def _summary(a_id: int, b_id: int) -> dag.AgGrid:
    q = current().queries
    store = current().store
    ta = {
        x.episode_id: x
        for x in q.list_traces(checkpoint_id=a_id, variant="filter", limit=MAX_LIMIT).items
    }
    tb = {
        x.episode_id: x
        for x in q.list_traces(checkpoint_id=b_id, variant="filter", limit=MAX_LIMIT).items
    }
    counts = {}
    for cid in (a_id, b_id):
        per: dict[int, int] = {}
        for f in store.reviews.list_flags(checkpoint_id=cid, limit=MAX_LIMIT).items:
            per[f.episode_id] = per.get(f.episode_id, 0) + 1
        counts[cid] = per

    def r(v: float | None) -> float | None:
        return None if v is None else round(v, 4)

    def d(x: float | None, y: float | None) -> float | None:
        return None if x is None or y is None else round(y - x, 4)

    rows = []
    for eid in sorted(set(ta) & set(tb)):
        a, b = ta[eid], tb[eid]
        rows.append(
            {
                "id": str(eid),
                "episode": ui.episode_name(q.get_episode(episode_id=eid).key),
                "KL A": r(a.kl_mean),
                "KL B": r(b.kl_mean),
                "Δ KL": d(a.kl_mean, b.kl_mean),
                "corr A": r(a.correction_mean),
                "corr B": r(b.correction_mean),
                "Δ corr": d(a.correction_mean, b.correction_mean),
                "flags A": counts[a_id].get(eid, 0),
                "flags B": counts[b_id].get(eid, 0),
            }
        )
    number = {"width": 105, "type": "rightAligned"}
    return dag.AgGrid(
        id="cmp-summary",
        rowData=rows,
        columnDefs=[{"field": "episode", "flex": 3, "minWidth": 240}]
        + [
            {"field": f, **number}
            for f in ("KL A", "KL B", "Δ KL", "corr A", "corr B", "Δ corr", "flags A", "flags B")
        ],
        defaultColDef={"sortable": True, "resizable": True, "filter": True},
        dashGridOptions={"rowHeight": 28, "headerHeight": 30},
        getRowId="params.data.id",
        style={"height": "300px"},
    )


@callback(
    Output("bs-url", "href", allow_duplicate=True),
    Input("cmp-episode", "value"),
    Input("cmp-a", "value"),
    Input("cmp-b", "value"),
    State("cmp-t", "data"),
    State("cmp-traces", "data"),
    prevent_initial_call=True,
)
def switch(episode_id: int, a: int, b: int, t: int | None, shown: dict) -> str:
    if (episode_id, a, b) == (shown["episode"], shown["checkpoints"][0], shown["checkpoints"][1]):
        raise PreventUpdate  # the dropdowns reporting the values they were rendered with
    if dash.ctx.triggered_id == "cmp-episode":
        return f"/compare?episode={episode_id}&a={a}&b={b}"
    return f"/compare?episode={episode_id}&a={a}&b={b}&t={t or 0}"


@callback(
    Output(GRAPH, "figure", allow_duplicate=True),
    Input("cmp-zoom", "data"),
    State("cmp-traces", "data"),
    prevent_initial_call=True,
)
def zoom(window: dict | None, traces: dict | None) -> Patch:
    if not window or not traces:
        raise PreventUpdate
    q = current().queries
    ta, tb = q.get_trace(trace_id=traces["a"]), q.get_trace(trace_id=traces["b"])
    t0 = None if window.get("x0") is None else max(int(window["x0"]), 0)
    t1 = None if window.get("x1") is None else int(window["x1"]) + 1
    label_a, label_b = traces["labels"]
    fresh = _figure(ta, tb, label_a, label_b, (), (), (), (), t0=t0, t1=t1)
    patch = Patch()
    patch["data"] = fresh["data"]
    return patch
