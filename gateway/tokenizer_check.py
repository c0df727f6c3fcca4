"""The gateway's tokenizer against the engine's: token bans are token ids of the served model.

The `logit_bias` filter turns banned words into token ids with the tokenizer in
LETHE_TOKENIZER_DIR; another model's tokenizer bans unrelated tokens and misses the real ones,
silently. vLLM tells neither its vocabulary size nor a tokenizer hash, but it tokenizes
(/tokenize) and detokenizes (/detokenize): probe texts must come back as the same ids, and the
gateway's largest id must read the same on the engine while the next one is unknown there.

Checked when a loaded policy uses the tokenizer: at start-up a mismatch stops the gateway; an
engine not answering yet is checked again in the background (the gateway is unready until it
agrees); an engine without /tokenize (not vLLM) is reported and not checked.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from gateway.upstream import Upstream, UpstreamError

log = logging.getLogger("lethe")

#: Words, names, accents, other scripts, emoji, digits, code: where tokenizers differ.
PROBES: tuple[str, ...] = (
    "The capital of France is Paris.",
    " Harry Potter met Hermione Granger at Hogwarts with J.K. Rowling",
    "naïve café, Zürich — 東京 and Москва 🚀 1234567890",
    'def main():\n    return {"id": 42, "ok": True}\n',
)
_TIMEOUT_S = 10.0

State = Literal["unchecked", "match", "mismatch", "unverifiable", "unreachable"]


class TokenizerMismatch(RuntimeError):
    """The gateway's tokenizer is not the served model's: token bans would be wrong."""


@dataclass(frozen=True)
class TokenizerCheck:
    state: State
    detail: str

    @property
    def settled(self) -> bool:
        return self.state in ("match", "mismatch", "unverifiable")


async def compare(upstream: Upstream, tokenizer: Any, model: str, where: str) -> TokenizerCheck:
    """One comparison of `tokenizer` (loaded from `where`) with the engine serving `model`."""
    for probe in PROBES:
        ours = list(tokenizer.encode(probe, add_special_tokens=False))
        status, body = await _call(
            upstream, "/tokenize", {"model": model, "prompt": probe, "add_special_tokens": False}
        )
        if status is None or status >= 500:
            return TokenizerCheck("unreachable", body)
        if status == 404:
            return TokenizerCheck("unverifiable", "the engine has no /tokenize (not vLLM?)")
        if status != 200:
            return TokenizerCheck("unverifiable", f"/tokenize answered {status}: {body}")
        theirs = orjson.loads(body).get("tokens")
        if theirs != ours:
            return TokenizerCheck(
                "mismatch",
                f"the tokenizer in {where} is not the served model {model!r}'s: {probe!r} is "
                f"{_ids(ours)} here and {_ids(theirs)} on the engine; set LETHE_TOKENIZER_DIR "
                "to the served model's directory (chart: tokenizer.*)",
            )
    last = len(tokenizer) - 1
    status, body = await _call(upstream, "/detokenize", {"model": model, "tokens": [last]})
    if status is None or status >= 500:
        return TokenizerCheck("unreachable", body)
    ours_text = tokenizer.decode([last])
    if status != 200 or orjson.loads(body).get("prompt") != ours_text:
        return TokenizerCheck(
            "mismatch",
            f"the tokenizer in {where} has {last + 1} tokens but the served model {model!r} "
            f"does not read id {last} as {ours_text!r} (/detokenize: {status} {body[:200]})",
        )
    status, body = await _call(upstream, "/detokenize", {"model": model, "tokens": [last + 1]})
    if status == 200 and orjson.loads(body).get("prompt"):
        return TokenizerCheck(
            "mismatch",
            f"the served model {model!r} has more tokens than the tokenizer in {where} "
            f"({last + 1}): id {last + 1} reads {orjson.loads(body).get('prompt')!r} there",
        )
    return TokenizerCheck("match", f"{len(PROBES)} probes and a vocabulary of {last + 1} agree")


async def _call(upstream: Upstream, path: str, body: dict[str, Any]) -> tuple[int | None, str]:
    try:
        status, raw = await upstream.exchange("POST", path, body, timeout=_TIMEOUT_S)
    except UpstreamError as exc:
        return None, f"{path}: {exc}"
    return status, raw[:500].decode("utf-8", "replace")


def _ids(ids: Any) -> str:
    if not isinstance(ids, list):
        return repr(ids)
    shown = ", ".join(str(i) for i in ids[:10])
    return f"[{shown}{', ...' if len(ids) > 10 else ''}] ({len(ids)} tokens)"


class TokenizerGate:
    """The check's state for readiness and /readyz, and its background retries."""

    def __init__(self, required: bool, retry_s: float) -> None:
        self.required = required
        self.retry_s = retry_s
        self.result = TokenizerCheck("unchecked", "no policy uses the tokenizer")
        self._retry: asyncio.Task[None] | None = None

    @property
    def ready(self) -> bool:
        return self.result.state in ("unchecked", "match", "unverifiable")

    def summary(self) -> dict[str, str]:
        return {"state": self.result.state, "detail": self.result.detail}

    async def check(
        self,
        upstream: Upstream,
        resources: Any,
        model: Callable[[], Awaitable[str]],
        at_start: bool,
    ) -> None:
        """Compare now when a policy uses the tokenizer and it was not compared yet; raises
        TokenizerMismatch at start-up on a mismatch."""
        if not self.required or not resources.tokenizer_loaded or self.result.settled:
            return
        self.result = await self._once(upstream, resources, model)
        self._report()
        if self.result.state == "mismatch" and at_start:
            raise TokenizerMismatch(self.result.detail)
        if self.result.state == "unreachable" and self._retry is None:
            self._retry = asyncio.create_task(self._until_settled(upstream, resources, model))

    async def _once(
        self, upstream: Upstream, resources: Any, model: Callable[[], Awaitable[str]]
    ) -> TokenizerCheck:
        try:
            name = await model()
        except UpstreamError as exc:
            return TokenizerCheck("unreachable", f"/v1/models: {exc}")
        if not name:
            return TokenizerCheck("unreachable", "the engine lists no model yet")
        tokenizer = await asyncio.to_thread(lambda: resources.tokenizer)
        return await compare(upstream, tokenizer, name, str(resources.tokenizer_dir))

    async def _until_settled(
        self, upstream: Upstream, resources: Any, model: Callable[[], Awaitable[str]]
    ) -> None:
        while not self.result.settled:
            await asyncio.sleep(self.retry_s)
            self.result = await self._once(upstream, resources, model)
            self._report()

    def _report(self) -> None:
        state, detail = self.result.state, self.result.detail
        if state == "mismatch":
            log.error("tokenizer check failed, token bans would be wrong: %s", detail)
        elif state == "match":
            log.info("tokenizer agrees with the engine: %s", detail)
        elif state == "unverifiable":
            log.warning("tokenizer not checked against the engine: %s", detail)
        else:
            log.info("tokenizer check waits for the engine: %s", detail)

    def stop(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
