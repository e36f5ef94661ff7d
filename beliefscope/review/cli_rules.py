"""`beliefscope rules list|set|apply`: edit flag rules and recompute flags from stored steps."""

from __future__ import annotations

import argparse

from beliefscope.access import terminal_user
from beliefscope.deprecations import old_option
from beliefscope.errors import BadInputError
from beliefscope.review.service import ReviewService
from beliefscope.store.engine import Store, open_store
from beliefscope.values.review import NORMALISE, SEVERITIES, THRESHOLD_MODES

_FIELDS = (
    ("metric", "per-step metric the rule reads (see beliefscope.values.traces.METRICS)", None),
    ("threshold", "absolute value, k of median + k x MAD, or percentile 0..100", None),
    ("mode", "how the threshold is meant", THRESHOLD_MODES),
    ("floor", "raw metric value a step must reach to count ('none' to clear)", None),
    ("normalise", "subtract each episode's median first", NORMALISE),
    ("min_duration", "consecutive steps needed", None),
    ("merge_gap", "flags at most this many steps apart merge", None),
    ("severity", "severity of the flags it makes", SEVERITIES),
    ("variant", "which trace variant it reads (default filter)", None),
    ("enabled", "true or false", None),
)


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = sub.add_parser("list", help="show the rules (newest versions)")
    listing.add_argument("--all-versions", action="store_true", help="every stored version")
    setter = sub.add_parser("set", help="create a rule or store an edited version of it")
    setter.add_argument("name")
    for field, help_text, choices in _FIELDS:
        setter.add_argument(
            f"--{field.replace('_', '-')}", dest=field, help=help_text, choices=choices
        )
    old_option(setter, "--probe", "--variant", dest="variant")
    applier = sub.add_parser("apply", help="recompute flags of rules from the stored traces")
    applier.add_argument("names", nargs="*", help="rules to apply (default: all)")
    applier.add_argument("--run", default=None, help="only this run (by name)")
    applier.add_argument(
        "--checkpoint", type=int, action="append", default=None, help="only these checkpoint ids"
    )


def run(args: argparse.Namespace) -> int:
    store = open_store(args.store, create=True)  # `list` stores the default rules
    try:
        return {"list": _list, "set": _set, "apply": _apply}[args.action](store, args)
    finally:
        store.close()


def _list(store: Store, args: argparse.Namespace) -> int:
    ReviewService(store).ensure_default_rules()
    for info in store.reviews.list_rules(all_versions=args.all_versions):
        rule = info.rule
        state = "" if rule.enabled else " (disabled)"
        print(f"{rule.name}@{rule.version}{state}: {rule.describe()}  [variant {rule.variant}]")
    return 0


def _set(store: Store, args: argparse.Namespace) -> int:
    changes = {f: getattr(args, f) for f, _, _ in _FIELDS if getattr(args, f) is not None}
    if not changes:
        raise BadInputError(f"rules set {args.name}: give at least one field to set")
    info = ReviewService(store).set_rule(name=args.name, changes=changes, who=terminal_user())
    print(f"{info.rule.name}@{info.rule.version}: {info.rule.describe()}")
    return 0


def _apply(store: Store, args: argparse.Namespace) -> int:
    reviews = ReviewService(store)
    reviews.ensure_default_rules()
    run_id = store.queries.find_run(name=args.run).id if args.run else None
    names = args.names or [i.rule.name for i in store.reviews.list_rules()]
    for name in names:
        r = reviews.apply_rule(
            name=name, who=terminal_user(), run_id=run_id, checkpoint_ids=args.checkpoint
        )
        print(
            f"{r.rule}@{r.version}: {r.traces} traces, {r.steps} steps -> {r.created} new, "
            f"{r.updated} kept, {r.stale} stale, {r.deleted} removed "
            f"({r.read_s + r.compute_s + r.write_s:.2f} s)"
        )
    return 0
