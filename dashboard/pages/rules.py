"""Rules: edit a flag rule's threshold and shape with a live preview of the flags it would make.

URL: /rules?rule=<name>. The preview recomputes the edited rule over the stored steps of its
variant's traces (`beliefscope.review.segments`, no model run) and compares it per checkpoint with
the stored version; "Save & apply" stores a new version and re-flags, keeping human reviews.
"""

from __future__ import annotations

from typing import Any

import dash
import numpy as np
from dash import Input, Output, State, callback, dcc, html
from dash.exceptions import PreventUpdate

from beliefscope.errors import BeliefscopeError
from beliefscope.review import segments
from beliefscope.values.review import (
    NORMALISE,
    SEVERITIES,
    THRESHOLD_MODES,
    MetricColumns,
    Rule,
    edit_rule,
)
from beliefscope.values.traces import METRICS
from dashboard import session, ui
from dashboard.context import current
from dashboard.figures import empty_figure, preview_figure

dash.register_page(__name__, path="/rules", title="Rules · Beliefscope", name="Rules")

FIELDS = (
    "metric",
    "mode",
    "threshold",
    "floor",
    "normalise",
    "min_duration",
    "merge_gap",
    "severity",
    "enabled",
)


def layout(rule: str | None = None, **_: Any) -> html.Div:
    if not session.can_read():
        return ui.sign_in_needed()
    infos = current().store.reviews.list_rules()
    if not infos:
        return ui.missing("No rules stored yet (`beliefscope rules` or the demo stores defaults).")
    chosen = next((i for i in infos if i.rule.name == rule), infos[0])
    table = html.Table(
        [
            html.Thead(html.Tr([html.Th(h) for h in ("rule", "version", "definition", "by")])),
            html.Tbody(
                [
                    html.Tr(
                        [
                            html.Td(dcc.Link(i.rule.name, href=f"/rules?rule={i.rule.name}")),
                            html.Td(f"v{i.rule.version}", className="bs-mono"),
                            html.Td(i.rule.describe() + ("" if i.rule.enabled else " (disabled)")),
                            html.Td(i.created_by),
                        ],
                        className="bs-sel" if i.id == chosen.id else "",
                    )
                    for i in infos
                ]
            ),
        ],
        className="bs-flags",
    )
    r = chosen.rule
    num = lambda id_, value, step: dcc.Input(  # noqa: E731
        id=id_,
        type="number",
        value=value,
        step=step,
        debounce=0.3,
        className="bs-input",
        style={"width": "90px"},
    )
    form = html.Div(
        [
            ui.field(
                "metric",
                dcc.Dropdown(
                    id="rl-metric",
                    options=list(METRICS),
                    value=r.metric,
                    clearable=False,
                    className="bs-dd",
                ),
            ),
            ui.field(
                "mode",
                dcc.Dropdown(
                    id="rl-mode",
                    options=list(THRESHOLD_MODES),
                    value=r.mode,
                    clearable=False,
                    className="bs-dd",
                    style={"minWidth": "120px"},
                ),
            ),
            ui.field("threshold", num("rl-threshold", r.threshold, "any")),
            ui.field("floor", num("rl-floor", r.floor, "any")),
            ui.field(
                "normalise",
                dcc.Dropdown(
                    id="rl-normalise",
                    options=list(NORMALISE),
                    value=r.normalise,
                    clearable=False,
                    className="bs-dd",
                    style={"minWidth": "110px"},
                ),
            ),
            ui.field("min steps", num("rl-min_duration", r.min_duration, 1)),
            ui.field("merge gap", num("rl-merge_gap", r.merge_gap, 1)),
            ui.field(
                "severity",
                dcc.Dropdown(
                    id="rl-severity",
                    options=list(SEVERITIES),
                    value=r.severity,
                    clearable=False,
                    className="bs-dd",
                    style={"minWidth": "100px"},
                ),
            ),
            dcc.Checklist(
                id="rl-enabled",
                options=[{"label": " enabled", "value": "on"}],
                value=["on"] if r.enabled else [],
                className="bs-field",
            ),
            html.Button("Save & apply", id="rl-save", className="bs-btn bs-btn-primary"),
        ],
        className="bs-toolbar",
    )
    return html.Div(
        [
            html.Div([html.H1("Flag rules")], className="bs-title"),
            html.Div(table, className="bs-card"),
            html.Div(
                [
                    html.Div(
                        [
                            html.H2(f"Edit {r.name}"),
                            html.Span(r.describe(), id="rl-describe", className="bs-sub"),
                        ],
                        className="bs-card-head",
                    ),
                    form,
                    html.Div(id="rl-summary", className="bs-sub", style={"margin": "4px 0"}),
                    dcc.Graph(
                        id="rl-preview",
                        config=ui.GRAPH_CONFIG,
                        figure=empty_figure("computing preview…", 230),
                    ),
                ],
                className="bs-card",
                style={"marginTop": "12px"},
            ),
            dcc.Store(id="rl-name", data=r.name),
        ]
    )


