"""Runs, their checkpoints, episodes and per-checkpoint summaries."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Literal

from fastapi import APIRouter, Query

from beliefscope.values.audit import PROBE
from server.deps import AdminDep, ContextDep, IdPath, PageDep, QueriesDep
from server.schemas import (
    AuditPublic,
    AuditsPublic,
    CheckpointsPublic,
    EpisodesPublic,
    FindingPublic,
    FindingsPublic,
    RunDeletedPublic,
    RunPublic,
    RunsPublic,
    SummariesPublic,
)

router = APIRouter(prefix="/runs", tags=["runs"])


@router.get("")
def list_runs(queries: QueriesDep, page: PageDep) -> RunsPublic:
    return RunsPublic.of(queries.list_runs(limit=page.limit, offset=page.offset))


@router.get("/{run_id}")
def get_run(queries: QueriesDep, run_id: IdPath) -> RunPublic:
    return RunPublic.model_validate(queries.get_run(run_id=run_id))


@router.delete("/{run_id}")
def delete_run(ctx: ContextDep, who: AdminDep, run_id: IdPath) -> RunDeletedPublic:
    """Remove a run and everything stored of it: checkpoints, episodes, traces, flags with
    their reviews, scores and its jobs (409 while it is being ingested)."""
    assert who.name is not None
    return RunDeletedPublic.model_validate(ctx.store.writer.delete_run(run_id, who=who.name))


@router.get("/{run_id}/checkpoints")
def list_checkpoints(queries: QueriesDep, run_id: IdPath, page: PageDep) -> CheckpointsPublic:
    queries.get_run(run_id=run_id)
    found = queries.list_checkpoints(run_id=run_id, limit=page.limit, offset=page.offset)
    return CheckpointsPublic.of(found)


@router.get("/{run_id}/episodes")
def list_episodes(
    queries: QueriesDep,
    run_id: IdPath,
    page: PageDep,
    has_truth: bool | None = None,
    key_contains: Annotated[str | None, Query(max_length=500)] = None,
    min_length: Annotated[int | None, Query(ge=0, le=2**31 - 1)] = None,
    order_by: Literal["key", "length", "return", "created"] = "key",
    descending: bool = False,
) -> EpisodesPublic:
    queries.get_run(run_id=run_id)
    found = queries.list_episodes(
        run_id=run_id,
        limit=page.limit,
        offset=page.offset,
        has_truth=has_truth,
        key_contains=key_contains,
        min_length=min_length,
        order_by=order_by,
        descending=descending,
    )
    return EpisodesPublic.of(found)


@router.get("/{run_id}/summaries")
def run_summaries(queries: QueriesDep, run_id: IdPath) -> SummariesPublic:
    """KL and correction statistics of every checkpoint of the run, by training step."""
    found = queries.checkpoint_summaries(run_id=run_id)
    return SummariesPublic.model_validate({"data": list(found), "count": len(found)})


@router.get("/{run_id}/findings")
def run_findings(ctx: ContextDep, run_id: IdPath) -> FindingsPublic:
    """Chronic diagnostics of the run's checkpoints (posterior collapse, no memory, rising
    correction), computed from the stored correction."""
    ctx.store.queries.get_run(run_id=run_id)
    found = ctx.reviews.run_findings(run_id=run_id)
    data = [
        FindingPublic.model_validate({**asdict(f), "examples": [list(e) for e in f.examples]})
        for f in found
    ]
    return FindingsPublic(data=data, count=len(data))


@router.get("/{run_id}/audit")
def run_audit(ctx: ContextDep, run_id: IdPath) -> AuditsPublic:
    """The run audit of each audited checkpoint (`beliefscope audit`), by training step: every
    check's verdict (pass, warn, fail, inconclusive), its evidence and links that open the
    episode at the steps concerned."""
    ctx.store.queries.get_run(run_id=run_id)
    found = ctx.store.reviews.list_probe_summaries(run_id=run_id, probe=PROBE)
    data = [AuditPublic.of(s) for s in found]
    return AuditsPublic(data=data, count=len(data))
