"""`store.access`: API tokens, browser sessions, webhooks and their deliveries, as one surface
(one module per table family: `tokens`, `webhooks`)."""

from __future__ import annotations

from beliefscope.store.tokens import TokenTable
from beliefscope.store.webhooks import WebhookTable


class AccessStore(TokenTable, WebhookTable):
    """Tokens and sessions, webhooks and deliveries."""
