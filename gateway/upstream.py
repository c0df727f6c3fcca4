"""The one HTTP client to the vLLM server, its connection slots, and how its failures map to
OpenAI errors.

aiohttp does the HTTP: a maintained pool that stays consistent under cancellation, at about
the cost of the hand-written client it replaced (0.25 vs 0.22 ms a loopback request; httpx
0.67 ms, which is why it was not chosen; bench/results/upstream-client.md).

A request holds one connection slot from `open` until its `UpstreamResponse` is closed. The
slots are counted here, so that exhaustion answers 503 within `pool_timeout` and shows in
/readyz and the metrics; closing a response is the owner's job (the request scope,
gateway.scope), never a generator's `finally`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
from yarl import URL

from gateway.errors import GatewayError, error_body, normalize_upstream_error


class UpstreamError(GatewayError):
    """A failure of the upstream, with a bounded `reason` for metrics."""

    def __init__(self, status: int, body: dict[str, Any], reason: str) -> None:
        err = body["error"]
        super().__init__(
            status, err["message"], type=err["type"], param=err["param"], code=err["code"]
        )
        self.reason = reason


def _unavailable(message: str, reason: str, status: int = 502) -> UpstreamError:
    return UpstreamError(status, error_body(message, "upstream_error", None, status), reason)


class UpstreamIOError(Exception):
    """The upstream connection failed mid-response (`UpstreamTimeout` when it went silent)."""


class UpstreamTimeout(UpstreamIOError):
    pass


@dataclass(frozen=True)
class PoolStats:
    """The connection slots now: held by requests, their limit, requests waiting for one."""

    in_use: int
    limit: int
    waiting: int
    timeouts: int

    @property
    def saturated(self) -> bool:
        return self.in_use >= self.limit

    def summary(self) -> dict[str, Any]:
        return {"in_use": self.in_use, "limit": self.limit, "saturated": self.saturated}


# No Accept-Encoding: answers come uncompressed, so their bytes can be relayed as they are.
_SKIP_HEADERS = ("Accept-Encoding", "User-Agent")
_POST_HEADERS = {
    "content-type": "application/json",
    "accept": "application/json, text/event-stream",
}


class UpstreamResponse:
    """An upstream answer whose status and headers arrived; the body is read on demand.

    `read_timeout` bounds each read of `aiter_raw` and the whole of `aread`.
    """

    __slots__ = ("_closed", "_response", "_upstream", "read_timeout", "status")

    def __init__(
        self, response: aiohttp.ClientResponse, upstream: Upstream, read_timeout: float
    ) -> None:
        self.status = response.status
        self.read_timeout = read_timeout
        self._response = response
        self._upstream = upstream
        self._closed = False

    @property
    def headers(self) -> dict[str, str]:
        return {k.lower(): v for k, v in self._response.headers.items()}

    async def read_some(self, deadline: float) -> bytes:
        """The next body bytes as they came, b"" at the end; `UpstreamTimeout` when none came
        by `deadline` (event-loop time), `UpstreamIOError` when the connection broke."""
        content = self._response.content
        try:
            async with asyncio.timeout_at(deadline):
                return await content.readany()
        except TimeoutError:
            raise UpstreamTimeout("upstream went silent") from None
        except (aiohttp.ClientError, OSError) as exc:
            # aiohttp hides what it had buffered once the connection broke: a cut stream still
            # delivers what arrived before the cut (private API, hence the pinned version).
            if content._buffer:
                return content._read_nowait(-1)
            raise UpstreamIOError(f"connection broke ({type(exc).__name__})") from exc

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        while chunk := await self.read_some(loop.time() + self.read_timeout):
            yield chunk

    async def aread(self) -> bytes:
        deadline = asyncio.get_running_loop().time() + self.read_timeout
        try:
            async with asyncio.timeout_at(deadline):
                return await self._response.read()
        except TimeoutError:
            raise UpstreamTimeout("upstream went silent") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise UpstreamIOError(f"connection broke ({type(exc).__name__})") from exc

    async def close(self) -> None:
        """Back to the pool when the body was read to its end, closed otherwise; the slot is
        free either way. Idempotent, and nothing in it awaits: a cancelled owner still runs
        it to the end."""
        if self._closed:
            return
        self._closed = True
        try:
            self._response.release()
        finally:
            self._upstream._give_slot()


class Upstream:
    def __init__(
        self,
        base_url: str,
        *,
        connect_timeout: float = 5.0,
        first_byte_timeout: float = 60.0,
        read_timeout: float = 60.0,
        idle_timeout: float = 60.0,
        max_connections: int = 256,
        pool_timeout: float = 5.0,
        keepalive: float = 4.0,
        api_key: str | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"upstream URL must be http(s): {base_url}")
        self.base_url = base_url.rstrip("/")
        self.connect_timeout = connect_timeout
        self.first_byte_timeout = first_byte_timeout
        self.read_timeout = read_timeout
        self.idle_timeout = idle_timeout
        self.pool_timeout = pool_timeout
        self.keepalive = keepalive
        self.limit = max_connections
        self._slots = asyncio.Semaphore(max_connections)
        self._in_use = 0
        self._waiting = 0
        self._pool_timeouts = 0
        self._urls: dict[str, URL] = {}
        self._session: aiohttp.ClientSession | None = None
        # vLLM's --api-key guards every /v1 route, management calls included.
        self._headers = {"authorization": f"Bearer {api_key}"} if api_key else None

    def pool_stats(self) -> PoolStats:
        return PoolStats(self._in_use, self.limit, self._waiting, self._pool_timeouts)

    def _client(self) -> aiohttp.ClientSession:
        # Built on first use: aiohttp binds its session to the running event loop.
        if self._session is None:
            connector = aiohttp.TCPConnector(
                # The slots above are the limit; this one only backs them up.
                limit=self.limit,
                limit_per_host=0,
                # Below the upstream's own keep-alive (uvicorn's, hence vLLM's, is 5 s), so
                # that a POST, which is never retried, rarely meets a connection it closed.
                keepalive_timeout=self.keepalive,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(
                    total=None, connect=None, sock_connect=self.connect_timeout, sock_read=None
                ),
                cookie_jar=aiohttp.DummyCookieJar(),
                skip_auto_headers=_SKIP_HEADERS,
                headers=self._headers,
            )
        return self._session

    def _url(self, path: str) -> URL:
        url = self._urls.get(path)
        if url is None:
            url = self._urls[path] = URL(self.base_url + path)
        return url

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _take_slot(self) -> None:
        if self._slots.locked():
            self._waiting += 1
            try:
                async with asyncio.timeout(self.pool_timeout):
                    await self._slots.acquire()
            except TimeoutError:
                self._pool_timeouts += 1
                body = error_body(
                    "upstream connection pool exhausted; retry later", "unavailable", None, 503
                )
                raise UpstreamError(503, body, "pool_timeout") from None
            finally:
                self._waiting -= 1
        else:
            await self._slots.acquire()
        self._in_use += 1

    def _give_slot(self) -> None:
        self._in_use -= 1
        self._slots.release()

    async def _send(
        self,
        method: str,
        path: str,
        payload: bytes | None,
        *,
        head_timeout: float,
        read_timeout: float,
    ) -> UpstreamResponse:
        """Take a slot, send, and wait for the response head. aiohttp retries a GET once on a
        kept-alive connection the upstream had closed; a POST is never sent twice."""
        await self._take_slot()
        try:
            async with asyncio.timeout(head_timeout):
                response = await self._client().request(
                    method,
                    self._url(path),
                    data=payload,
                    headers=_POST_HEADERS if payload is not None else None,
                    allow_redirects=False,
                )
        except BaseException as exc:
            self._give_slot()
            if isinstance(exc, Exception):
                raise _transport_error(exc) from exc
            raise
        return UpstreamResponse(response, self, read_timeout)

    async def open(self, path: str, body: dict[str, Any]) -> UpstreamResponse:
        """Send a POST and wait for the status line and headers (the first byte). Each read of
        the answer then waits at most `idle_timeout`; the caller must close it."""
        return await self._open(path, body, self.idle_timeout)

    async def _open(self, path: str, body: dict[str, Any], read_timeout: float) -> UpstreamResponse:
        response = await self._send(
            "POST",
            path,
            orjson.dumps(body),
            head_timeout=self.first_byte_timeout,
            read_timeout=read_timeout,
        )
        if response.status >= 400:
            try:
                raw = await response.aread()
            except UpstreamIOError:
                raw = b""
            finally:
                await response.close()
            status = response.status
            reason = "status_5xx" if status >= 500 else "status_4xx"
            mapped = status if status < 500 or status in (503, 504) else 502
            raise UpstreamError(mapped, normalize_upstream_error(status, raw), reason)
        return response

    async def post(self, path: str, body: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
        """The parsed answer and its bytes (sent on unchanged when nothing needs rewriting);
        the body must arrive within `read_timeout` of its head."""
        upstream = await self._open(path, body, self.read_timeout)
        try:
            raw = await upstream.aread()
        except UpstreamTimeout as exc:
            raise _unavailable("upstream timed out mid-response", "timeout", 504) from exc
        except UpstreamIOError as exc:
            raise _unavailable("upstream response cut", "stream_cut") from exc
        finally:
            await upstream.close()
        return _json_object(raw), raw

    async def exchange(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,
    ) -> tuple[int, bytes]:
        """One whole exchange for the management calls (health, models, adapters): the status
        and the body, whatever the status; `timeout` bounds the head and the body each."""
        limit = self.read_timeout if timeout is None else timeout
        payload = None if body is None else orjson.dumps(body)
        response = await self._send(method, path, payload, head_timeout=limit, read_timeout=limit)
        try:
            raw = await response.aread()
        except UpstreamTimeout as exc:
            raise _unavailable("upstream timed out mid-response", "timeout", 504) from exc
        except UpstreamIOError as exc:
            raise _unavailable("upstream response cut", "stream_cut") from exc
        finally:
            await response.close()
        return response.status, raw

    async def get_json(self, path: str) -> dict[str, Any]:
        status, raw = await self.exchange("GET", path)
        if status >= 400:
            raise UpstreamError(
                502 if status >= 500 else status,
                normalize_upstream_error(status, raw),
                "status_5xx" if status >= 500 else "status_4xx",
            )
        return _json_object(raw)


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _unavailable("upstream sent malformed JSON", "malformed") from exc
    if not isinstance(data, dict):
        raise _unavailable("upstream sent malformed JSON", "malformed")
    return data


def _transport_error(exc: Exception) -> Exception:
    """A failure before the response head, as an OpenAI error with a bounded reason."""
    if isinstance(exc, UpstreamError):
        return exc
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return _unavailable("upstream timed out (ConnectTimeout)", "timeout", 504)
    if isinstance(exc, TimeoutError):
        return _unavailable("upstream timed out (ReadTimeout)", "timeout", 504)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return _unavailable("upstream unreachable (ConnectError)", "connect")
    if isinstance(exc, (aiohttp.ClientError, OSError)):
        return _unavailable(f"upstream unreachable ({type(exc).__name__})", "connect")
    return exc


class SSEDecoder:
    """The `data:` payloads of an SSE stream, whatever the chunking: `feed` returns those each
    piece completes; comment lines and blank lines between events yield nothing."""

    __slots__ = ("_buffer", "_data_lines")

    def __init__(self) -> None:
        self._buffer = b""
        self._data_lines: list[bytes] = []

    def feed(self, piece: bytes) -> list[bytes]:
        buffer = self._buffer + piece if self._buffer else piece
        data_lines = self._data_lines
        batch: list[bytes] = []
        pos = 0
        while (cut := buffer.find(b"\n", pos)) >= 0:
            line = buffer[pos:cut]
            pos = cut + 1
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line:
                if data_lines:
                    batch.append(b"\n".join(data_lines))
                    data_lines.clear()
            elif line.startswith(b"data:"):
                data_lines.append(line[5:].lstrip(b" "))
        self._buffer = buffer[pos:]
        return batch

    def close(self) -> list[bytes]:
        """What an unterminated last event held, at the end of the stream."""
        line = self._buffer.rstrip(b"\r\n")
        self._buffer = b""
        if line.startswith(b"data:"):
            self._data_lines.append(line[5:].lstrip(b" "))
        if not self._data_lines:
            return []
        payload = b"\n".join(self._data_lines)
        self._data_lines.clear()
        return [payload]
