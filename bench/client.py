"""The load generator's HTTP client: raw keep-alive connections on asyncio, httptools' parser.

The same few microseconds of client work for every target, and timestamps taken the moment
bytes arrive: time to first content, gaps between content events, and for each event stamped
by the mock (`system_fingerprint: fp-<ns>`) the delay from the mock's send to our receive.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from dataclasses import dataclass, field
from typing import cast
from urllib.parse import urlsplit

import httptools

_CONTENT = re.compile(rb'"(?:content|text)":\s*"(?!")')
_STAMP = re.compile(rb'"system_fingerprint":\s*"fp-(\d+)"')
_FILTERED = re.compile(rb'"finish_reason":\s*"content_filter"')


@dataclass
class Outcome:
    ok: bool
    status: int
    started_ns: int
    ended_ns: int
    first_content_ns: int | None = None
    content_events: list[int] = field(default_factory=list)
    #: receive time minus the mock's send time, per stamped event carrying content.
    chunk_delays_ns: list[int] = field(default_factory=list)
    filtered: bool = False
    error: str = ""

    @property
    def latency_ms(self) -> float:
        return (self.ended_ns - self.started_ns) / 1e6

    @property
    def ttft_ms(self) -> float | None:
        if self.first_content_ns is None:
            return None
        return (self.first_content_ns - self.started_ns) / 1e6

    def gaps_ms(self) -> list[float]:
        times = self.content_events
        return [(b - a) / 1e6 for a, b in itertools.pairwise(times)]


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.done: asyncio.Future[None] | None = None
        self.now = 0
        self.body: list[bytes] = []
        self.pending = b""
        self.stream = False
        self.outcome: Outcome | None = None
        self.complete = False
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.done is not None and not self.done.done():
            self.done.set_exception(ConnectionError(f"connection lost: {exc}"))

    def data_received(self, data: bytes) -> None:
        self.now = time.monotonic_ns()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if self.done is not None and not self.done.done():
                self.done.set_exception(exc)

    def on_body(self, body: bytes) -> None:
        if not self.stream:
            self.body.append(body)
            return
        outcome = self.outcome
        assert outcome is not None
        self.pending += body
        cut = self.pending.rfind(b"\n\n")
        if cut < 0:
            return
        events, self.pending = self.pending[: cut + 2], self.pending[cut + 2 :]
        for event in events.split(b"\n\n"):
            if not _CONTENT.search(event):
                if _FILTERED.search(event):
                    outcome.filtered = True
                continue
            if outcome.first_content_ns is None:
                outcome.first_content_ns = self.now
            outcome.content_events.append(self.now)
            stamp = _STAMP.search(event)
            if stamp is not None:
                outcome.chunk_delays_ns.append(self.now - int(stamp.group(1)))
            if _FILTERED.search(event):
                outcome.filtered = True

    def on_message_complete(self) -> None:
        self.complete = True
        if self.done is not None and not self.done.done():
            self.done.set_result(None)


class Connection:
    """One keep-alive connection; one request at a time."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.protocol: _Protocol | None = None

    async def _connect(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_connection(_Protocol, self.host, self.port)
        return protocol

    async def request(self, path: str, body: bytes, *, stream: bool, timeout: float) -> Outcome:
        if self.protocol is None or self.protocol.closed:
            self.protocol = await self._connect()
        protocol = self.protocol
        protocol.parser = httptools.HttpResponseParser(protocol)
        protocol.done = asyncio.get_running_loop().create_future()
        protocol.body, protocol.pending, protocol.stream = [], b"", stream
        protocol.complete = False
        head = (
            b"POST %b HTTP/1.1\r\nhost: %b:%d\r\ncontent-type: application/json\r\n"
            b"authorization: Bearer bench\r\ncontent-length: %d\r\n\r\n"
            % (path.encode(), self.host.encode(), self.port, len(body))
        )
        started = time.monotonic_ns()
        outcome = Outcome(False, 0, started, started)
        protocol.outcome = outcome
        assert protocol.transport is not None
        protocol.transport.write(head + body)
        try:
            await asyncio.wait_for(protocol.done, timeout)
        except (TimeoutError, ConnectionError, httptools.HttpParserError) as exc:
            self.close()
            outcome.ended_ns = time.monotonic_ns()
            outcome.error = f"{type(exc).__name__}: {exc}"
            return outcome
        outcome.ended_ns = protocol.now
        outcome.status = protocol.parser.get_status_code()
        outcome.ok = outcome.status == 200
        if not stream:
            raw = b"".join(protocol.body)
            outcome.filtered = _FILTERED.search(raw) is not None
            if outcome.ok and b'"choices"' not in raw:
                outcome.ok, outcome.error = False, "no choices in the answer"
            elif not outcome.ok:
                outcome.error = raw[:200].decode(errors="replace")
        elif outcome.ok and not outcome.content_events:
            outcome.ok, outcome.error = False, "stream carried no content"
        if not protocol.parser.should_keep_alive():
            self.close()
        return outcome

    def close(self) -> None:
        if self.protocol is not None and self.protocol.transport is not None:
            self.protocol.transport.close()
        self.protocol = None


def host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 80
