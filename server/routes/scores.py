"""Scores of review flags against ground truth, per checkpoint."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter

from server.deps import ContextDep, IdQuery
from server.schemas import ScorePublic, ScoresPublic

router = APIRouter(prefix="/scores", tags=["scores"])


@router.get("")
def list_scores(
    ctx: ContextDep, run_id: IdQuery = None, checkpoint_id: IdQuery = None, latest: bool = True
) -> ScoresPublic:
    """Scores by checkpoint step (with `latest`, each checkpoint's newest); NaN where a figure
    is undefined arrives as the string "NaN"."""
    found = ctx.store.reviews.list_scores(run_id=run_id, checkpoint_id=checkpoint_id, latest=latest)
    data = [
        ScorePublic.model_validate(
            {
                **asdict(s.score),
                "id": s.id,
                "checkpoint_id": s.checkpoint_id,
                "step": s.step,
                "rules": list(s.rules),
                "created": s.created,
            }
        )
        for s in found
    ]
    return ScoresPublic(data=data, count=len(data))
