"""The seam between the pipeline and the policy layer.

The pipeline only knows these protocols; gateway.enforcement implements them for a loaded
policy set, and PASS_THROUGH is what runs when no policy applies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

Kind = Literal["chat", "completion"]
#: The upstream path of each kind, also the route label of its metrics.
UPSTREAM_PATHS: dict[Kind, str] = {"chat": "/v1/chat/completions", "completion": "/v1/completions"}


@dataclass
class RequestContext:
    request_id: str
    kind: Kind
    tenant: str = "default"
    requested_model: str = ""
    #: Upstream model name to use instead of the requested one (a LoRA adapter).
    upstream_model: str | None = None


class Refusal(Exception):
    """The input stage refused with an operator message: answered as a normal completion."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Release:
    """What a choice guard lets out after one step."""

    text: str = ""
    blocked: bool = False
    #: Text to append when blocked (an operator refusal message), never target text.
    replacement: str = ""


class ChoiceGuard(Protocol):
    async def feed(self, text: str, final: bool) -> Release: ...


class RequestStages(Protocol):
    """Per-request policy work. Created for each request, never shared."""

    @property
    def output_active(self) -> bool: ...

    async def input_stage(self, body: dict[str, Any]) -> None:
        """Screen the prompt; raise GatewayError to refuse, or redact `body` in place."""

    def patch_request(self, body: dict[str, Any]) -> None:
        """Change the upstream request: logit bias, bad words, adapter routing."""

    def choice_guard(self, index: int) -> ChoiceGuard:
        """A per-choice streaming guard (only called when output_active)."""

    async def check_output(self, text: str) -> Release:
        """Judge a whole non-streamed choice text; `Release.text` is what may be sent."""


class PolicyStages(Protocol):
    def begin(self, ctx: RequestContext) -> RequestStages: ...


class _PassThroughRequest:
    output_active = False

    async def input_stage(self, body: dict[str, Any]) -> None:
        return None

    def patch_request(self, body: dict[str, Any]) -> None:
        return None

    def choice_guard(self, index: int) -> ChoiceGuard:
        raise RuntimeError("no output stage without policies")

    async def check_output(self, text: str) -> Release:
        return Release(text)


class _PassThrough:
    _request = _PassThroughRequest()

    def begin(self, ctx: RequestContext) -> RequestStages:
        return self._request


PASS_THROUGH: PolicyStages = _PassThrough()
