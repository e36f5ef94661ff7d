"""Episode forensics: the frame player beside stacked, x-linked plots of one trace, with the
episode's ground truth (a lane under the plots, the overview re-render in the player).

URL: /episodes/<episode_id>?checkpoint=<id>&variant=<spec>&t=<step>&flag=<id>&rule=<name>
(`probe=` of older links is read as `variant=`). Without `checkpoint`: the run's latest
checkpoint (by training step) with a trace on the episode; links from the other pages pass the
checkpoint they were showing.
Scrubbing is clientside (components/player.py); the server answers zoom (a min/max downsampled
re-read of the visible window) and review writes.
"""

from __future__ import annotations

from typing import Any

import dash
from dash import ALL, Input, Output, Patch, State, callback, dcc, html
from dash.exceptions import PreventUpdate

from beliefscope.errors import BeliefscopeError
from beliefscope.values.traces import BELIEF_VARIANT
from dashboard import data, session, ui
from dashboard.components import player
from dashboard.context import current
from dashboard.figures import STATE_COLOR, episode_figure

dash.register_page(
    __name__, path_template="/episodes/<episode_id>", title="Episode · Beliefscope", name="Episode"
)

GRAPH = "ep-graph"
player.register("ep", [GRAPH])


def _int(value: Any, default: int | None = None) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def layout(
    episode_id: str | None = None,
    checkpoint: str | None = None,
    variant: str | None = None,
    probe: str | None = None,
    t: str | None = None,
    flag: str | None = None,
    rule: str | None = None,
    **_: Any,
) -> html.Div:
    if not session.can_read():
        return ui.sign_in_needed()
    q = current().queries
    episode = data.get_or_none(q.get_episode, episode_id=_int(episode_id, -1))
    if episode is None:
        return ui.missing(f"No episode with id {episode_id}.")
    run = q.get_run(run_id=episode.run_id)
    traces = data.traces_of_episode(episode.id)
    ordered = data.checkpoints_of(run.id)
    checkpoints = {c.id: c for c in ordered}
    trace = data.pick_trace(
        traces, _int(checkpoint), variant or probe or "filter", [c.id for c in ordered]
    )
    active = data.rule_for() if rule is None else _rule_named(rule)
    truth, truth_error = data.truth_of(episode)
    header = _header(episode, run, traces, trace, checkpoints, active, truth, truth_error)
    if trace is None:
        return html.Div([header, ui.missing("No checkpoint has been run over this episode yet.")])
    flags = data.flags_of(trace.id)
    selected = next((f for f in flags if f.id == _int(flag)), None)
    step = _int(t, selected.t0 if selected else 0) or 0
    x_range = None
    if selected is not None:
        pad = max(20, (selected.t1 - selected.t0) * 2)
        x_range = (max(selected.t0 - pad, 0) - 0.5, min(selected.t1 + pad, trace.length - 1) + 0.5)
    threshold = current().reviews.effective_threshold(active, trace) if active else None
    line = (active.metric, threshold) if active is not None and threshold is not None else None
    t0, t1 = (None, None) if x_range is None else (int(x_range[0] + 0.5), int(x_range[1] - 0.5))
    series, groups = data.trace_series(trace, t0=t0, t1=t1)
    figure = episode_figure(
        series,
        length=trace.length,
        kl_groups=groups,
        bands=flags,
        threshold=line,
        truth=None if truth is None else data.truth_lane(truth, t0=t0, t1=t1),
        x_range=x_range,
        selected_flag=selected.id if selected else None,
    )
    figure["layout"]["selectdirection"] = "h"
    decoded = any(
        x.variant == BELIEF_VARIANT and x.checkpoint_id == trace.checkpoint_id for x in traces
    )
    return html.Div(
        [
            header,
            dcc.Store(
                id="ep-trace",
                data={
                    "trace": trace.id,
                    "length": trace.length,
                    "line": line,
                    "episode": episode.id,
                    "shown": [trace.checkpoint_id, trace.variant, active.name if active else None],
                },
            ),
            dcc.Store(id="ep-sel", data=selected.id if selected else None),
            dcc.Store(id="ep-rev", data=0),
            dcc.Store(id="ep-catrev", data=0),
            html.Div(
                [
                    html.Div(
                        [
                            html.Div(
                                player.frame_player(
                                    "ep",
                                    panels=_panels(episode, trace, truth, decoded),
                                    length=trace.length,
                                    t=step,
                                    graphs=[GRAPH],
                                    flags=[flags],
                                    readout=[("KL", "KL"), ("correction", "correction")],
                                ),
                                className="bs-card",
                            ),
                            html.Div(
                                [
                                    html.Div(
                                        [
                                            html.H2("Flags"),
                                            ui.state_legend(),
                                            html.Button(
                                                "Flag selection",
                                                id="ep-mflag",
                                                className="bs-btn",
                                                title="box-select a step range on the plots "
                                                "(Box Select in the plot toolbar), then flag it",
                                            ),
                                        ],
                                        className="bs-card-head",
                                    ),
                                    html.Div(_flag_table(flags, selected), id="ep-flags"),
                                    ui.review_controls("ep"),
                                ],
                                className="bs-card",
                            ),
                        ],
                        className="ep-left",
                    ),
                    html.Div(
                        [
                            _plot_legend(flags, active if line else None),
                            dcc.Graph(
                                id=GRAPH,
                                figure=figure,
                                config=ui.GRAPH_CONFIG,
                                clear_on_unhover=False,
                            ),
                        ],
                        className="bs-card",
                    ),
                ],
                className="ep-grid",
            ),
        ]
    )


