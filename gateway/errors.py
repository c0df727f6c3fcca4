"""OpenAI error envelope: {"error": {"message", "type", "param", "code"}}."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response


class GatewayError(Exception):
    """An error with a status code that becomes an OpenAI error envelope."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | int | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.type, self.param, self.code)

    def response(self) -> Response:
        return json_response(self.body(), self.status)


def error_body(
    message: str, type: str, param: str | None = None, code: str | int | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def content_filter_error(message: str) -> GatewayError:
    return GatewayError(400, message, type="invalid_request_error", code="content_filter")


def json_response(payload: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json")


def normalize_upstream_error(status: int, raw: bytes) -> dict[str, Any]:
    """vLLM answers {"error": {...}}; older versions a flat {"object": "error", ...}."""
    try:
        data = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        data = None
    fallback_type = "upstream_error" if status >= 500 else "invalid_request_error"
    if isinstance(data, dict):
        inner = data.get("error")
        if isinstance(inner, dict):
            data = inner
        elif isinstance(inner, str):
            data = {"message": inner}
        if "message" in data or "detail" in data:
            message = data.get("message") or data.get("detail")
            return error_body(
                str(message),
                str(data.get("type") or fallback_type),
                data.get("param") if isinstance(data.get("param"), str) else None,
                data.get("code") if data.get("code") is not None else status,
            )
    return error_body(f"upstream returned HTTP {status}", fallback_type, None, status)


#: While output policies run, an upstream failure is told with one of these texts only: the
#: upstream's own message can quote the prompt or the output the policies withhold.
GENERIC_UPSTREAM_MESSAGES = {
    "connect": "upstream unreachable",
    "pool_timeout": "upstream connection pool exhausted; retry later",
    "timeout": "upstream timed out",
    "malformed": "upstream sent a malformed response",
    "stream_cut": "upstream response ended before it was complete",
    "status_4xx": "upstream rejected the request",
    "status_5xx": "upstream error",
}
_CLIENT_STATUSES = frozenset({400, 404, 408, 409, 413, 422, 429})
_SERVER_STATUSES = frozenset({502, 503, 504})


def generic_upstream_error(status: int, reason: str) -> dict[str, Any]:
    """An upstream failure's envelope from bounded parts only; its `code` is the status to send."""
    if status < 500:
        bounded, type = (status if status in _CLIENT_STATUSES else 400), "invalid_request_error"
    else:
        bounded, type = (status if status in _SERVER_STATUSES else 502), "upstream_error"
    if reason == "pool_timeout":
        type = "unavailable"
    message = GENERIC_UPSTREAM_MESSAGES.get(reason, "upstream error")
    return error_body(message, type, None, bounded)
