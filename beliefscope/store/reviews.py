"""`store.reviews`: the review workflow's tables, one module per table family (rules, flags,
metric columns, scores), as one surface. Plain SQL returning frozen values: what to do with
them (applying rules, reconciling flags with reviews, queues, thresholds) is
`beliefscope.review.service`'s."""

from __future__ import annotations

from beliefscope.store.flags import FlagTable
from beliefscope.store.metric_columns import MetricColumnTable
from beliefscope.store.rules import RuleTable
from beliefscope.store.scores import ScoreTable


class ReviewStore(RuleTable, FlagTable, MetricColumnTable, ScoreTable):
    """Rules, flags and their history, metric columns, scores and probe summaries."""
