"""The access surfaces on SQLite and PostgreSQL: token scopes and expiry, sessions, soft
deletion, delivery claims, the append-only activity log, the 0007 upgrade of older stores and
the SQLite file's permissions."""

from __future__ import annotations

import hashlib
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from beliefscope.errors import BadInputError, NotFoundError
from beliefscope.store.access_tables import ApiToken
from beliefscope.store.engine import Store, open_store, upgrade
from tests.review.conftest import add_run


def _flag(store: Store, who: str = "ann") -> int:
    ids = add_run(store, {1: [np.ones(20)]})
    return store.reviews.create_manual_flag(trace_id=ids["traces"][0], t0=2, t1=5, who=who).id


def test_tokens_carry_scope_and_expiry(store: Store) -> None:
    soon = datetime.now(UTC) + timedelta(days=30)
    token, secret = store.access.create_token("rita", scope="review", expires=soon, who="cli:x")
    assert (token.scope, token.state(datetime.now(UTC))) == ("review", "live")
    found = store.access.token_for_secret(secret)
    assert found is not None and found.scope == "review"
    assert abs((found.expires - soon).total_seconds()) < 1  # type: ignore[operator]
    assert token.state(soon + timedelta(seconds=1)) == "expired"
    with pytest.raises(BadInputError, match="unknown scope"):
        store.access.create_token("x", scope="root", who="cli:x")  # type: ignore[arg-type]
    with pytest.raises(BadInputError, match="future"):
        store.access.create_token("y", scope="read", expires=datetime.now(UTC), who="cli:x")
    with pytest.raises(BadInputError, match="exists"):  # a refused change logs nothing
        store.access.create_token("rita", scope="admin", who="cli:x")
    entries = store.activity.list_activity(action="token").items
    assert [(e.action, e.target, e.who, e.details["scope"]) for e in entries] == [
        ("token.create", "token:rita", "cli:x", "review")
    ]
    # a scope outside the three is refused by the schema itself
    with pytest.raises(sa.exc.IntegrityError), store.connect(write=True) as conn:
        conn.execute(sa.update(ApiToken).values(scope="root"))


def test_sessions_stand_for_their_token_and_end_on_the_server(store: Store) -> None:
    token, _ = store.access.create_token("sam", scope="review", who="cli:x")
    later = datetime.now(UTC) + timedelta(hours=1)
    session, cookie = store.access.create_session(token, expires=later)
    assert cookie.startswith("bss_") and cookie != token.prefix
    found = store.access.session_for_secret(cookie)
    assert found is not None and found.token.name == "sam" and found.id == session.id
    assert store.access.session_for_secret("bss_" + "x" * 43) is None
    assert store.access.end_session(cookie) is True
    assert store.access.session_for_secret(cookie) is None  # signed out everywhere
    assert store.access.end_session(cookie) is False
    _, other = store.access.create_session(token, expires=later)
    store.access.revoke_token("sam", who="cli:x")
    assert store.access.session_for_secret(other) is None  # dies with its token
    token2, _ = store.access.create_token("old", scope="read", who="cli:x")
    _, stale = store.access.create_session(token2, expires=datetime.now(UTC) - timedelta(seconds=1))
    assert store.access.session_for_secret(stale) is None
    actions = [e.action for e in store.activity.list_activity(action="session").items]
    assert actions == ["session.create", "session.create", "session.end", "session.create"]


def test_deleted_flags_are_hidden_kept_and_restorable(store: Store) -> None:
    flag_id = _flag(store)
    store.reviews.review_flag(flag_id=flag_id, who="bob", state="confirmed")
    store.reviews.delete_manual_flag(flag_id=flag_id, who="admin-ann")
    with pytest.raises(NotFoundError):
        store.reviews.get_flag(flag_id=flag_id)
    with pytest.raises(NotFoundError):
        store.reviews.review_flag(flag_id=flag_id, who="bob", state="open")
    assert store.reviews.list_flags().total == 0
    hidden = store.reviews.get_flag(flag_id=flag_id, include_deleted=True)
    assert hidden.deleted is not None and hidden.deleted_by == "admin-ann"
    assert [f.id for f in store.reviews.list_flags(deleted=True).items] == [flag_id]
    history = store.reviews.flag_history(flag_id=flag_id, include_deleted=True)
    assert [h.action for h in history] == ["create", "review", "delete"]
    with pytest.raises(NotFoundError, match="no flag"):
        store.reviews.delete_manual_flag(flag_id=flag_id, who="admin-ann")
    restored = store.reviews.restore_flag(flag_id=flag_id, who="admin-ann")
    assert restored.state == "confirmed" and restored.deleted is None
    assert [h.action for h in store.reviews.flag_history(flag_id=flag_id)][-1] == "restore"
    actions = [e.action for e in store.activity.list_activity(target=f"flag:{flag_id}").items]
    assert actions == ["flag.restore", "flag.delete", "flag.review", "flag.create"]


