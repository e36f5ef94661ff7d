"""A store as a new user meets it: one `--store` place for every command, created and migrated
by the first command that writes, never created by a failing or reading command, an
out-of-date one still refused with the upgrade command."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from beliefscope.access import Authorizer
from beliefscope.access.policy import Presented
from beliefscope.cli import COMMANDS, STORELESS, build_parser, main
from beliefscope.config import Settings
from beliefscope.store.engine import Store, create_engine, head_revision, open_store


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default store and snapshots under this test's home, never the user's."""
    from beliefscope.config import get_settings

    monkeypatch.setenv("BELIEFSCOPE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("BELIEFSCOPE_STORE", raising=False)
    get_settings.cache_clear()


def _store_actions(command: str) -> list[list[str]]:
    """Every (command, action...) path of a command's parser, with its required words."""
    parser = build_parser(command)
    found: list[list[str]] = []

    def walk(p, words: list[str]) -> None:  # type: ignore[no-untyped-def]
        subs = [a for a in p._actions if a.__class__.__name__ == "_SubParsersAction"]
        if not subs:
            found.append(words)
            return
        for name, child in subs[0].choices.items():
            walk(child, [*words, name])

    walk(parser._actions[-1].choices[command], [command])
    return found


def test_every_store_command_takes_store_before_and_after_its_action() -> None:
    positional = {c: ["LOGDIR"] for c in ("ingest", "watch", "probe", "audit")}
    extra = {"token create": ["alice"], "token revoke": ["alice"], "runs delete": ["r"]}
    extra |= {"rules set": ["kl-spike"], "db revision": ["-m", "x"]}
    extra |= {"db backup": ["--out", "b.db"], "db restore": ["b.db"]}
    extra |= {f"export {w}": ["--out", "x"] for w in ("traces", "flags", "tensorboard", "wandb")}
    extra |= {"probe dropout": ["--occluded"], "probe delay": ["--steps", "1"]}
    checked = 0
    for command in set(COMMANDS) - STORELESS:
        for words in _store_actions(command):
            rest = extra.get(" ".join(words), []) + positional.get(command, [])
            for argv in (
                ["--store", "sqlite:///a.db", *words, *rest],  # before the command
                [words[0], "--store", "sqlite:///a.db", *words[1:], *rest],  # before the action
                [*words, *rest, "--store", "sqlite:///a.db"],  # after everything
            ):
                args = build_parser(command).parse_args(argv)
                assert args.store == "sqlite:///a.db", argv
                checked += 1
            assert build_parser(command).parse_args([*words, *rest]).store is None
    assert checked >= 3 * 20  # every action of every store command


def test_token_create_makes_the_store_and_a_server_on_it_accepts_the_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'fresh' / 'store.db'}"
    assert main(["token", "create", "alice", "--store", url]) == 0  # the README's order
    secret = capsys.readouterr().out.splitlines()[0]
    store = open_store(url)
    try:
        assert store.revision() == head_revision()
        access = Authorizer(store, Settings(store=url))  # what `serve --store URL` checks with
        presented = Presented(f"Bearer {secret}", None, None, "127.0.0.1")
        who = access.identify(presented)
        assert who is not None and who.name == "alice"
    finally:
        store.close()
    assert main(["token", "--store", url, "create", "bob"]) == 0  # the other order


def test_default_store_is_created_by_the_first_write(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    default = tmp_path / "home" / "beliefscope.db"
    assert main(["token", "list"]) == 2  # a read: refused, and nothing created
    assert "no store here yet" in capsys.readouterr().err and not default.exists()
    assert not (tmp_path / "home").exists()
    assert main(["rules", "list"]) == 0  # stores the default rules: a write
    assert default.exists() and "kl-spike" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        ["token", "list"],
        ["token", "revoke", "alice"],
        ["runs", "list"],
        ["runs", "delete", "nope"],
        ["score"],
        ["export", "traces", "--out", "{tmp}/t.csv"],
        ["db", "current"],
        ["ingest", "{tmp}/nothing-here"],
        ["ingest", "{tmp}/empty-logdir"],
        ["watch", "{tmp}/nothing-here", "--cycles", "1"],
    ],
)
def test_a_failing_or_reading_command_creates_no_database(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty-logdir").mkdir()
    db = tmp_path / "new" / "store.db"
    argv = [a.format(tmp=tmp_path) for a in argv]
    assert main([*argv, "--store", f"sqlite:///{db}"]) in (1, 2)
    assert not db.exists() and not db.parent.exists(), argv
    err = capsys.readouterr()
    assert "Traceback" not in err.err


def test_an_empty_database_is_migrated_by_a_write_and_an_old_one_is_refused(
    empty_store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["token", "create", "alice", "--store", empty_store_url]) == 0
    store = Store(create_engine(empty_store_url))
    try:
        assert store.revision() == head_revision()
        with store.connect(write=True) as conn:  # pretend the store predates this code
            conn.execute(sa.text("UPDATE alembic_version SET version_num = '0003'"))
    finally:
        store.close()
    assert main(["token", "create", "bob", "--store", empty_store_url]) == 2
    err = capsys.readouterr().err
    assert "schema is at 0003" in err and "beliefscope db upgrade --store" in err