def _panels(episode, trace, truth, decoded: bool) -> list[player.Panel]:
    """Observation, ground-truth view (where the simulator state is saved), posterior
    reconstruction, prior prediction and error, each captioned in HTML."""
    ctx = current()
    strip = ctx.strip_url(episode.id, checkpoint_id=trace.checkpoint_id)
    model = [
        ("observation", "the frame the model was given", 0),
        ("posterior reconstruction", "the belief after the frame, decoded", 1),
        ("prior prediction", "what the dynamics expected before the frame, decoded", 2),
        ("error |obs − recon|", "per-pixel error of the reconstruction (brighter: worse)", 3),
    ]
    panels = [player.Panel(c, strip, col=i, cols=4, title=title) for c, title, i in model]
    if truth is not None and truth.has_state:
        src = ctx.truth_url(episode.id, checkpoint_id=trace.checkpoint_id if decoded else None)
        panels.insert(
            1,
            player.Panel(
                "overview camera · ground truth",
                src,
                kind="step",
                title="the saved simulator state re-rendered from above: it sees what the "
                "robot's camera could not",
                legend=_truth_marks(decoded),
            ),
        )
    return panels


def _truth_marks(decoded: bool) -> html.Div:
    mark = lambda symbol, color, text: html.Span(  # noqa: E731
        [html.I(symbol, style={"color": color}), text], className="bs-mark"
    )
    marks = [mark("◎", "#1a7f37", "true box position")]
    if decoded:
        marks += [
            mark("✕", "#d63fd6", "decoded belief of the box (decode probe)"),
            mark("◌", "#1b9bd1", "imagined futures: mean path, rings = spread"),
        ]
    else:
        marks.append(
            html.Span(
                "belief not decoded for this checkpoint: beliefscope probe decode RUN",
                className="bs-mark",
            )
        )
    return html.Div(marks, className="bs-marks")


