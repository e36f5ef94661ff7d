"""API tokens and browser sessions (`store.access`).

A token's secret is shown once, when it is created; only its sha256 is stored, and looking a
token up hashes the presented secret and compares in the database (an indexed equality on a
hash leaks nothing useful about the secret through timing). Sessions work the same way: the
cookie carries a random session id, the row its hash and the token it stands for.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime
from typing import cast

import sqlalchemy as sa

from beliefscope.errors import BadInputError, NotFoundError
from beliefscope.store.access_tables import ApiToken, BrowserSession
from beliefscope.store.activity import record
from beliefscope.store.engine import Surface
from beliefscope.store.sql import value_of
from beliefscope.store.tables import utcnow
from beliefscope.values.access import SCOPES, Scope, SessionInfo, TokenInfo

TOKEN_PREFIX = "bsk_"
SESSION_PREFIX = "bss_"
_MAX_SECRET = 200
_TOKENS = cast(sa.Table, ApiToken.__table__)
_SESSIONS = cast(sa.Table, BrowserSession.__table__)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class TokenTable(Surface):
    def create_token(
        self, name: str, *, scope: Scope, who: str, expires: datetime | None = None
    ) -> tuple[TokenInfo, str]:
        """A new token for `name`; returns it with the secret (the only time it is visible)."""
        name = name.strip()
        if not name or len(name) > 100:
            raise BadInputError("token name must be 1-100 characters")
        if scope not in SCOPES:
            raise BadInputError(f"unknown scope {scope!r}; use one of {list(SCOPES)}")
        now = utcnow()
        if expires is not None and expires <= now:
            raise BadInputError("a token's expiry must lie in the future")
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        table = _TOKENS
        with self._store.connect(write=True) as conn:
            if conn.execute(sa.select(table.c.id).where(table.c.name == name)).first():
                raise BadInputError(
                    f"a token named {name!r} exists; revoke it or pick another name"
                )
            conn.execute(
                sa.insert(table).values(
                    name=name,
                    token_hash=hash_secret(secret),
                    prefix=secret[:10],
                    scope=scope,
                    created=now,
                    expires=expires,
                )
            )
            row = conn.execute(sa.select(table).where(table.c.name == name)).one()
            details = {"scope": scope, "expires": None if expires is None else expires.isoformat()}
            record(conn, who=who, action="token.create", target=f"token:{name}", details=details)
        return value_of(TokenInfo, row), secret

    def list_tokens(self) -> list[TokenInfo]:
        table = _TOKENS
        with self._store.connect() as conn:
            return [
                value_of(TokenInfo, r) for r in conn.execute(sa.select(table).order_by(table.c.id))
            ]

    def revoke_token(self, name: str, *, who: str) -> TokenInfo:
        """Revoke the live token named `name` (the row stays, for the record); its sessions
        end with it."""
        table = _TOKENS
        with self._store.connect(write=True) as conn:
            row = conn.execute(
                sa.select(table).where(table.c.name == name, table.c.revoked.is_(None))
            ).first()
            if row is None:
                raise NotFoundError(f"no live token named {name!r}")
            conn.execute(sa.update(table).where(table.c.id == row.id).values(revoked=utcnow()))
            row = conn.execute(sa.select(table).where(table.c.id == row.id)).one()
            record(conn, who=who, action="token.revoke", target=f"token:{name}")
        return value_of(TokenInfo, row)

    def token_for_secret(self, secret: str) -> TokenInfo | None:
        """The unrevoked token whose secret this is (perhaps expired: see `TokenInfo.state`),
        or None."""
        if not secret.startswith(TOKEN_PREFIX) or len(secret) > _MAX_SECRET:
            return None
        table = _TOKENS
        with self._store.connect() as conn:
            row = conn.execute(
                sa.select(table).where(
                    table.c.token_hash == hash_secret(secret), table.c.revoked.is_(None)
                )
            ).first()
        return None if row is None else value_of(TokenInfo, row)

    # -- browser sessions -------------------------------------------------------------------

    def create_session(self, token: TokenInfo, *, expires: datetime) -> tuple[SessionInfo, str]:
        """A new session standing for `token`; returns it with its id (the cookie's value)."""
        secret = SESSION_PREFIX + secrets.token_urlsafe(32)
        now = utcnow()
        with self._store.connect(write=True) as conn:
            new_id = conn.execute(
                sa.insert(_SESSIONS)
                .values(
                    token_id=token.id,
                    session_hash=hash_secret(secret),
                    created=now,
                    expires=expires,
                )
                .returning(_SESSIONS.c.id)
            ).scalar_one()
            record(conn, who=token.name, action="session.create", target=f"token:{token.name}")
        return SessionInfo(new_id, token, now, expires), secret

    def session_for_secret(self, secret: str) -> SessionInfo | None:
        """The live session of this cookie value (not signed out, not expired, its token not
        revoked; the token itself may have expired), or None."""
        if not secret.startswith(SESSION_PREFIX) or len(secret) > _MAX_SECRET:
            return None
        sessions, tokens = _SESSIONS, _TOKENS
        with self._store.connect() as conn:
            row = conn.execute(
                sa.select(
                    tokens,
                    sessions.c.id.label("session_id"),
                    sessions.c.created.label("session_created"),
                    sessions.c.expires.label("session_expires"),
                )
                .join(tokens, tokens.c.id == sessions.c.token_id)
                .where(
                    sessions.c.session_hash == hash_secret(secret),
                    sessions.c.revoked.is_(None),
                    sessions.c.expires > utcnow(),
                    tokens.c.revoked.is_(None),
                )
            ).first()
        if row is None:
            return None
        return SessionInfo(
            row.session_id, value_of(TokenInfo, row), row.session_created, row.session_expires
        )

    def end_session(self, secret: str) -> bool:
        """Sign a session out on the server (its cookie stops working everywhere); False when
        it was not live."""
        session = self.session_for_secret(secret)
        if session is None:
            return False
        with self._store.connect(write=True) as conn:
            conn.execute(
                sa.update(_SESSIONS)
                .where(_SESSIONS.c.id == session.id, _SESSIONS.c.revoked.is_(None))
                .values(revoked=utcnow())
            )
            name = session.token.name
            record(conn, who=name, action="session.end", target=f"token:{name}")
        return True
