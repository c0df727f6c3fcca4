"""Raw sockets for clients that misbehave: abort right after sending, send a body byte by byte.

An HTTP library would retry, pool or wait politely; these send exactly what a hostile client
sends and watch what the gateway does with the connection.
"""

from __future__ import annotations

import socket
import struct
import time
from urllib.parse import urlparse

import orjson


def request_bytes(base_url: str, path: str, body: dict[str, object],
                  *, chunked: bool = False) -> tuple[bytes, bytes]:
    """(head, body) of one POST; with `chunked`, the body framed as one chunk per byte."""
    host = urlparse(base_url).netloc
    payload = orjson.dumps(body)
    if chunked:
        head = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                "Transfer-Encoding: chunked\r\n\r\n").encode()
    else:
        head = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(payload)}\r\n\r\n").encode()
    return head, payload


def connect(base_url: str, timeout: float = 10.0) -> socket.socket:
    parsed = urlparse(base_url)
    sock = socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 80),
                                    timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_until(sock: socket.socket, marker: bytes, timeout: float) -> bytes:
    sock.settimeout(timeout)
    seen = b""
    deadline = time.monotonic() + timeout
    while marker not in seen and time.monotonic() < deadline:
        try:
            data = sock.recv(65536)
        except TimeoutError:
            break
        if not data:
            break
        seen += data
    return seen


def abort(base_url: str, path: str, body: dict[str, object], style: str,
          wait_s: float = 5.0) -> bool:
    """Send a request and walk away in one of the ways real clients do. For the styles that
    wait for the answer to begin: whether it began within `wait_s` (a stuck gateway fails
    fast instead of stalling the suite)."""
    head, payload = request_bytes(base_url, path, body)
    sock = connect(base_url)
    try:
        if style == "close-mid-body":
            sock.sendall(head + payload[: len(payload) // 2])
            return True
        if style == "rst-after-send":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.sendall(head + payload)
        if style == "close-after-status":
            return b"\r\n" in read_until(sock, b"\r\n", wait_s)
        if style == "close-after-first-event":
            return b"data:" in read_until(sock, b"data:", wait_s)
        if style == "half-close":
            sock.shutdown(socket.SHUT_WR)
            time.sleep(0.02)
        elif style == "close-after-delay":
            time.sleep(0.05)
        return True
    finally:
        sock.close()


def released_within(sock: socket.socket, seconds: float) -> tuple[bool, bytes]:
    """Whether the server answered or closed the connection within `seconds`."""
    sock.settimeout(seconds)
    try:
        data = sock.recv(65536)
    except TimeoutError:
        return False, b""
    except OSError:
        return True, b""
    return True, data
