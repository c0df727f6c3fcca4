"""Raw HTTP client side of the red-team suite: requests, SSE parsing, replies to judge.

Plain httpx, not the openai client: the suite must see exactly what went over the wire
(malformed events, fields a client library would drop, a missing [DONE]).
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from tests.attacks.redteam.judge import Verdict, leaks_any
from tests.attacks.redteam.upstream import MODEL

PATHS = {"chat": "/v1/chat/completions", "completion": "/v1/completions"}
DONE = "[DONE]"


def chat_body(content: str, **extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": content}], **extra}


def completion_body(prompt: str, **extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "prompt": prompt, **extra}


def body_for(kind: str, text: str, **extra: Any) -> dict[str, Any]:
    return chat_body(text, **extra) if kind == "chat" else completion_body(text, **extra)


@dataclass(frozen=True)
class Reply:
    """What the client received, whole or streamed."""

    status: int
    stream: bool
    raw: str
    body: Any = None
    events: tuple[Any, ...] = ()
    texts: dict[int, str] = field(default_factory=dict)
    finishes: dict[int, Any] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return bool(self.events) and self.events[-1] == DONE

    @property
    def error_events(self) -> list[dict[str, Any]]:
        return [e for e in self.events if isinstance(e, dict) and "error" in e]

    @property
    def error(self) -> dict[str, Any] | None:
        if isinstance(self.body, dict) and isinstance(self.body.get("error"), dict):
            return self.body["error"]
        return None

    @property
    def text(self) -> str:
        return self.texts.get(0, "")

    @property
    def finish(self) -> Any:
        return self.finishes.get(0)

    def blocked(self) -> bool:
        return bool(self.finishes) and all(f == "content_filter" for f in self.finishes.values())

    def scalars(self) -> list[str]:
        """Every key and value a client could read, each on its own."""
        out: list[str] = []
        roots = [self.body] if not self.stream else list(self.events)
        for root in roots:
            _walk(root, out)
        return out

    def verdict(self) -> Verdict:
        """Leaks a reader can recover from anything in the reply."""
        scalars = self.scalars()
        strings = [s for s in scalars if not s.lstrip("-").isdigit()]
        readable = [*self.texts.values(), *scalars, "\n".join(strings)]
        if self.body is None and not self.events:
            readable.append(self.raw)
        return leaks_any(readable)

    def describe(self) -> str:
        return f"status={self.status} finishes={self.finishes} raw={self.raw[:600]!r}"


_GATEWAY_ID = re.compile(r"(?:chatcmpl|cmpl)-[0-9a-f]{32}")


def _gateway_made(key: str, value: Any) -> bool:
    """An `id` or `created` in exactly the form the gateway makes them (a random uuid hex, its
    own clock): their digits are noise a date or phone rule can match by chance (about once in
    a few thousand replies), and an upstream value carrying a leak never has this form."""
    if key == "id" and isinstance(value, str):
        return _GATEWAY_ID.fullmatch(value) is not None
    if key == "created" and isinstance(value, int) and not isinstance(value, bool):
        return abs(value - time.time()) < 86_400
    return False


def _walk(node: Any, out: list[str]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            out.append(str(key))
            if not _gateway_made(str(key), value):
                _walk(value, out)
    elif isinstance(node, list):
        for value in node:
            _walk(value, out)
    elif node is not None:
        out.append(str(node))


def parse_sse(raw: str) -> list[Any]:
    """Payloads of the `data:` lines, one per event; JSON decoded where it parses."""
    events: list[Any] = []
    for block in raw.replace("\r\n", "\n").split("\n\n"):
        data = [ln[5:].removeprefix(" ") for ln in block.split("\n") if ln.startswith("data:")]
        if not data:
            continue
        payload = "\n".join(data)
        if payload == DONE:
            events.append(DONE)
            continue
        try:
            events.append(orjson.loads(payload))
        except orjson.JSONDecodeError:
            events.append(payload)
    return events


def _stream_texts(kind: str, events: Iterable[Any]) -> tuple[dict[int, str], dict[int, Any]]:
    texts: dict[int, str] = {}
    finishes: dict[int, Any] = {}
    for event in events:
        if not isinstance(event, dict):
            continue
        choices = event.get("choices")
        if not isinstance(choices, list):
            continue
        for choice in choices:
            if not isinstance(choice, dict):
                continue
            index = choice.get("index", 0)
            index = index if isinstance(index, int) else -1
            if kind == "chat":
                delta = choice.get("delta")
                piece = delta.get("content") if isinstance(delta, dict) else None
            else:
                piece = choice.get("text")
            texts[index] = texts.get(index, "") + (piece if isinstance(piece, str) else "")
            if choice.get("finish_reason") is not None:
                finishes[index] = choice["finish_reason"]
    return texts, finishes


def _whole_texts(kind: str, body: Any) -> tuple[dict[int, str], dict[int, Any]]:
    texts: dict[int, str] = {}
    finishes: dict[int, Any] = {}
    choices = body.get("choices") if isinstance(body, dict) else None
    for choice in choices if isinstance(choices, list) else ():
        if not isinstance(choice, dict):
            continue
        index = choice.get("index", 0)
        index = index if isinstance(index, int) else -1
        if kind == "chat":
            message = choice.get("message")
            text = message.get("content") if isinstance(message, dict) else None
        else:
            text = choice.get("text")
        texts[index] = text if isinstance(text, str) else ""
        finishes[index] = choice.get("finish_reason")
    return texts, finishes


def send(base_url: str, kind: str, body: dict[str, Any], *, stream: bool | None = None,
         timeout: float = 60.0) -> Reply:
    """POST one completion request; `stream` overrides the body's own flag."""
    if stream is not None:
        body = {**body, "stream": stream}
    streaming = bool(body.get("stream"))
    with httpx.Client(timeout=timeout) as client:
        response = client.post(base_url + PATHS[kind], content=orjson.dumps(body),
                               headers={"content-type": "application/json"})
    raw = response.content.decode("utf-8", errors="replace")
    is_sse = response.headers.get("content-type", "").startswith("text/event-stream")
    if streaming and is_sse:
        events = parse_sse(raw)
        texts, finishes = _stream_texts(kind, events)
        return Reply(response.status_code, True, raw, None, tuple(events), texts, finishes)
    try:
        parsed = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        parsed = None
    texts, finishes = _whole_texts(kind, parsed)
    return Reply(response.status_code, False, raw, parsed, (), texts, finishes)


# --- chunkings of a scripted answer --------------------------------------------------------
def fixed_chunks(text: str, size: int) -> tuple[str, ...]:
    return tuple(text[i : i + size] for i in range(0, len(text), size))


def random_chunks(text: str, seed: int, lo: int = 1, hi: int = 48) -> tuple[str, ...]:
    rng = random.Random(seed)
    out, i = [], 0
    while i < len(text):
        step = rng.randint(lo, hi)
        out.append(text[i : i + step])
        i += step
    return tuple(out)


def word_chunks(text: str) -> tuple[str, ...]:
    words = text.split(" ")
    return tuple(w + (" " if k < len(words) - 1 else "") for k, w in enumerate(words))


def chunked(text: str, how: str) -> tuple[str, ...] | None:
    """'4', '50' (fixed sizes), 'chars', 'words', 'rand<seed>', 'one' (a single chunk)."""
    if how == "one":
        return (text,)
    if how == "chars":
        return tuple(text)
    if how == "words":
        return word_chunks(text)
    if how.startswith("rand"):
        return random_chunks(text, int(how[4:]))
    return fixed_chunks(text, int(how))
