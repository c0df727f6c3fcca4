"""One JSON line per policy decision. Matched text never appears: only its hash and offsets."""

from __future__ import annotations

import hashlib
import logging
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

    def line(self, result: FilterResult, text: str, offset: int = 0) -> bytes:
        spans = [
            {
                "start": s.start + offset,
                "end": s.end + offset,
                "sha256": hashlib.sha256(text[s.start : s.end].encode()).hexdigest(),
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


class AuditLog:
    def __init__(self, target: str = "-") -> None:
        self._logger = logging.getLogger("lethe.audit")
        self._logger.propagate = False
        self._logger.setLevel(logging.INFO)
        if not self._logger.handlers:
            handler: logging.Handler = (
                logging.StreamHandler(sys.stderr) if target == "-" else logging.FileHandler(target)
            )
            handler.setFormatter(logging.Formatter("%(message)s"))
            self._logger.addHandler(handler)

    def write(self, line: bytes) -> None:
        self._logger.info(line.decode())
