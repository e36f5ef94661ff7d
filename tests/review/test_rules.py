"""Rule validation: bad input is a clear error."""

from __future__ import annotations

import pytest

from beliefscope.errors import BadInputError
from beliefscope.review.rules import DEFAULT_RULES
from beliefscope.values.review import edit_rule, make_rule


def test_valid_rule_from_cli_strings():
    r = make_rule(
        {
            "name": "x",
            "metric": "correction",
            "threshold": "3.5",
            "min_duration": "3",
            "merge_gap": "1",
            "floor": "0.5",
            "mode": "percentile",
            "enabled": "false",
        }
    )
    assert (r.threshold, r.min_duration, r.merge_gap, r.floor, r.enabled) == (3.5, 3, 1, 0.5, False)
    assert "p3.5" in r.describe()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"metric": "klx"}, "unknown metric 'klx'"),
        ({"min_duration": -1}, "min_duration: -1 must be at least 1"),
        ({"merge_gap": -2}, "merge_gap: -2 must be at least 0"),
        ({"min_duration": 1.5}, "not a whole number"),
        ({"threshold": "abc"}, "threshold: 'abc' is not a number"),
        ({"threshold": "nan"}, "not a finite number"),
        ({"threshold": True}, "is not a number"),
        ({"floor": "low"}, "floor: 'low' is not a number"),
        ({"mode": "percentile", "threshold": 120}, "not within 0..100"),
        ({"severity": "urgent"}, "severity: 'urgent' is not one of"),
        ({"normalise": "run"}, "normalise: 'run' is not one of"),
        ({"colour": "red"}, "unknown field(s) colour"),
    ],
)
def test_bad_rules_are_one_line_errors(change, message):
    base = {"name": "x", "metric": "kl", "threshold": 5}
    with pytest.raises(BadInputError, match=message.replace("(", r"\(").replace(")", r"\)")) as err:
        make_rule({**base, **change})
    assert "\n" not in str(err.value)


def test_edit_keeps_version_and_revalidates():
    r = edit_rule(DEFAULT_RULES[0], {"threshold": "6"})
    assert r.threshold == 6.0 and r.version == DEFAULT_RULES[0].version
    with pytest.raises(BadInputError):
        edit_rule(r, {"min_duration": 0})
