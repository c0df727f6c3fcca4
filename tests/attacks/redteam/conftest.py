"""One malicious upstream and one gateway with the shipped policies, shared by the whole suite.

The many small cases run in tight loops over these two servers (starting a gateway loads the
embedding model). Cases that need other settings (a small pool, short timeouts) share one
`tight_gateway` in front of the same upstream.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.settings import Settings
from tests.attacks.redteam.upstream import MODEL, ScriptedUpstream
from tests.conftest import POLICIES
from tests.servers import RunningGateway, run_gateway

#: Settings the issue asks for; a case that needs one fails (it is not skipped) until it exists.
BODY_TIMEOUT = "body_read_timeout_s"
BODY_IDLE_TIMEOUT = "body_idle_timeout_s"
IDLE_TIMEOUT = "upstream_idle_timeout_s"

TIGHT: dict[str, Any] = {
    "max_upstream_connections": 8,
    "upstream_pool_timeout_s": 2.0,
    BODY_TIMEOUT: 3.0,
    BODY_IDLE_TIMEOUT: 1.0,
    IDLE_TIMEOUT: 1.0,
    "first_byte_timeout_s": 3.0,
    "read_timeout_s": 3.0,
}


def supported(wanted: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The settings this gateway version has, and the names it lacks."""
    fields = Settings.model_fields
    return ({k: v for k, v in wanted.items() if k in fields},
            [k for k in wanted if k not in fields])


class LogCapture(logging.Handler):
    """Every record the gateway's process logs (lethe, audit, uvicorn), tracebacks included."""

    LOGGERS = ("", "lethe", "lethe.audit", "uvicorn", "uvicorn.error", "uvicorn.access")

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record))
        except Exception:  # a record whose message cannot be formatted still counts
            self.lines.append(repr(record.msg) + repr(record.args))

    def attach(self) -> None:
        for name in self.LOGGERS:
            logger = logging.getLogger(name)
            if self not in logger.handlers:
                logger.addHandler(self)

    def detach(self) -> None:
        for name in self.LOGGERS:
            logging.getLogger(name).removeHandler(self)

    def mark(self) -> int:
        return len(self.lines)

    def since(self, mark: int) -> str:
        return "\n".join(dict.fromkeys(self.lines[mark:]))


@pytest.fixture(scope="package")
def upstream() -> Iterator[ScriptedUpstream]:
    with ScriptedUpstream() as server:
        yield server


@pytest.fixture(scope="package")
def audit_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("redteam-audit") / "audit.jsonl"


@pytest.fixture(scope="package")
def gateway(upstream: ScriptedUpstream, audit_file: Path) -> Iterator[RunningGateway]:
    """The shipped policies (person redact, concept refuse, work block) over the attacker."""
    with run_gateway(upstream=upstream.url, policies=POLICIES, served_models=(MODEL,),
                     audit_log=str(audit_file), first_byte_timeout_s=30.0) as gw:
        yield gw


@pytest.fixture(scope="package")
def tight_gateway(upstream: ScriptedUpstream, audit_file: Path,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    """The person policy only, a small upstream pool and short timeouts (where they exist)."""
    root = tmp_path_factory.mktemp("redteam-tight")
    (root / "elena-marquez.yaml").write_text(
        (POLICIES / "elena-marquez.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    settings, _ = supported(TIGHT)
    with run_gateway(upstream=upstream.url, policies=root, served_models=(MODEL,),
                     audit_log=str(audit_file), **settings) as gw:
        yield gw


@pytest.fixture(scope="package")
def _log_capture() -> Iterator[LogCapture]:
    capture = LogCapture()
    yield capture
    capture.detach()


@pytest.fixture
def logs(gateway: RunningGateway, _log_capture: LogCapture) -> LogCapture:
    # Attached after every gateway start: uvicorn's start-up resets its loggers' handlers.
    _log_capture.attach()
    return _log_capture
