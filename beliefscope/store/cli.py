"""`beliefscope db`: bring the store's schema up to date, show where it is, back it up and
restore it, draft a migration."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from beliefscope.store.engine import Store


def configure(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, help_text in (
        ("upgrade", "create the store or migrate its schema to the newest revision"),
        ("current", "print the store's schema revision and the one this code expects"),
        ("backup", "write a consistent snapshot of the store (while it is in use) to a file"),
        ("restore", "restore a backup file into a new, empty store and verify it"),
        ("revision", "developers: draft a new migration from the models (autogenerate)"),
    ):
        action = actions.add_parser(name, help=help_text, description=help_text)
        if name == "revision":
            action.add_argument("-m", "--message", required=True, help="what the migration does")
        elif name == "backup":
            action.add_argument(
                "--out", required=True, type=Path, metavar="FILE", help="the backup file to write"
            )
        elif name == "restore":
            action.add_argument("file", type=Path, metavar="FILE", help="a `db backup` file")


def run(args: argparse.Namespace) -> int:
    from beliefscope.store import engine

    url = engine.resolve_url(args.store)
    if args.action in ("backup", "restore"):
        return _backup_or_restore(args, url)
    missing = engine.sqlite_file(url)
    missing = missing if missing is not None and not missing.exists() else None
    if args.action == "upgrade":
        was = None if missing else _revision(url)
        now = engine.upgrade(url)
        print(f"store schema: {was or 'empty'} -> {now}" if was != now else f"store schema: {now}")
        return 0
    if args.action == "current" and missing:  # reading must not create the file
        print(
            f"store {url}: does not exist yet, code expects {engine.head_revision()} (out of "
            "date: `beliefscope db upgrade`, or any command that writes, creates it)"
        )
        return 1
    store = engine.open_store(url, check_schema=False)
    try:
        if args.action == "current":
            current, head = store.revision(), engine.head_revision()
            state = "up to date" if current == head else "out of date: run `beliefscope db upgrade`"
            print(f"store {store.url}: schema {current or 'empty'}, code expects {head} ({state})")
            return 0 if current == head else 1
        _draft_revision(store, args.message)
        return 0
    finally:
        store.close()


def _backup_or_restore(args: argparse.Namespace, url: str) -> int:
    from beliefscope.store import backup, engine

    if args.action == "backup":
        store = engine.open_store(url, check_schema=False)
        try:
            manifest = backup.backup(store, args.out)
        finally:
            store.close()
        print(f"backed up {store.url} to {args.out}: {manifest.describe()}")
        print(f"manifest: {backup.manifest_path(args.out)} (keep it beside the backup)")
        return 0
    got, expected = backup.restore(args.file, url)
    shown = engine.hidden_password(url)
    print(
        f"restored {args.file} into {shown}: {got.describe()}; {backup.schema_note(got.revision)}"
    )
    if expected is None:
        print(f"not verified: no manifest beside the backup ({backup.manifest_path(args.file)})")
        return 0
    if problems := backup.differences(got, expected):
        print("NOT verified, the restored store differs from the backup's manifest:")
        for line in problems:
            print(f"  {line}")
        return 1
    print("verified: every table's row count and the trace data checksum match the manifest")
    return 0


def _revision(url: str) -> str | None:
    from beliefscope.store import engine

    store = engine.Store(engine.create_engine(url))
    try:
        return store.revision()
    finally:
        store.close()


def _draft_revision(store: Store, message: str) -> None:
    from importlib.resources import files

    from alembic import command

    from beliefscope.store.engine import alembic_config, head_revision

    versions = files("beliefscope.store") / "migrations" / "versions"
    number = f"{int(head_revision()) + 1:04d}"
    with store.connect(write=True) as conn:
        config = alembic_config(conn)
        config.set_main_option("version_locations", str(versions))
        command.revision(
            config,
            message=message,
            autogenerate=True,
            rev_id=number,
        )
    print(f"drafted migration {number} in {versions}: read it before committing")
