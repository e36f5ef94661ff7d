"""Scores of flags against ground truth and probe summaries, per checkpoint (`store.reviews`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

import sqlalchemy as sa

from beliefscope.errors import NotFoundError
from beliefscope.store.engine import Surface
from beliefscope.store.review_tables import ProbeSummary, ReviewScore
from beliefscope.store.sql import nullable
from beliefscope.store.tables import Checkpoint, utcnow
from beliefscope.values.review import SPLITS, ProbeSummaryInfo, Score, ScoreInfo


class ScoreTable(Surface):
    def save_score(
        self,
        *,
        checkpoint_id: int,
        score: Score,
        rules: Sequence[str],
        split: str = "all",
    ) -> ScoreInfo:
        assert split in SPLITS, split
        values = {
            k: nullable(v) if isinstance(v, float) else v
            for k, v in asdict(score).items()
            if k != "intervals"
        }
        intervals = {k: [nullable(lo), nullable(hi)] for k, (lo, hi) in score.intervals.items()}
        with self._store.connect(write=True) as conn:
            new_id = conn.execute(
                sa.insert(ReviewScore)
                .values(
                    checkpoint_id=checkpoint_id,
                    rules=list(rules),
                    created=utcnow(),
                    intervals=intervals,
                    split=split,
                    **values,
                )
                .returning(ReviewScore.id)
            ).scalar_one()
        found = self.list_scores(checkpoint_id=checkpoint_id, split=split)
        return next(s for s in found if s.id == new_id)

    def list_scores(
        self,
        *,
        run_id: int | None = None,
        checkpoint_id: int | None = None,
        latest: bool = True,
        split: str | None = "all",
    ) -> tuple[ScoreInfo, ...]:
        """Scores by checkpoint step; with `latest`, only each checkpoint's newest per split;
        `split` None gives every split."""
        query = sa.select(ReviewScore.__table__, Checkpoint.step).join(
            Checkpoint, Checkpoint.id == ReviewScore.checkpoint_id
        )
        if run_id is not None:
            query = query.where(Checkpoint.run_id == run_id)
        if checkpoint_id is not None:
            query = query.where(ReviewScore.checkpoint_id == checkpoint_id)
        if split is not None:
            query = query.where(ReviewScore.split == split)
        with self._store.connect() as conn:
            rows = conn.execute(query.order_by(ReviewScore.id)).all()
        out: dict[tuple[int, str], ScoreInfo] = {}
        listed = []
        for row in rows:
            info = _score_info(row)
            out[(row.checkpoint_id, row.split)] = info
            listed.append(info)
        chosen = list(out.values()) if latest else listed
        order = {name: i for i, name in enumerate(SPLITS)}
        return tuple(
            sorted(
                chosen,
                key=lambda s: (s.step is None, s.step or 0, s.checkpoint_id, order[s.split], s.id),
            )
        )

    def save_probe_summary(
        self, *, checkpoint_id: int, probe: str, data: Mapping[str, Any]
    ) -> None:
        """Replace a checkpoint's summary of `probe` (e.g. `horizon`, `decode`)."""
        with self._store.connect(write=True) as conn:
            conn.execute(
                sa.delete(ProbeSummary).where(
                    ProbeSummary.checkpoint_id == checkpoint_id, ProbeSummary.probe == probe
                )
            )
            conn.execute(
                sa.insert(ProbeSummary).values(
                    checkpoint_id=checkpoint_id, probe=probe, data=dict(data), created=utcnow()
                )
            )

    def get_probe_summary(self, *, checkpoint_id: int, probe: str) -> dict[str, Any]:
        with self._store.connect() as conn:
            data = conn.execute(
                sa.select(ProbeSummary.data).where(
                    ProbeSummary.checkpoint_id == checkpoint_id, ProbeSummary.probe == probe
                )
            ).scalar()
        if data is None:
            raise NotFoundError(f"checkpoint {checkpoint_id} has no {probe!r} probe summary")
        return dict(data)

    def list_probe_summaries(self, *, run_id: int, probe: str) -> tuple[ProbeSummaryInfo, ...]:
        """The run's checkpoints' summaries of `probe`, by training step."""
        query = (
            sa.select(
                ProbeSummary.checkpoint_id, ProbeSummary.data, ProbeSummary.created, Checkpoint.step
            )
            .join(Checkpoint, Checkpoint.id == ProbeSummary.checkpoint_id)
            .where(Checkpoint.run_id == run_id, ProbeSummary.probe == probe)
        )
        with self._store.connect() as conn:
            rows = conn.execute(query).all()
        found = [
            ProbeSummaryInfo(r.checkpoint_id, r.step, probe, dict(r.data), r.created) for r in rows
        ]
        return tuple(sorted(found, key=lambda s: (s.step is None, s.step or 0, s.checkpoint_id)))


def _score_info(row: Any) -> ScoreInfo:
    """A stored score with NULL back as NaN."""
    nan = float("nan")
    names = [k for k in Score.__dataclass_fields__ if k != "intervals"]
    fields: dict[str, Any] = {k: nan if getattr(row, k) is None else getattr(row, k) for k in names}
    intervals = {
        k: (nan if lo is None else lo, nan if hi is None else hi)
        for k, (lo, hi) in (row.intervals or {}).items()
    }
    return ScoreInfo(
        row.id,
        row.checkpoint_id,
        row.step,
        tuple(row.rules),
        Score(**fields, intervals=intervals),
        row.created,
        row.split,
    )