def _edited(name: str, values: tuple[Any, ...]) -> tuple[Rule, Rule]:
    stored = current().store.reviews.get_rule(name=name).rule
    changes = dict(zip(FIELDS, values, strict=True))
    changes["enabled"] = "on" in (changes["enabled"] or [])
    changes["floor"] = None if changes["floor"] in (None, "") else changes["floor"]
    return stored, edit_rule(stored, changes)


def _flags_per_checkpoint(rule: Rule, cols: MetricColumns, ids: list[int]) -> list[int]:
    if not rule.enabled or not len(cols.trace_ids):
        return [0] * len(ids)
    found = segments.apply_rule(rule, cols.values, cols.offsets, cols.checkpoint_ids)
    per_trace_ckpt = cols.checkpoint_ids[found.trace]
    return [int(np.sum(per_trace_ckpt == i)) for i in ids]


@callback(
    Output("rl-preview", "figure"),
    Output("rl-summary", "children"),
    Output("rl-describe", "children"),
    *(Input(f"rl-{f}", "value") for f in FIELDS),
    State("rl-name", "data"),
)
def preview(*args: Any) -> tuple[Any, ...]:
    *values, name = args
    try:
        stored, edited = _edited(name, tuple(values))
    except BeliefscopeError as err:
        return dash.no_update, html.Span(str(err), style={"color": "#cf222e"}), dash.no_update
    reviews = current().store.reviews
    cols = reviews.read_metric_columns(metric=edited.metric, variant=edited.variant)
    old_cols = (
        cols
        if stored.metric == edited.metric
        else reviews.read_metric_columns(metric=stored.metric, variant=stored.variant)
    )
    q = current().queries
    ckpts = [
        q.get_checkpoint(checkpoint_id=i)
        for i in {int(i) for i in cols.checkpoint_ids} | {int(i) for i in old_cols.checkpoint_ids}
    ]
    runs = {r: q.get_run(run_id=r).name for r in {c.run_id for c in ckpts}}
    ckpts.sort(key=lambda c: (runs[c.run_id], c.step is None, c.step or 0, c.id))
    ids = [c.id for c in ckpts]
    labels = [(runs[c.run_id], ui.step_label(c)) for c in ckpts]
    now = _flags_per_checkpoint(stored, old_cols, ids)
    new = _flags_per_checkpoint(edited, cols, ids)
    delta = sum(new) - sum(now)
    summary = (
        f"{sum(new)} flags with the edit vs {sum(now)} now ({delta:+d}) over "
        f"{len(cols.trace_ids)} traces, {len(cols.values):,} steps"
    )
    return preview_figure(labels, now, new), summary, edited.describe()


@callback(
    Output("bs-toast", "children", allow_duplicate=True),
    Output("bs-url", "href", allow_duplicate=True),
    Input("rl-save", "n_clicks"),
    *(State(f"rl-{f}", "value") for f in FIELDS),
    State("rl-name", "data"),
    prevent_initial_call=True,
)
def save(clicks: int | None, *args: Any) -> tuple[Any, ...]:
    if not clicks:
        raise PreventUpdate
    *values, name = args
    try:
        who = session.require("admin")
        _, edited = _edited(name, tuple(values))
        info = current().store.reviews.save_rule(rule=edited, who=who)
        result = current().reviews.apply_rule(name=name, who=who)
    except (session.NotAllowed, BeliefscopeError) as err:
        return session.toast(str(err), ok=False), dash.no_update
    message = (
        f"{name} v{info.rule.version}: {result.created} new, {result.updated} updated, "
        f"{result.deleted} removed, {result.stale} stale flags"
    )
    return session.toast(message), f"/rules?rule={name}&v={info.rule.version}"