def _plot_legend(flags, rule) -> html.Div:
    """The plots' marks that are shapes, not traces (Plotly's legend lists only traces)."""
    states = [s for s in STATE_COLOR if any(f.state == s for f in flags)]
    items: list[Any] = [
        html.Span(
            [html.Span(className="bs-swatch", style={"background": STATE_COLOR[s]}), f"flag · {s}"]
        )
        for s in states
    ]
    if rule is not None:
        items.append(html.Span([html.Span(className="bs-dash"), f"threshold of {rule.name}"]))
    items.append(html.Span([html.Span(className="bs-vline"), "player step"]))
    return html.Div(items, className="bs-plot-legend", id="ep-legend")


def _rule_named(name: str):
    return next((i.rule for i in current().store.reviews.list_rules(name=name)), None)


def _header(episode, run, traces, trace, checkpoints, active, truth, truth_error) -> html.Div:
    ckpt_ids = [c for c in checkpoints if any(t.checkpoint_id == c for t in traces)]
    variants = sorted(
        {t.variant for t in traces if trace is None or t.checkpoint_id == trace.checkpoint_id}
    )
    rules = [i.rule for i in current().store.reviews.list_rules()]
    facts = [
        f"run {run.name}",
        f"{episode.length} steps",
        f"return {episode.episode_return:.3g}" if episode.episode_return is not None else None,
    ]
    if truth is not None:
        facts.append(
            f"ground truth: {_count(truth.occlusions, 'occlusion')}, {_count(truth.slips, 'slip')}"
        )
    elif episode.has_truth and truth_error:
        facts.append(f"ground truth unreadable: {truth_error}")
    return html.Div(
        [
            html.Div(
                [
                    html.H1(
                        f"Episode {ui.episode_name(episode.key)}", title=episode.key, id="ep-name"
                    ),
                    html.Span(
                        " · ".join(f for f in facts if f), className="bs-sub", id="ep-facts-line"
                    ),
                    dcc.Link("← run", href=f"/?run={run.id}", className="bs-sub"),
                ],
                className="bs-title",
            ),
            html.Div(
                [
                    ui.field(
                        "checkpoint",
                        dcc.Dropdown(
                            id="ep-ckpt",
                            options=[
                                {"label": ui.ckpt_label(checkpoints.get(i), i), "value": i}
                                for i in ckpt_ids
                            ],
                            value=trace.checkpoint_id if trace else None,
                            clearable=False,
                            className="bs-dd",
                        ),
                    ),
                    ui.field(
                        "variant",
                        dcc.Dropdown(
                            id="ep-variant",
                            options=variants,
                            value=trace.variant if trace else None,
                            clearable=False,
                            className="bs-dd",
                        ),
                    ),
                    ui.field(
                        "threshold of",
                        dcc.Dropdown(
                            id="ep-rule",
                            options=[r.name for r in rules],
                            value=active.name if active else None,
                            clearable=True,
                            className="bs-dd",
                            placeholder="no rule",
                        ),
                    ),
                    dcc.Link(
                        "Compare checkpoints →",
                        id="ep-compare",
                        href=f"/compare?episode={episode.id}"
                        + (f"&a={trace.checkpoint_id}" if trace else ""),
                        className="bs-btn",
                        style={"lineHeight": "24px"},
                    ),
                ],
                className="bs-toolbar",
            ),
        ]
    )


def _count(n: int, what: str) -> str:
    return f"{n} {what}" + ("" if n == 1 else "s")


def _flag_table(flags, selected) -> html.Table | html.Div:
    if not flags:
        return html.Div("No flags on this trace.", className="bs-empty")
    head = html.Tr([html.Th(h) for h in ("#", "steps", "peak", "rule", "sev", "state")])
    rows = [
        html.Tr(
            [
                html.Td(f.id, className="bs-mono"),
                html.Td(f"{f.t0}–{f.t1}", className="bs-mono"),
                html.Td("—" if f.peak is None else f"{f.peak:.3g}", className="bs-mono"),
                html.Td(f.rule_name or "manual"),
                html.Td(f.severity),
                html.Td(ui.state_pill(f.state, stale=f.stale)),
            ],
            id={"type": "ep-flag", "index": f.id},
            n_clicks=0,
            className="bs-sel" if selected is not None and f.id == selected.id else "",
            style={"cursor": "pointer"},
        )
        for f in flags
    ]
    return html.Table([html.Thead(head), html.Tbody(rows)], className="bs-flags")


