"""The one pooled HTTP client to the vLLM server, and how its failures map to OpenAI errors."""

from __future__ import annotations

import asyncio
import collections
import ssl
from collections.abc import AsyncIterator
from typing import Any, cast
from urllib.parse import urlsplit

import httptools
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


class UpstreamIOError(Exception):
    """The upstream connection failed mid-response (`UpstreamTimeout` when it went silent)."""


class UpstreamTimeout(UpstreamIOError):
    pass


_MAX_BUFFERED = 256 * 1024


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection: one exchange at a time, parsed by httptools.

    The completions path skips httpx: one write per request and no per-request client layers
    (this is the gateway's hottest code; the profile put httpx at half of its CPU).
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.parser = httptools.HttpResponseParser(self)
        self.headers: list[tuple[bytes, bytes]] = []
        self.head: asyncio.Future[None] | None = None
        self.chunks: collections.deque[bytes] = collections.deque()
        self.buffered = 0
        self.paused = False
        self.wakeup: asyncio.Future[None] | None = None
        self.complete = False
        self.received = False
        self.error: Exception | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.complete and self.error is None:
            self.error = UpstreamIOError(f"connection closed ({exc or 'EOF'})")
        self._wake()

    def data_received(self, data: bytes) -> None:
        self.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.error = UpstreamIOError(f"bad HTTP from upstream: {exc}")
            self._abort()
        self._wake()
        if self.buffered > _MAX_BUFFERED and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        if self.head is not None and not self.head.done():
            self.head.set_result(None)

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)

    def on_message_complete(self) -> None:
        self.complete = True

    def _wake(self) -> None:
        if self.head is not None and not self.head.done() and self.error is not None:
            self.head.set_exception(self.error)
        if self.wakeup is not None and not self.wakeup.done():
            self.wakeup.set_result(None)

    def _abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def begin(self, request: bytes) -> asyncio.Future[None]:
        self.parser = httptools.HttpResponseParser(self)
        self.headers = []
        self.chunks.clear()
        self.buffered = 0
        self.complete = self.received = False
        self.error = None
        self.head = asyncio.get_running_loop().create_future()
        assert self.transport is not None
        self.transport.write(request)
        return self.head

    async def next_chunk(self, timeout: float) -> bytes | None:
        """The next body bytes as they came, or None at the end of the message."""
        while not self.chunks:
            if self.complete:
                return None
            if self.error is not None:
                raise self.error
            self.wakeup = asyncio.get_running_loop().create_future()
            try:
                await asyncio.wait_for(self.wakeup, timeout)
            except TimeoutError:
                raise UpstreamTimeout(f"no bytes from upstream for {timeout:g} s") from None
            finally:
                self.wakeup = None
        chunk = self.chunks.popleft()
        self.buffered -= len(chunk)
        if self.paused and self.buffered < _MAX_BUFFERED // 4 and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        return chunk

    @property
    def reusable(self) -> bool:
        return (
            self.complete and not self.closed and self.error is None
            and self.parser.should_keep_alive()
            and self.transport is not None and not self.transport.is_closing()
        )

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class _Pool:
    """Keep-alive connections to one upstream, at most `limit` open at a time."""

    def __init__(self, base_url: str, limit: int, connect_timeout: float) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"upstream URL must be http(s): {base_url}")
        self.secure = parts.scheme == "https"
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if self.secure else 80)
        self.prefix = parts.path.rstrip("/").encode()
        default_port = self.port == (443 if self.secure else 80)
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.host_header = (host if default_port else f"{host}:{self.port}").encode()
        self.connect_timeout = connect_timeout
        self.idle: list[_Connection] = []
        self.slots = asyncio.Semaphore(limit)
        self._ssl: ssl.SSLContext | None = None

    async def connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        if self.secure and self._ssl is None:
            self._ssl = ssl.create_default_context()
        _, conn = await asyncio.wait_for(
            loop.create_connection(
                _Connection, self.host, self.port, ssl=self._ssl,
                server_hostname=self.host if self.secure else None,
            ),
            self.connect_timeout,
        )
        return conn

    def take_idle(self) -> _Connection | None:
        while self.idle:
            conn = self.idle.pop()
            if not conn.closed and conn.transport is not None and not conn.transport.is_closing():
                return conn
            conn.close()
        return None

    def release(self, conn: _Connection) -> None:
        if conn.reusable:
            self.idle.append(conn)
        else:
            conn.close()
        self.slots.release()

    def close(self) -> None:
        for conn in self.idle:
            conn.close()
        self.idle.clear()


class UpstreamResponse:
    """An upstream answer whose status and headers arrived; the body is read on demand."""

    def __init__(
        self, status: int, headers: dict[str, str], conn: _Connection, pool: _Pool,
        read_timeout: float,
    ) -> None:
        self.status = status
        self.headers = headers
        self._conn: _Connection | None = conn
        self._pool = pool
        self._read_timeout = read_timeout

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        conn = self._conn
        if conn is None:
            return
        while (chunk := await conn.next_chunk(self._read_timeout)) is not None:
            yield chunk

    async def aread(self) -> bytes:
        return b"".join([chunk async for chunk in self.aiter_raw()])

    async def close(self) -> None:
        """Back to the pool when the answer was read to its end; closed otherwise."""
        conn, self._conn = self._conn, None
        if conn is not None:
            self._pool.release(conn)


