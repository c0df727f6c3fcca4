"""An upstream whose kept-alive connections go stale: a real HTTP/1.1 server on loopback.

Every connection answers its first request and keeps the connection open; the second request
on the same connection is read and then dropped without an answer. That is the race a client
meets when it reuses a connection the server has just timed out: the request left, and no
answer will ever come. The server records every request it received, per connection, so a
test can tell a retried request from one sent once.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field

import orjson

from stack.processes import free_port

_ANSWERS: dict[str, bytes] = {
    "/health": b"",
    "/v1/models": orjson.dumps({"object": "list", "data": [{"id": "fake-model"}]}),
    "/v1/chat/completions": orjson.dumps(
        {
            "id": "stale-1",
            "object": "chat.completion",
            "created": 1,
            "model": "fake-model",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "fresh"},
                    "finish_reason": "stop",
                }
            ],
        }
    ),
}


@dataclass
class Seen:
    #: (connection number, method, path) of every request read, in arrival order.
    requests: list[tuple[int, str, str]] = field(default_factory=list)

    def count(self, method: str, path: str) -> int:
        return sum(1 for _, m, p in self.requests if m == method and p == path)


class StaleKeepAliveUpstream:
    def __init__(self) -> None:
        self.port = free_port()
        self.seen = Seen()
        self._connections = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections += 1
        number = self._connections
        try:
            for nth in (1, 2):
                head = await reader.readuntil(b"\r\n\r\n")
                method, path, _ = head.split(b"\r\n", 1)[0].decode().split(" ", 2)
                length = 0
                for line in head.decode("latin-1").split("\r\n")[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                await reader.readexactly(length)
                self.seen.requests.append((number, method, path))
                if nth == 2:
                    return  # dropped unanswered: the stale connection
                body = _ANSWERS.get(path, b"{}")
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    b"content-length: %d\r\n\r\n%b" % (len(body), body)
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def start() -> None:
            self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
            self._ready.set()

        self._loop.run_until_complete(start())
        self._loop.run_forever()

    def __enter__(self) -> StaleKeepAliveUpstream:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("stale upstream did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            if self._server is not None:
                self._server.close()
            current = asyncio.current_task()
            tasks = [t for t in asyncio.all_tasks() if t is not current]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._loop.stop()

        asyncio.run_coroutine_threadsafe(stop(), self._loop)
        self._thread.join(timeout=5)
        self._loop.close()
