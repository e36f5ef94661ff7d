"""One checkpoint: its record and summary statistics."""

from __future__ import annotations

from fastapi import APIRouter

from server.deps import IdPath, QueriesDep
from server.schemas import CheckpointPublic, SummaryPublic

router = APIRouter(prefix="/checkpoints", tags=["checkpoints"])


@router.get("/{checkpoint_id}")
def get_checkpoint(queries: QueriesDep, checkpoint_id: IdPath) -> CheckpointPublic:
    return CheckpointPublic.model_validate(queries.get_checkpoint(checkpoint_id=checkpoint_id))


@router.get("/{checkpoint_id}/summary")
def checkpoint_summary(queries: QueriesDep, checkpoint_id: IdPath) -> SummaryPublic:
    return SummaryPublic.model_validate(queries.checkpoint_summary(checkpoint_id=checkpoint_id))
