"""Standard Webhooks signatures (https://www.standardwebhooks.com): what a receiver checks.

Each delivery carries `webhook-id` (the same on every retry of one delivery, for receivers to
drop duplicates), `webhook-timestamp` (Unix seconds of this attempt, for receivers to refuse
replays) and `webhook-signature`: `v1,` + base64(HMAC-SHA256(key, f"{id}.{timestamp}." + body)),
where `key` is the base64 part of the hook's `whsec_...` secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from beliefscope.store.webhooks import SECRET_PREFIX


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def signed_headers(secret: str, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(secret, message_id, timestamp, body),
    }
