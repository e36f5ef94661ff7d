"""`beliefscope token`: create, list and revoke API tokens (only their hashes are stored).

`create NAME --scope read|review|admin --expires 30d` prints the secret once. Tokens from
before scopes were migrated to `admin` (they could do everything); `list` shows each token's
scope, expiry and state, never a secret.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from beliefscope.access import terminal_user
from beliefscope.access.lifetime import parse_lifetime
from beliefscope.store.engine import open_store
from beliefscope.values.access import SCOPES


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = sub.add_parser("create", help="create a token; its secret is printed once")
    create.add_argument("name", help="who holds it (recorded as the reviewer in flag history)")
    create.add_argument(
        "--scope",
        choices=SCOPES,
        default="review",
        help="read: reads only; review: also flags, notes and reviews; admin: also rules, "
        "webhooks, tokens, ingest jobs and deletions (default %(default)s)",
    )
    create.add_argument(
        "--expires", metavar="LIFETIME", help="e.g. 90m, 12h, 30d, 2w (default: never)"
    )
    sub.add_parser("list", help="list tokens: name, prefix, scope, expiry, state (never secrets)")
    revoke = sub.add_parser("revoke", help="revoke the live token of a name (and its sessions)")
    revoke.add_argument("name")


def run(args: argparse.Namespace) -> int:
    lifetime = parse_lifetime(args.expires) if getattr(args, "expires", None) else None
    # a first token creates the store; listing or revoking needs one that exists
    store = open_store(args.store, create=args.action == "create")
    try:
        now = datetime.now(UTC)
        if args.action == "create":
            expires = None if lifetime is None else now + lifetime
            token, secret = store.access.create_token(
                args.name, scope=args.scope, expires=expires, who=terminal_user()
            )
            print(secret)
            until = "" if expires is None else f", expires {expires:%Y-%m-%d %H:%M} UTC"
            print(
                f"token {token.name!r} created (scope {token.scope}{until}); keep the secret "
                "above, it is not stored"
            )
        elif args.action == "list":
            for t in store.access.list_tokens():
                revoked = "" if t.revoked is None else f" {t.revoked:%Y-%m-%d %H:%M}"
                until = "never" if t.expires is None else f"{t.expires:%Y-%m-%d %H:%M}"
                print(
                    f"{t.name}\t{t.prefix}…\t{t.scope}\tcreated {t.created:%Y-%m-%d %H:%M}"
                    f"\texpires {until}\t{t.state(now)}{revoked}"
                )
        else:
            token = store.access.revoke_token(args.name, who=terminal_user())
            print(f"token {token.name!r} revoked")
    finally:
        store.close()
    return 0