@callback(
    Output(GRAPH, "figure", allow_duplicate=True),
    Input("ep-zoom", "data"),
    State("ep-trace", "data"),
    prevent_initial_call=True,
)
def zoom(window: dict | None, trace_data: dict | None) -> Patch:
    """Re-read the visible window at full detail (min/max per bucket over the window)."""
    if not window or not trace_data:
        raise PreventUpdate
    trace = current().queries.get_trace(trace_id=trace_data["trace"])
    t0 = None if window.get("x0") is None else max(int(window["x0"]), 0)
    t1 = None if window.get("x1") is None else int(window["x1"]) + 1
    series, groups = data.trace_series(trace, t0=t0, t1=t1)
    line = tuple(trace_data["line"]) if trace_data.get("line") else None
    truth, _ = data.truth_of(current().queries.get_episode(episode_id=trace_data["episode"]))
    fresh = episode_figure(
        series,
        length=trace.length,
        kl_groups=groups,
        threshold=line,
        truth=None if truth is None else data.truth_lane(truth, t0=t0, t1=t1),
    )
    patch = Patch()
    patch["data"] = fresh["data"]
    return patch


@callback(
    Output("bs-url", "href", allow_duplicate=True),
    Input("ep-ckpt", "value"),
    Input("ep-variant", "value"),
    Input("ep-rule", "value"),
    State("ep-trace", "data"),
    State("ep-t", "data"),
    prevent_initial_call=True,
)
def switch(checkpoint: int, variant: str, rule: str | None, trace_data: dict, t: int) -> str:
    """Another checkpoint, variant or threshold rule is another URL (so it can be shared)."""
    if [checkpoint, variant, rule] == trace_data["shown"]:
        raise PreventUpdate  # the dropdowns reporting the values they were rendered with
    query = f"checkpoint={checkpoint}&variant={variant}&t={t or 0}"
    query += f"&rule={rule or 'none'}"  # "none": no threshold line (absent: the default)
    return f"/episodes/{trace_data['episode']}?{query}"


@callback(
    Output("ep-sel", "data"),
    Output("ep-seek", "data"),
    Input({"type": "ep-flag", "index": ALL}, "n_clicks"),
    prevent_initial_call=True,
)
def select_flag(_clicks: list[int]) -> tuple[int, dict]:
    trigger = dash.ctx.triggered_id
    if not trigger or not any(_clicks):
        raise PreventUpdate
    flag = current().store.reviews.get_flag(flag_id=trigger["index"])
    return flag.id, {"t": flag.t0}


@callback(
    Output("ep-category", "value"),
    Output("ep-note", "value"),
    Output("ep-review", "style"),
    Input("ep-sel", "data"),
    Input("ep-rev", "data"),
)
def review_panel(flag_id: int | None, _version: int) -> tuple[Any, ...]:
    _, category, note, _, style = ui.review_fill(_flag(flag_id), ())
    return category, note, style


@callback(
    Output("ep-facts", "children"),
    Output("ep-history", "children"),
    Input("ep-sel", "data"),
    Input("ep-rev", "data"),
    Input("ep-catrev", "data"),
)
def review_log(flag_id: int | None, _version: int, _catrev: int) -> tuple[Any, ...]:
    """Facts and history apart from the controls: a category edit refreshes only these, so the
    category dropdown is never both an input and an output of one callback chain."""
    flag = _flag(flag_id)
    history = current().store.reviews.flag_history(flag_id=flag.id) if flag else ()
    facts, _, _, items, _ = ui.review_fill(flag, history)
    return facts, items


