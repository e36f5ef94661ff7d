"""Which traces an export covers: the `--run/--checkpoint/--episode/--variant` filters resolved
against the store, with the names (run, checkpoint step, episode key) each exported row carries.

`--checkpoint` takes a training step or a checkpoint id: a bare number is a step when some
selected checkpoint has it, else an id; `step:N` and `id:N` say which explicitly. `--episode`
takes an episode key (exact) or an episode id, the same way (`key:K`, `id:N`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

from beliefscope.errors import BadInputError, NotFoundError
from beliefscope.store.engine import Store
from beliefscope.values.page import MAX_LIMIT, Page
from beliefscope.values.traces import CheckpointInfo, EpisodeInfo, RunInfo, TraceInfo

T = TypeVar("T")


@dataclass(frozen=True)
class Filters:
    run: str | None = None  # run name
    checkpoint: str | None = None  # step or id, see the module docstring
    episode: str | None = None  # key or id
    variant: str | None = None  # exact trace variant, e.g. "filter", "openloop:5"
    posterior: str | None = None  # "mode", "sample:SEED"


@dataclass(frozen=True)
class SelectedTrace:
    """A trace with the names its exported rows carry."""

    run: RunInfo
    checkpoint: CheckpointInfo
    episode: EpisodeInfo
    trace: TraceInfo


def select_runs(store: Store, filters: Filters) -> list[RunInfo]:
    if filters.run is not None:
        return [store.queries.find_run(name=filters.run)]
    return list(store.queries.list_runs(limit=MAX_LIMIT).items)


def select_checkpoints(store: Store, run: RunInfo, spec: str | None) -> list[CheckpointInfo]:
    listing = partial(store.queries.list_checkpoints, run_id=run.id, limit=MAX_LIMIT)
    checkpoints = _all(listing)
    if spec is None:
        return checkpoints
    kind, number = _split(spec, ("step", "id"))
    value = _integer(number, "--checkpoint")
    by_step = [c for c in checkpoints if c.step == value]
    by_id = [c for c in checkpoints if c.id == value]
    if kind == "step":
        return by_step
    if kind == "id":
        return by_id
    return by_step or by_id


def select_episode(store: Store, run: RunInfo, spec: str) -> EpisodeInfo | None:
    """The run's episode named by `spec`, or None when the run has no such episode."""
    kind, value = _split(spec, ("key", "id"))
    if kind in (None, "key"):
        page = store.queries.list_episodes(run_id=run.id, key_contains=value, limit=MAX_LIMIT)
        exact = [e for e in page.items if e.key == value]
        if exact or kind == "key":
            return exact[0] if exact else None
        if not value.strip().lstrip("-").isdigit():
            return None  # a key this run does not have
    episode_id = _integer(value, "--episode")
    try:
        episode = store.queries.get_episode(episode_id=episode_id)
    except NotFoundError:
        return None
    return episode if episode.run_id == run.id else None


def select_traces(store: Store, filters: Filters) -> Iterator[SelectedTrace]:
    """Matching traces, run by run, checkpoint by training step, then episode and variant.

    Raises `BadInputError` when nothing matches, so an export never writes an empty file by
    mistake (a typo in a filter is the usual cause)."""
    found = False
    for run in select_runs(store, filters):
        episode_filter: EpisodeInfo | None = None
        if filters.episode is not None:
            episode_filter = select_episode(store, run, filters.episode)
            if episode_filter is None:
                continue
        episodes: dict[int, EpisodeInfo] = {}
        for checkpoint in select_checkpoints(store, run, filters.checkpoint):
            listing = partial(
                store.queries.list_traces,
                checkpoint_id=checkpoint.id,
                episode_id=None if episode_filter is None else episode_filter.id,
                variant=filters.variant,
                posterior=filters.posterior,
                limit=MAX_LIMIT,
            )
            traces = _all(listing)
            for trace in traces:
                if trace.episode_id not in episodes:
                    episodes[trace.episode_id] = store.queries.get_episode(
                        episode_id=trace.episode_id
                    )
                found = True
                yield SelectedTrace(run, checkpoint, episodes[trace.episode_id], trace)
    if not found:
        raise BadInputError(f"no stored traces match {describe(filters)}")


def describe(filters: Filters) -> str:
    given = [f"--{k} {v}" for k, v in vars(filters).items() if v is not None]
    return " ".join(given) if given else "(no filters: the store holds no traces)"


def _all(page_at: Callable[..., Page[T]]) -> list[T]:
    """Every item of a paged listing (`page_at(offset=N)`)."""
    items: list[T] = []
    while True:
        page = page_at(offset=len(items))
        items.extend(page.items)
        if not page.items or len(items) >= page.total:
            return items


def _split(spec: str, kinds: tuple[str, ...]) -> tuple[str | None, str]:
    head, sep, tail = spec.partition(":")
    if sep and head in kinds:
        return head, tail
    return None, spec


def _integer(text: str, flag: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise BadInputError(f"{flag} {text!r}: expected a number") from None
