"""Canary: secrets planted in policy targets (a pii phone, a verbatim corpus sentence) never
appear in a log line, the audit log, /metrics, an error body or a response, after requests that
block and redact them at input and output, streamed and not, and after a broken reload."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.upstream import FakeUpstream, script
from tests.reliability.conftest import (
    CANARY_PHONE,
    CANARY_SENTENCE,
    CHAT_PATH,
    COMPLETION_PATH,
    chat,
)
from tests.servers import run_gateway

ADMIN = "canary-admin"
_FORMS = (CANARY_PHONE, CANARY_PHONE.replace("-", ""), "555-0143", CANARY_SENTENCE,
          "amber lantern finally cracked")

_REQUESTS: list[tuple[str, dict[str, Any]]] = [
    (CHAT_PATH, chat(f"My number is {CANARY_PHONE}, remember it.")),
    (CHAT_PATH, chat(f"Continue this: {CANARY_SENTENCE}")),
    (CHAT_PATH, chat(f"Continue this: {CANARY_SENTENCE}", stream=True)),
    (CHAT_PATH, chat("number?", **script(text=f"Call {CANARY_PHONE} today."))),
    (CHAT_PATH, chat("number?", stream=True, **script(text=f"Call {CANARY_PHONE} today."))),
    (CHAT_PATH, chat("go", **script(text=f"Here: {CANARY_SENTENCE}."))),
    (CHAT_PATH, chat("go", stream=True, **script(text=f"Here: {CANARY_SENTENCE}."))),
    (COMPLETION_PATH, {"model": "fake-model", "prompt": f"Dial {CANARY_PHONE}", "echo": True,
                       **script(text=f"Dial {CANARY_PHONE}")}),
    (CHAT_PATH, chat("x", stream=True, **script(mode="cut",
                                               text=f"Sure, {CANARY_SENTENCE} and more"))),
    (CHAT_PATH, chat(f"{CANARY_PHONE}", temperature="hot")),
    (CHAT_PATH, chat(f"{CANARY_PHONE}", logprobs=True, top_logprobs=5,
                     **script(text=CANARY_PHONE))),
]


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def _leaks(text: str) -> list[str]:
    return [form for form in _FORMS if form in text]


def test_planted_secrets_never_leave_through_any_channel(
    fake_upstream: FakeUpstream, canary_policies: Path, tmp_path: Path,
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    audit = tmp_path / "audit.jsonl"
    # The audit logger does not propagate and keeps the first target set in this process:
    # collect its lines here as well, whichever file it writes.
    audit_lines = _Collect()
    logging.getLogger("lethe.audit").addHandler(audit_lines)
    bodies: list[str] = []
    with run_gateway(upstream=fake_upstream.url, policies=canary_policies, admin_key=ADMIN,
                     audit_log=str(audit)) as gw:
        for path, body in _REQUESTS:
            bodies.append(httpx.post(gw.url + path, json=body, timeout=10).text)
        # A broken edit of the policy naming the phone on the offending line.
        (canary_policies / "canary-person.yaml").write_text(
            f'name: canary-person\ndata:\n  pii:\n    phone: "{CANARY_PHONE}\n'
            "filters:\n  - type: pii\n")
        auth = {"authorization": f"Bearer {ADMIN}"}
        bodies.append(httpx.post(gw.url + "/admin/reload", headers=auth).text)
        bodies.append(httpx.get(gw.url + "/admin/policies", headers=auth).text)
        bodies.append(httpx.get(gw.url + "/readyz").text)
        metrics = httpx.get(gw.url + "/metrics").text
        for handler in logging.getLogger("lethe.audit").handlers:
            handler.flush()
    logging.getLogger("lethe.audit").removeHandler(audit_lines)
    captured = capfd.readouterr()
    audit_text = (audit.read_text() if audit.exists() else "") + "\n".join(audit_lines.lines)

    assert audit_text.count("policy_decision") >= 8, "the requests must have hit the policies"
    assert "content_filter" in "".join(bodies)
    assert "reload failed" in "".join(bodies), "the broken file must have been read"
    channels = {
        "responses": "\n".join(bodies),
        "metrics": metrics,
        "logs": "\n".join(r.getMessage() for r in caplog.records),
        "stdout/stderr": captured.out + captured.err,
        "audit": audit_text,
    }
    assert {name: _leaks(text) for name, text in channels.items()} == {
        name: [] for name in channels
    }


def test_audit_hashes_are_not_plain_sha256_of_the_secret(
    fake_upstream: FakeUpstream, canary_policies: Path
) -> None:
    lines = _Collect()
    logging.getLogger("lethe.audit").addHandler(lines)
    try:
        with run_gateway(upstream=fake_upstream.url, policies=canary_policies) as gw:
            httpx.post(gw.url + CHAT_PATH, json=chat("n", **script(text=f"Call {CANARY_PHONE}.")))
    finally:
        logging.getLogger("lethe.audit").removeHandler(lines)
    text = "\n".join(lines.lines)
    assert "policy_decision" in text
    assert hashlib.sha256(CANARY_PHONE.encode()).hexdigest() not in text
