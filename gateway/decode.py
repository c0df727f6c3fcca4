"""What the engine's decoding processor enforces, learned by probing it (mode: decode).

Policies in mode `decode` (and `both`) are enforced inside vLLM by decoding.memfree when the
engine runs it with an index of the *same* policy version; the gateway then names them in the
upstream request's `vllm_xargs`. Anything else fails closed: the policy's own filters run,
`/admin/policies` says why, and `lethe_decode_fallbacks` counts each request.

The probe is one `/v1/completions` request with `vllm_xargs: {"lethe_probe": 1}`. An engine
with the processor refuses it during request validation (400, no forward pass) and the refusal
carries its index manifest {policy: digest}; an engine without it answers 200 (one token).
It runs when policies load and then every PROBE_INTERVAL_S, so an engine restarted without
the processor is noticed within that interval.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from decoding import PROBE_ARG, PROBE_REPLY
from decoding.policies import DECODE_MODES, DecodePolicyError, read_policy

log = logging.getLogger("lethe")

PROBE_INTERVAL_S = 10.0
PROBE_TIMEOUT_S = 10.0

EngineState = Literal["unknown", "present", "absent", "off"]


def wants_decode(spec: Any) -> bool:
    """Whether a policy asks for decoding-time suppression (and has text to index)."""
    return spec.mode in DECODE_MODES and bool(spec.data.corpus_file or spec.data.literals)


@dataclass(frozen=True)
class ProbeResult:
    state: EngineState
    manifest: dict[str, str]
    detail: str = ""


def parse_probe(status: int, raw: bytes) -> ProbeResult:
    """Read the engine's answer to the probe."""
    text = raw.decode("utf-8", "replace")
    if status == 200:
        return ProbeResult("absent", {}, "the engine runs without the lethe decoding processor")
    at = text.find(PROBE_REPLY)
    if status == 400 and at >= 0:
        # The reply sits inside vLLM's error message, JSON-escaped: read the envelope first.
        try:
            message = json.loads(raw)["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = text
        start = message.find(PROBE_REPLY)
        try:
            held, _ = json.JSONDecoder().raw_decode(message[start + len(PROBE_REPLY) :])
        except ValueError:
            return ProbeResult("unknown", {}, "unreadable probe reply")
        if isinstance(held, dict) and all(isinstance(v, str) for v in held.values()):
            return ProbeResult("present", {str(k): v for k, v in held.items()})
        return ProbeResult("unknown", {}, "unreadable probe reply")
    return ProbeResult("unknown", {}, f"probe answered HTTP {status}")


class EngineDecoding:
    """The gateway's view of the engine's decoding index; `tagged_for` is asked per request."""

    def __init__(self, enabled: bool, metrics: Any) -> None:
        self.enabled = enabled
        self.metrics = metrics
        self.result = ProbeResult("off" if not enabled else "unknown", {})
        #: policy name -> digest of the version the gateway enforces (None: unreadable).
        self.expected: dict[str, str | None] = {}
        self._task: asyncio.Task[None] | None = None

    def expect(self, policies: list[tuple[str, Path]]) -> None:
        """The decode policies now loaded (name, file); their digests, as the engine computes
        them (decoding.policies), are what the engine must hold."""
        expected: dict[str, str | None] = {}
        for name, path in policies:
            try:
                source = read_policy(path)
            except DecodePolicyError as exc:
                log.error("decode policy %s unreadable for the engine check: %s", name, exc)
                source = None
            expected[name] = source.digest if source is not None else None
        self.expected = expected

    def tagged_for(self, name: str) -> str | None:
        """`name@digest` when the engine enforces this version of the policy, else None."""
        digest = self.expected.get(name)
        if self.result.state != "present" or digest is None:
            return None
        return f"{name}@{digest}" if self.result.manifest.get(name) == digest else None

    def status(self, name: str) -> str:
        if name not in self.expected:
            return "not requested"
        if self.tagged_for(name) is not None:
            return f"enforced by the engine ({name}@{self.expected[name]})"
        state = self.result.state
        if state == "off":
            why = "engine decoding disabled (LETHE_ENGINE_DECODE=off)"
        elif state == "present":
            held = self.result.manifest.get(name)
            why = "the engine has not indexed this policy" if held is None else (
                "the engine holds another version of this policy (restart it to re-index)"
            )
        elif state == "absent":
            why = self.result.detail
        else:
            why = f"engine not probed yet ({self.result.detail or 'no answer'})"
        return f"unavailable: {why}; output filters enforced instead"

    async def probe(self, upstream: Any, model: str) -> ProbeResult:
        if not self.enabled:
            return self.result
        body = {"model": model, "prompt": ".", "max_tokens": 1, "vllm_xargs": {PROBE_ARG: 1}}
        try:
            status, raw = await upstream.exchange(
                "POST", "/v1/completions", body, timeout=PROBE_TIMEOUT_S
            )
            result = parse_probe(status, raw)
        except Exception as exc:  # the engine down or unreachable: fail closed until it answers
            result = ProbeResult("unknown", {}, f"probe failed: {type(exc).__name__}")
        if result.state != self.result.state or result.manifest != self.result.manifest:
            log.info("engine decoding: %s %s %s", result.state, result.manifest, result.detail)
        self.result = result
        self.metrics.decode_engine.set(1 if result.state == "present" else 0)
        return result

    def watch(self, probe: Any) -> None:
        """Re-probe every PROBE_INTERVAL_S while decode policies are loaded."""
        if self._task is None and self.enabled:
            self._task = asyncio.create_task(self._loop(probe))

    async def _loop(self, probe: Any) -> None:
        while True:
            await asyncio.sleep(PROBE_INTERVAL_S)
            if self.expected:
                try:
                    await probe()
                except Exception as exc:
                    log.warning("engine decoding probe failed: %s", type(exc).__name__)

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