class Upstream:
    def __init__(
        self,
        base_url: str,
        *,
        connect_timeout: float = 5.0,
        first_byte_timeout: float = 60.0,
        read_timeout: float = 60.0,
        max_connections: int = 256,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.first_byte_timeout = first_byte_timeout
        self.read_timeout = read_timeout
        # httpx for the rare calls (health, models, admin); the completions path uses _pool.
        self.client = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=httpx.Timeout(read_timeout, connect=connect_timeout, pool=connect_timeout),
            limits=httpx.Limits(max_connections=16, max_keepalive_connections=16),
        )
        self._pool = _Pool(self.base_url, max_connections, connect_timeout)

    async def aclose(self) -> None:
        self._pool.close()
        await self.client.aclose()

    async def open(self, path: str, body: dict[str, Any]) -> UpstreamResponse:
        """Send a POST and wait for the status line and headers (the first byte)."""
        pool = self._pool
        payload = orjson.dumps(body)
        request = (
            b"POST %b%b HTTP/1.1\r\nhost: %b\r\ncontent-type: application/json\r\n"
            b"accept: application/json, text/event-stream\r\ncontent-length: %d\r\n\r\n%b"
            % (pool.prefix, path.encode(), pool.host_header, len(payload), payload)
        )
        try:
            await asyncio.wait_for(pool.slots.acquire(), pool.connect_timeout)
        except TimeoutError as exc:
            raise _unavailable("upstream timed out (PoolTimeout)", "timeout", 504) from exc
        try:
            conn = await self._exchange(request)
        except BaseException:
            pool.slots.release()
            raise
        status = conn.parser.get_status_code()
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in conn.headers}
        # As with httpx's per-request read timeout before: every read waits first_byte_timeout.
        response = UpstreamResponse(status, headers, conn, pool, self.first_byte_timeout)
        if status >= 400:
            try:
                raw = await response.aread()
            except UpstreamIOError:
                raw = b""
            finally:
                await response.close()
            reason = "status_5xx" if status >= 500 else "status_4xx"
            mapped = status if status < 500 or status in (503, 504) else 502
            raise UpstreamError(mapped, normalize_upstream_error(status, raw), reason)
        return response

    async def _exchange(self, request: bytes) -> _Connection:
        """Write the request and wait for the response head, on a pooled or new connection."""
        pool = self._pool
        conn = pool.take_idle()
        reused = conn is not None
        while True:
            if conn is None:
                try:
                    conn = await pool.connect()
                except TimeoutError as exc:
                    raise _unavailable(
                        "upstream timed out (ConnectTimeout)", "timeout", 504
                    ) from exc
                except OSError as exc:
                    raise _unavailable("upstream unreachable (ConnectError)", "connect") from exc
            try:
                await asyncio.wait_for(conn.begin(request), self.first_byte_timeout)
                return conn
            except TimeoutError as exc:
                conn.close()
                raise _unavailable("upstream timed out (ReadTimeout)", "timeout", 504) from exc
            except UpstreamIOError as exc:
                conn.close()
                # A kept-alive connection the upstream closed while idle: retry once, fresh.
                if reused and not conn.received:
                    conn, reused = None, False
                    continue
                raise _unavailable(f"upstream unreachable ({exc})", "connect") from exc
            except BaseException:
                conn.close()
                raise

    async def post_json(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return (await self.post(path, body))[0]

    async def post(self, path: str, body: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
        """The parsed answer and its bytes (sent on unchanged when nothing needs rewriting)."""
        upstream = await self.open(path, body)
        try:
            raw = await upstream.aread()
        except UpstreamTimeout as exc:
            raise _unavailable("upstream timed out mid-response", "timeout", 504) from exc
        except UpstreamIOError as exc:
            raise _unavailable("upstream response cut", "stream_cut") from exc
        finally:
            await upstream.close()
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise _unavailable("upstream sent malformed JSON", "malformed") from exc
        if not isinstance(data, dict):
            raise _unavailable("upstream sent malformed JSON", "malformed")
        return data, raw

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


async def sse_batches(chunks: AsyncIterator[bytes]) -> AsyncIterator[list[bytes]]:
    """The `data:` payloads of an SSE stream, in batches: those completed by each read."""
    buffer = b""
    data_lines: list[bytes] = []
    async for piece in chunks:
        buffer = buffer + piece if buffer else piece
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
                    data_lines = []
            elif line.startswith(b"data:"):
                data_lines.append(line[5:].lstrip(b" "))
        buffer = buffer[pos:]
        if batch:
            yield batch
    if buffer.strip():
        line = buffer.rstrip(b"\r\n")
        if line.startswith(b"data:"):
            data_lines.append(line[5:].lstrip(b" "))
    if data_lines:
        yield [b"\n".join(data_lines)]


async def sse_data(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The `data:` payloads of an SSE stream, one event at a time, whatever the chunking."""
    async for batch in sse_batches(chunks):
        for payload in batch:
            yield payload