def test_webhooks_delete_softly_and_deliveries_are_claimed_once(store: Store) -> None:
    hook, secret = store.access.create_webhook(
        url="https://hooks.example/x", min_severity="low", created_by="ann"
    )
    assert secret.startswith("whsec_") and len(secret) > 40
    flag_id = _flag(store)
    store.access.advance_webhook(hook.id, flag_id, {flag_id: {"flag": flag_id}})
    claimed = store.access.claim_due(lease=timedelta(minutes=10))
    assert [(c.delivery.flag_id, c.url, c.secret) for c in claimed] == [
        (flag_id, "https://hooks.example/x", secret)
    ]
    assert store.access.claim_due(lease=timedelta(minutes=10)) == []  # taken: nobody else sends
    store.access.record_attempt(
        claimed[0].delivery.id, ok=False, status=500, error=None, retry_in=timedelta(0)
    )
    assert len(store.access.claim_due(lease=timedelta(minutes=10), skip_hooks=frozenset())) == 1
    store.access.delete_webhook(hook.id, who="ann")
    assert store.access.list_webhooks().total == 0
    with pytest.raises(NotFoundError):
        store.access.get_webhook(hook.id)
    assert store.access.list_deliveries(webhook_id=hook.id).total == 1  # kept
    assert store.access.get_webhook(hook.id, include_deleted=True).deleted_by == "ann"
    assert store.access.restore_webhook(hook.id, who="ann").deleted is None
    new = store.access.replace_secret(hook.id, who="ann")
    assert new != secret and new.startswith("whsec_")
    actions = [e.action for e in store.activity.list_activity(action="webhook").items]
    assert actions == ["webhook.secret", "webhook.restore", "webhook.delete", "webhook.create"]


def test_the_activity_log_is_append_only(store: Store) -> None:
    store.access.create_token("t", scope="read", who="cli:x")
    for statement in ("UPDATE activity SET who = 'mallory'", "DELETE FROM activity"):
        with pytest.raises(sa.exc.DBAPIError, match="append-only"), store.connect(write=True) as c:
            c.execute(sa.text(statement))
    assert [e.who for e in store.activity.list_activity().items] == ["cli:x"]


def test_upgrade_keeps_older_tokens_webhooks_and_deliveries(empty_store_url: str) -> None:
    """A store at 0004 (before scopes): its token becomes admin and keeps working, its hook
    gets a signing secret and keeps its deliveries."""
    upgrade(empty_store_url, "0004")
    secret = "bsk_" + "a" * 43
    now = datetime.now(UTC).replace(tzinfo=None)
    old = Store(sa.create_engine(empty_store_url))
    with old.engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO api_tokens (name, token_hash, prefix, created) VALUES "
                "('old-timer', :h, 'bsk_aaaaaa', :t)"
            ),
            {"h": hashlib.sha256(secret.encode()).hexdigest(), "t": now},
        )
        conn.execute(
            sa.text(
                "INSERT INTO webhooks (url, min_severity, created_by, after_flag_id, active, "
                "created) VALUES ('https://hooks.example/a', 'high', 'old-timer', 0, true, :t)"
            ),
            {"t": now},
        )
        conn.execute(
            sa.text(
                "INSERT INTO webhook_deliveries (webhook_id, flag_id, payload, state, attempts, "
                "next_attempt, created) VALUES (1, 7, '{}', 'delivered', 1, :t, :t)"
            ),
            {"t": now},
        )
    old.close()
    upgrade(empty_store_url)
    store = open_store(empty_store_url)
    try:
        token = store.access.token_for_secret(secret)
        assert token is not None and token.scope == "admin" and token.expires is None
        assert store.access.list_deliveries(webhook_id=1).total == 1
        with store.connect() as conn:
            hook_secret = conn.execute(sa.text("SELECT secret FROM webhooks")).scalar_one()
        assert hook_secret.startswith("whsec_") and len(hook_secret) == 50
    finally:
        store.close()


def test_a_new_sqlite_store_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    previous = os.umask(0o022)  # the usual umask: files world-readable unless made otherwise
    db = tmp_path / "fresh.db"
    try:
        upgrade(f"sqlite:///{db}")
    finally:
        os.umask(previous)
    store = open_store(f"sqlite:///{db}")
    try:
        store.access.create_token("t", scope="read", who="cli:x")  # WAL and SHM now exist
        for path in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    finally:
        store.close()
