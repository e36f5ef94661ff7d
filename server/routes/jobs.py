"""Ingest jobs: start one on a registered data root (`admin`), follow its state and errors."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, status

from server.deps import AdminDep, ContextDep, IdPath, PageDep, QueriesDep
from server.schemas import IngestCreate, JobErrorsPublic, JobPublic, JobsPublic

router = APIRouter(prefix="/jobs", tags=["jobs"])


@router.get("")
def list_jobs(
    queries: QueriesDep,
    page: PageDep,
    run_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    state: Literal["queued", "running", "done", "failed"] | None = None,
) -> JobsPublic:
    found = queries.list_jobs(run_id=run_id, state=state, limit=page.limit, offset=page.offset)
    return JobsPublic.of(found)


@router.post("", status_code=status.HTTP_202_ACCEPTED)
def start_ingest(ctx: ContextDep, who: AdminDep, body: IngestCreate) -> JobPublic:
    """Ingest a registered data root (or a directory inside one) in the background; poll the
    returned job for progress and per-file errors."""
    assert who.name is not None
    job_id = ctx.jobs.start(body.root, run_name=body.run, who=who.name)
    return JobPublic.model_validate(ctx.store.queries.get_job(job_id=job_id))


@router.get("/{job_id}")
def get_job(queries: QueriesDep, job_id: IdPath) -> JobPublic:
    return JobPublic.model_validate(queries.get_job(job_id=job_id))


@router.get("/{job_id}/errors")
def list_job_errors(queries: QueriesDep, job_id: IdPath, page: PageDep) -> JobErrorsPublic:
    queries.get_job(job_id=job_id, errors_limit=1)
    found = queries.list_job_errors(job_id=job_id, limit=page.limit, offset=page.offset)
    return JobErrorsPublic.of(found)
