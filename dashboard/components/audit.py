"""The Audit card of the Runs page: `beliefscope audit`'s checks of the newest audited
checkpoint (each verdict, its finding, the corruption it names, its evidence and links that
open the episode at the steps concerned), with the earlier audits folded below it.

Ids: `runs-audit` (the card), `runs-audit-<check name>` (one check's row).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from dash import dcc, html

from beliefscope.values.audit import AuditReport, Check
from beliefscope.values.review import ProbeSummaryInfo

SHOWN_WHERE = 4
"""Links per check; the API lists all of them."""


def _numbers(check: Check) -> html.Details:
    text = json.dumps(dict(check.numbers), indent=1, default=str)
    return html.Details(
        [html.Summary("evidence"), html.Div(check.rule, className="bs-sub"), html.Pre(text)],
        className="bs-audit-evidence",
    )


def _row(check: Check, checkpoint_id: int) -> html.Tr:
    links = [
        dcc.Link(
            f"{w.episode.split(':')[-1][:24]} t={w.t}" + (f"-{w.t_end}" if w.t_end else ""),
            href=w.link(checkpoint_id) or "",
            title=w.note,
        )
        for w in check.where[:SHOWN_WHERE]
        if w.episode_id is not None
    ]
    return html.Tr(
        [
            html.Td(html.Span(check.status, className=f"bs-pill bs-pill-{check.status}")),
            html.Td(html.B(check.title)),
            html.Td(
                [
                    html.Div(html.B(check.corruption), className="bs-audit-bug")
                    if check.corruption
                    else None,
                    html.Div(check.finding),
                    _numbers(check),
                ]
            ),
            html.Td(html.Div(links, className="bs-audit-links")),
        ],
        id=f"runs-audit-{check.name}",
        className=f"bs-audit-{check.status}",
    )


def _table(report: AuditReport, checkpoint_id: int) -> html.Table:
    return html.Table(
        [
            html.Thead(
                html.Tr([html.Th("verdict"), html.Th("check"), html.Th("finding"), html.Th("open")])
            ),
            html.Tbody([_row(c, checkpoint_id) for c in report.checks]),
        ],
        className="bs-flags bs-audit",
    )


def _title(report: AuditReport, stored: ProbeSummaryInfo) -> str:
    step = "step ?" if stored.step is None else f"step {stored.step:,}"
    return (
        f"{step} · {report.family} · {len(report.episodes)} episodes, {report.steps} steps · "
        f"audited {stored.created:%Y-%m-%d %H:%M}"
    )


def audit_card(audits: Sequence[ProbeSummaryInfo]) -> html.Div:
    """The card; `audits` are the run's stored audits by training step (may be empty)."""
    head = html.Div(
        [
            html.H2("Audit"),
            html.Span(
                "replay and model checks of `beliefscope audit` · inconclusive: the model cannot "
                "tell",
                className="bs-sub",
            ),
        ],
        className="bs-card-head",
    )
    if not audits:
        hint = "No audit yet: run `beliefscope audit LOGDIR` on this run's log dir."
        return html.Div(
            [head, html.Div(hint, className="bs-sub")], id="runs-audit", className="bs-card"
        )
    latest = audits[-1]
    report = AuditReport.from_dict(latest.data)
    body: list[Any] = [
        html.Div(
            [
                html.Span(report.status, className=f"bs-pill bs-pill-{report.status}"),
                " ",
                _title(report, latest),
            ],
            className="bs-sub",
        ),
        _table(report, latest.checkpoint_id),
    ]
    for earlier in reversed(audits[:-1]):
        old = AuditReport.from_dict(earlier.data)
        body.append(
            html.Details(
                [
                    html.Summary(
                        [
                            html.Span(old.status, className=f"bs-pill bs-pill-{old.status}"),
                            " ",
                            _title(old, earlier),
                        ]
                    ),
                    _table(old, earlier.checkpoint_id),
                ]
            )
        )
    return html.Div([head, *body], id="runs-audit", className="bs-card")
