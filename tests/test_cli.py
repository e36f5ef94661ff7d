"""The `beliefscope` command: old spellings keep working, with a note saying the new one."""

from __future__ import annotations

import pytest

from beliefscope.cli import build_parser


@pytest.mark.parametrize(
    "argv",
    [
        ["ingest", "LOGDIR", "--probe", "delay:1", "--variant", "openloop:3"],
        ["watch", "LOGDIR", "--probe", "delay:1", "--variant", "openloop:3"],
        ["probe", "openloop", "LOGDIR", "--probe", "delay:1", "--variant", "openloop:3"],
    ],
)
def test_probe_is_the_old_spelling_of_variant(argv: list[str], capsys) -> None:  # type: ignore[no-untyped-def]
    args = build_parser(argv[0]).parse_args(argv)
    assert args.variant == ["delay:1", "openloop:3"]
    assert "--probe is deprecated, use --variant" in capsys.readouterr().err


def test_old_spelling_in_rules_and_exports(capsys) -> None:  # type: ignore[no-untyped-def]
    rules = build_parser("rules").parse_args(["rules", "set", "k", "--probe", "decode"])
    export = build_parser("export").parse_args(
        ["export", "traces", "--out", "x.csv", "--probe", "filter"]
    )
    assert (rules.variant, export.variant) == ("decode", "filter")
    assert capsys.readouterr().err.count("is deprecated, use --variant") == 2
