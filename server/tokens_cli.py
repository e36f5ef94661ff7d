"""`beliefscope token`: create, list and revoke API tokens (only their hashes are stored)."""

from __future__ import annotations

import argparse

from beliefscope.store.engine import open_store


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = sub.add_parser("create", help="create a token; its secret is printed once")
    create.add_argument("name", help="who holds it (recorded as the reviewer in flag history)")
    sub.add_parser("list", help="list tokens (names and prefixes, never secrets)")
    revoke = sub.add_parser("revoke", help="revoke the live token of a name")
    revoke.add_argument("name")


def run(args: argparse.Namespace) -> int:
    # a first token creates the store; listing or revoking needs one that exists
    store = open_store(args.store, create=args.action == "create")
    try:
        if args.action == "create":
            token, secret = store.access.create_token(args.name)
            print(secret)
            print(f"token {token.name!r} created; keep the secret above, it is not stored")
        elif args.action == "list":
            for t in store.access.list_tokens():
                state = f"revoked {t.revoked:%Y-%m-%d %H:%M}" if t.revoked else "live"
                print(f"{t.name}\t{t.prefix}…\tcreated {t.created:%Y-%m-%d %H:%M}\t{state}")
        else:
            token = store.access.revoke_token(args.name)
            print(f"token {token.name!r} revoked")
    finally:
        store.close()
    return 0
