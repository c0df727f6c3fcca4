"""Canary: secrets planted in policy targets (a pii phone, a verbatim corpus sentence) never
appear in a log line (tracebacks included), the audit log, /metrics, an error body or a
response, after requests that block and redact them at input and output, streamed and not,
after an upstream that puts them in side channels, malformed chunks, error chunks and error
responses, and after a broken reload."""

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

def _chunk(content: Any, index: Any = 0, **extra: Any) -> dict[str, Any]:
    return {"id": "up", "object": "chat.completion.chunk", "created": 1, "model": "fake-model",
            "choices": [{"index": index, "delta": {"content": content}, "finish_reason": None,
                         **extra}]}


def _whole(content: Any, index: Any = 0, **extra: Any) -> dict[str, Any]:
    return {"id": "up", "object": "chat.completion", "created": 1, "model": "fake-model",
            "choices": [{"index": index, "message": {"role": "assistant", "content": content},
                         "finish_reason": "stop", **extra}]}


#: Upstream data that breaks the answer's shape, each carrying the phone where a traceback or
#: a relayed error message would quote it.
_BROKEN_CHUNKS: list[Any] = [
    _chunk([{"type": "text", "text": CANARY_PHONE}]),
    _chunk({"text": CANARY_PHONE}),
    _chunk("x", index=CANARY_PHONE),
    {"choices": {"0": CANARY_PHONE}},
    {"choices": [CANARY_PHONE]},
    f'"{CANARY_PHONE}"',
    '{"choices": [{"index": 0, "delta": {"content": "\\ud800' + CANARY_PHONE + '"}}]}',
]
_ERROR_CHUNKS: list[Any] = [
    {"error": {"message": f"engine failed on {CANARY_PHONE}", "type": "x", "code": 500}},
    {"object": "error", "message": CANARY_PHONE},
]
_BROKEN_WHOLE: list[Any] = [
    _whole([CANARY_PHONE]),
    _whole("x", index=CANARY_PHONE),
    {"choices": CANARY_PHONE},
]
_SIDE_CHANNELS = {"stop_reason": CANARY_PHONE, "x_extra": CANARY_PHONE,
                  "finish_reason": {"reason": CANARY_PHONE},
                  "logprobs": {"content": [{"token": CANARY_PHONE}]}}
_SIDE_TOP = {"system_fingerprint": CANARY_PHONE, "model": CANARY_PHONE, "id": CANARY_PHONE,
             "usage": {"prompt_tokens": CANARY_PHONE}}

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
    *((CHAT_PATH, chat("x", stream=True, **script(raw_events=[_chunk("Hi "), bad, "[DONE]"])))
      for bad in _BROKEN_CHUNKS + _ERROR_CHUNKS),
    *((CHAT_PATH, chat("x", **script(raw_whole=bad))) for bad in _BROKEN_WHOLE),
    (CHAT_PATH, chat("x", **script(raw_whole={"error": {"message": CANARY_PHONE}}))),
    (CHAT_PATH, chat("x", stream=True, **script(raw_events=[
        {**_chunk("Hi ", **_SIDE_CHANNELS), **_SIDE_TOP}, "[DONE]"]))),
    (CHAT_PATH, chat("x", **script(raw_whole={**_whole("Hi", **_SIDE_CHANNELS), **_SIDE_TOP}))),
    *((CHAT_PATH, chat("x", stream=stream, **script(
        mode="status", status=status, message=f"cannot serve {CANARY_PHONE}")))
      for status in (400, 500) for stream in (False, True)),
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
        cut: list[int] = []
        for i, (path, body) in enumerate(_REQUESTS):
            try:
                bodies.append(httpx.post(gw.url + path, json=body, timeout=10).text)
            except httpx.RemoteProtocolError:
                cut.append(i)  # a stream aborted without its end: asserted below
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
        # Formatted records too: a traceback (an exception's text) is part of what a log keeps.
        "logs": "\n".join(r.getMessage() for r in caplog.records) + caplog.text,
        "stdout/stderr": captured.out + captured.err,
        "audit": audit_text,
    }
    assert {name: _leaks(text) for name, text in channels.items()} == {
        name: [] for name in channels
    }
    assert cut == [], "every stream ends with an error event and [DONE], never a cut"
    # The broken upstream data reached the gateway (and was not refused before it was sent).
    joined = "".join(bodies)
    assert joined.count("upstream sent a malformed") == len(_BROKEN_CHUNKS) + len(_BROKEN_WHOLE)
    assert joined.count('"upstream error"') == len(_ERROR_CHUNKS) + 1 + 2
    assert joined.count('"upstream rejected the request"') == 2


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