@callback(
    Output("ep-catrev", "data"),
    Output("bs-toast", "children", allow_duplicate=True),
    Input("ep-category", "value"),
    State("ep-sel", "data"),
    State("ep-catrev", "data"),
    prevent_initial_call=True,
)
def categorize(category: str | None, flag_id: int | None, rev: int) -> tuple[Any, ...]:
    flag = _flag(flag_id)
    if flag is None or flag.category == category:
        raise PreventUpdate  # the panel showing a newly selected flag's category
    changes = ui.review_changes("ep-category", category=category, note=None)
    assert changes is not None
    try:
        current().store.reviews.review_flag(
            flag_id=flag.id, who=session.require("review"), **changes
        )
    except (session.NotAllowed, BeliefscopeError) as err:
        return dash.no_update, session.toast(str(err), ok=False)
    return rev + 1, session.toast(f"flag #{flag.id}: {ui.describe_changes(changes)}")


def _flag(flag_id: int | None):
    if flag_id is None:
        return None
    return data.get_or_none(current().store.reviews.get_flag, flag_id=flag_id)


@callback(
    Output("ep-rev", "data"),
    Output("ep-flags", "children"),
    Output(GRAPH, "figure", allow_duplicate=True),
    Output("ep-spans", "data"),
    Output("bs-toast", "children", allow_duplicate=True),
    Input("ep-confirm", "n_clicks"),
    Input("ep-dismiss", "n_clicks"),
    Input("ep-reopen", "n_clicks"),
    Input("ep-save-note", "n_clicks"),
    Input("ep-mflag", "n_clicks"),
    State("ep-note", "value"),
    State("ep-sel", "data"),
    State("ep-rev", "data"),
    State("ep-trace", "data"),
    State(GRAPH, "selectedData"),
    prevent_initial_call=True,
)
def write(_c, _d, _r, _n, _m, note, flag_id, version, trace_data, selection):
    """The page's review writes: state, note, and manual flags from a box selection."""
    trigger = dash.ctx.triggered_id
    if trigger is None or not dash.ctx.triggered[0]["value"]:
        raise PreventUpdate
    store = current().store
    changes = None
    if trigger != "ep-mflag":
        changes = ui.review_changes(trigger, category=None, note=note)
        if flag_id is None or changes is None:
            raise PreventUpdate
    try:
        who = session.require("review")
        if changes is None:
            span = ui.selected_span(selection)
            if span is None:
                raise session.NotAllowed(
                    "box-select a step range on the plots first (Box Select in the toolbar)"
                )
            made = store.reviews.create_manual_flag(
                trace_id=trace_data["trace"],
                t0=span[0],
                t1=min(span[1], trace_data["length"] - 1),
                who=who,
            )
            flag_id, message = made.id, f"flag #{made.id} created over steps {made.t0}–{made.t1}"
        else:
            store.reviews.review_flag(flag_id=flag_id, who=who, **changes)
            message = f"flag #{flag_id}: {ui.describe_changes(changes)}"
    except (session.NotAllowed, BeliefscopeError) as err:
        no = dash.no_update
        return no, no, no, no, session.toast(str(err), ok=False)
    flags = data.flags_of(trace_data["trace"])
    selected = next((f for f in flags if f.id == flag_id), None)
    trace = current().queries.get_trace(trace_id=trace_data["trace"])
    series, groups = data.trace_series(trace, max_points=8)  # only the panel layout is needed
    line = tuple(trace_data["line"]) if trace_data.get("line") else None
    fresh = episode_figure(
        series,
        length=trace.length,
        kl_groups=groups,
        bands=flags,
        threshold=line,
        selected_flag=flag_id,
    )
    patch = Patch()
    patch["layout"]["shapes"] = fresh["layout"]["shapes"]
    if trigger == "ep-mflag":
        dash.set_props("ep-sel", {"data": flag_id})
    spans = [player.flag_spans(flags)]
    return version + 1, _flag_table(flags, selected), patch, spans, session.toast(message)
