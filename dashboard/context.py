"""What every page and callback needs from the process: the store, the access policy and the
API's address.

`create_dash` puts one `Context` on the FastAPI app's state; pages read it through `current()`
at request time, so nothing is loaded or connected at import.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, cast

import dash

if TYPE_CHECKING:
    from beliefscope.access import Authorizer
    from beliefscope.config import Settings
    from beliefscope.review.service import ReviewService
    from beliefscope.store.engine import Store
    from beliefscope.store.queries import Queries


@dataclass(frozen=True)
class Context:
    store: Store
    settings: Settings
    access: Authorizer
    """The server's own policy: the dashboard authorizes exactly as the API does."""
    api_prefix: str = "/api/v1"

    @property
    def queries(self) -> Queries:
        return self.store.queries

    @cached_property
    def reviews(self) -> ReviewService:
        """The review service: rule thresholds, the queue, findings, applying rules."""
        from beliefscope.review.service import ReviewService

        return ReviewService(self.store)

    def frame_url(
        self, episode_id: int, *, checkpoint_id: int, panels: str = "recon,pred,error"
    ) -> str:
        """URL template of an episode's overlay frames; the player substitutes `{t}`."""
        return (
            f"{self.api_prefix}/episodes/{episode_id}/frames/{{t}}"
            f"?checkpoint={checkpoint_id}&panels={panels}"
        )

    def strip_url(self, episode_id: int, *, checkpoint_id: int) -> str:
        """URL template of an episode's strips (observation, recon, prediction, error per
        step); the player substitutes `{t0}`, the first step, and `{n}`, how many."""
        return (
            f"{self.api_prefix}/episodes/{episode_id}/strip/{{t0}}"
            f"?n={{n}}&checkpoint={checkpoint_id}"
        )

    def truth_url(self, episode_id: int, *, checkpoint_id: int | None = None) -> str:
        """URL template of the ground-truth re-render of a step (`{t}`), without its caption;
        with the checkpoint whose decoded belief is drawn on it."""
        belief = "" if checkpoint_id is None else f"&checkpoint={checkpoint_id}"
        return f"{self.api_prefix}/episodes/{episode_id}/truth/{{t}}?caption=false{belief}"


def current() -> Context:
    return cast(Context, dash.get_app().server.state.beliefscope_dashboard)
