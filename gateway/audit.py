"""One JSON line per policy decision. Matched text never appears: only offsets and a keyed hash.

The hash is an HMAC-SHA256 under `LETHE_AUDIT_KEY` (or a random per-process key), so an
operator holding the key can confirm which target matched, while a reader of the log cannot
recover a short, low-entropy target (a phone number) by hashing every candidate.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import sys
import time
from dataclasses import dataclass
from typing import Any

import orjson

from filters import FilterResult


@dataclass(frozen=True)
class Decision:
    request_id: str
    tenant: str
    policy: str
    filter: str
    stage: str
    action: str
    score: float
    reason: str

    def line(self, result: FilterResult, text: str, key: bytes, offset: int = 0) -> bytes:
        spans = [
            {
                "start": s.start + offset,
                "end": s.end + offset,
                "hmac_sha256": hmac.new(
                    key, text[s.start : s.end].encode(), hashlib.sha256
                ).hexdigest(),
            }
            for s in result.spans
        ]
        record: dict[str, Any] = {
            "ts": round(time.time(), 3),
            "event": "policy_decision",
            "request_id": self.request_id,
            "tenant": self.tenant,
            "policy": self.policy,
            "filter": self.filter,
            "stage": self.stage,
            "action": self.action,
            "score": round(float(self.score), 4),
            "reason": self.reason,
            "spans": spans,
        }
        return orjson.dumps(record)


class _AuditHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler an AuditLog installed, so a later AuditLog replaces it."""


class AuditLog:
    """Writes through the `lethe.audit` logger; the target is process-wide (last one wins)."""

    def __init__(self, target: str = "-", key: str | None = None) -> None:
        self.key = key.encode() if key else secrets.token_bytes(32)
        self._logger = logging.getLogger("lethe.audit")
        self._logger.propagate = False
        self._logger.setLevel(logging.INFO)
        for old in [h for h in self._logger.handlers if isinstance(h, _AuditHandler)]:
            self._logger.removeHandler(old)
            old.close()
        stream = sys.stderr if target == "-" else open(target, "a", encoding="utf-8")  # noqa: SIM115
        handler = _AuditHandler(stream)
        handler.setFormatter(logging.Formatter("%(message)s"))
        self._logger.addHandler(handler)

    def write(self, line: bytes) -> None:
        self._logger.info(line.decode())
