"""Flag lists sorted in the query: severity by rank, missing peaks last, the row limit after
the order (so the first page of `-severity` holds every high flag that fits)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from beliefscope.errors import BadInputError
from beliefscope.store.engine import Store, open_store
from tests.review.conftest import add_run


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    opened = open_store(store_url)
    yield opened
    opened.close()


def test_severity_sorts_by_rank_and_the_limit_comes_after_the_order(store: Store) -> None:
    ids = add_run(store, {100: [np.ones(40)] * 3})
    severities = ["medium", "low", "high", "medium", "high", "low", "medium", "high", "medium"]
    for i, severity in enumerate(severities):
        store.reviews.create_manual_flag(
            trace_id=ids["traces"][i % 3], t0=i, t1=i + 1, who="t", severity=severity
        )
    ranked = store.reviews.list_flags(sort="-severity,-id", limit=100).items
    assert [f.severity for f in ranked] == ["high"] * 3 + ["medium"] * 4 + ["low"] * 2
    assert [f.id for f in ranked[:3]] == sorted((f.id for f in ranked[:3]), reverse=True)
    first = store.reviews.list_flags(sort="-severity", limit=3)
    assert first.total == 9 and {f.severity for f in first.items} == {"high"}
    rising = store.reviews.list_flags(sort="severity,t0", limit=100).items
    assert [f.severity for f in rising][:2] == ["low", "low"]
    assert [f.t0 for f in rising][:2] == [1, 5]
    only_high = store.reviews.list_flags(severity="high", sort="-peak", limit=2)
    assert only_high.total == 3 and len(only_high.items) == 2


def test_an_unknown_sort_key_names_the_accepted_ones(store: Store) -> None:
    with pytest.raises(BadInputError, match="severity, peak"):
        store.reviews.list_flags(sort="-colour")
