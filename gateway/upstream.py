"""The one pooled HTTP client to the vLLM server, and how its failures map to OpenAI errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from gateway.errors import GatewayError, normalize_upstream_error


class UpstreamError(GatewayError):
    """A failure of the upstream, with a bounded `reason` for metrics."""

    def __init__(self, status: int, body: dict[str, Any], reason: str) -> None:
        err = body["error"]
        super().__init__(
            status, err["message"], type=err["type"], param=err["param"], code=err["code"]
        )
        self.reason = reason


def _unavailable(message: str, reason: str, status: int = 502) -> UpstreamError:
    return UpstreamError(
        status,
        {"error": {"message": message, "type": "upstream_error", "param": None, "code": status}},
        reason,
    )


@dataclass
class UpstreamResponse:
    status: int
    headers: httpx.Headers
    response: httpx.Response

    async def close(self) -> None:
        await self.response.aclose()


class Upstream:
    def __init__(
        self,
        base_url: str,
        *,
        connect_timeout: float = 5.0,
        first_byte_timeout: float = 60.0,
        read_timeout: float = 60.0,
        max_connections: int = 256,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.first_byte_timeout = first_byte_timeout
        self.client = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=httpx.Timeout(read_timeout, connect=connect_timeout, pool=connect_timeout),
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            transport=transport,
        )

    async def aclose(self) -> None:
        await self.client.aclose()

    async def open(self, path: str, body: dict[str, Any]) -> UpstreamResponse:
        """Send a POST and wait for the status line and headers (the first byte)."""
        request = self.client.build_request(
            "POST",
            path,
            content=orjson.dumps(body),
            headers={"content-type": "application/json"},
            extensions={
                "timeout": {
                    "connect": self.client.timeout.connect,
                    "pool": self.client.timeout.pool,
                    "write": self.client.timeout.write,
                    "read": self.first_byte_timeout,
                }
            },
        )
        try:
            response = await self.client.send(request, stream=True)
        except httpx.TimeoutException as exc:
            raise _unavailable(
                f"upstream timed out ({type(exc).__name__})", "timeout", 504
            ) from exc
        except httpx.HTTPError as exc:
            raise _unavailable(f"upstream unreachable ({type(exc).__name__})", "connect") from exc
        if response.status_code >= 400:
            try:
                raw = await response.aread()
            except httpx.HTTPError:
                raw = b""
            finally:
                await response.aclose()
            reason = "status_5xx" if response.status_code >= 500 else "status_4xx"
            status = response.status_code if response.status_code < 500 else 502
            if response.status_code in (503, 504):
                status = response.status_code
            raise UpstreamError(status, normalize_upstream_error(response.status_code, raw), reason)
        return UpstreamResponse(response.status_code, response.headers, response)

    async def post_json(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        upstream = await self.open(path, body)
        try:
            raw = await upstream.response.aread()
        except httpx.TimeoutException as exc:
            raise _unavailable("upstream timed out mid-response", "timeout", 504) from exc
        except httpx.HTTPError as exc:
            raise _unavailable("upstream response cut", "stream_cut") from exc
        finally:
            await upstream.close()
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise _unavailable("upstream sent malformed JSON", "malformed") from exc
        if not isinstance(data, dict):
            raise _unavailable("upstream sent malformed JSON", "malformed")
        return data

    async def get_json(self, path: str) -> dict[str, Any]:
        try:
            response = await self.client.get(path)
        except httpx.TimeoutException as exc:
            raise _unavailable("upstream timed out", "timeout", 504) from exc
        except httpx.HTTPError as exc:
            raise _unavailable(f"upstream unreachable ({type(exc).__name__})", "connect") from exc
        if response.status_code >= 400:
            raise UpstreamError(
                502 if response.status_code >= 500 else response.status_code,
                normalize_upstream_error(response.status_code, response.content),
                "status_5xx" if response.status_code >= 500 else "status_4xx",
            )
        try:
            data = orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            raise _unavailable("upstream sent malformed JSON", "malformed") from exc
        return data if isinstance(data, dict) else {}


async def sse_data(response: httpx.Response) -> AsyncIterator[bytes]:
    """The `data:` payloads of an SSE stream, one event at a time, whatever the chunking."""
    buffer = b""
    data_lines: list[bytes] = []
    async for piece in response.aiter_raw():
        buffer += piece
        while True:
            cut = buffer.find(b"\n")
            if cut < 0:
                break
            line = buffer[:cut].rstrip(b"\r")
            buffer = buffer[cut + 1 :]
            if not line:
                if data_lines:
                    yield b"\n".join(data_lines)
                    data_lines = []
            elif line.startswith(b"data:"):
                data_lines.append(line[5:].lstrip(b" "))
    if buffer.strip():
        line = buffer.rstrip(b"\r\n")
        if line.startswith(b"data:"):
            data_lines.append(line[5:].lstrip(b" "))
    if data_lines:
        yield b"\n".join(data_lines)
