"""The engine replicas behind the engine Service, each reachable on its own.

Completions go through the Service (one URL, the cluster balances); what must reach *every*
replica (loading a LoRA adapter into each) goes through this pool. The replicas come from a
static list (`engine_endpoints`) or from the A records of a headless Service
(`engine_discovery`), resolved again at each use, so a restarted pod's new address is found.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from gateway.settings import Settings
from gateway.upstream import Upstream

log = logging.getLogger("lethe")

#: Management calls only (models, adapter loads): a few connections per replica suffice.
_REPLICA_CONNECTIONS = 4


def upstream_api_key(settings: Settings) -> str | None:
    """The engine's API key: the file (a mounted Secret) wins over the plain setting."""
    path = settings.upstream_api_key_file
    if path is not None:
        try:
            key = path.read_text().strip()
        except OSError as exc:
            raise ValueError(
                f"upstream API key file {path} cannot be read ({exc.strerror or exc})"
            ) from exc
        if not key:
            raise ValueError(f"upstream API key file {path} is empty")
        return key
    return settings.upstream_api_key or None


@dataclass(frozen=True)
class Replica:
    """One engine replica: its base URL and the client that reaches it."""

    url: str
    client: Upstream


Resolver = Callable[[str, int], Awaitable[list[str]]]


async def resolve_addresses(host: str, port: int) -> list[str]:
    """Every address the name resolves to (one per pod for a headless Service)."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


class EnginePool:
    def __init__(
        self,
        settings: Settings,
        default: Upstream,
        api_key: str | None,
        resolver: Resolver = resolve_addresses,
    ) -> None:
        self._static = tuple(u.rstrip("/") for u in settings.engine_endpoints)
        self._discovery = settings.engine_discovery
        self._default = default
        self._api_key = api_key
        self._resolver = resolver
        self._settings = settings
        self._clients: dict[str, Upstream] = {}
        self.last_error: str | None = None

    @property
    def discovers(self) -> bool:
        """True when the replicas are listed or discovered, not just the one upstream."""
        return bool(self._static or self._discovery)

    async def replicas(self) -> list[Replica]:
        """The replicas now; without a list or discovery, the upstream itself."""
        if not self.discovers:
            return [Replica(self._default.base_url, self._default)]
        urls = list(self._static)
        if self._discovery:
            try:
                urls += await self._discover(self._discovery)
                self.last_error = None
            except OSError as exc:
                # No answer from DNS: keep the replicas known so far (better than none).
                self.last_error = f"cannot resolve {self._discovery}: {exc}"
                log.warning("engine discovery: %s", self.last_error)
                urls += [u for u in self._clients if u not in urls]
        urls = list(dict.fromkeys(urls))
        await self._retire(set(urls))
        return [Replica(u, self._client(u)) for u in urls]

    async def _discover(self, url: str) -> list[str]:
        parts = urlsplit(url)
        if not parts.hostname:
            raise OSError(f"no host name in {url}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        addresses = await self._resolver(parts.hostname, port)
        found = []
        for address in addresses:
            host = f"[{address}]" if ":" in address else address
            found.append(urlunsplit((parts.scheme, f"{host}:{port}", "", "", "")))
        return found

    def _client(self, url: str) -> Upstream:
        client = self._clients.get(url)
        if client is None:
            s = self._settings
            client = self._clients[url] = Upstream(
                url,
                connect_timeout=s.connect_timeout_s,
                first_byte_timeout=s.first_byte_timeout_s,
                read_timeout=s.read_timeout_s,
                idle_timeout=s.upstream_idle_timeout_s,
                max_connections=_REPLICA_CONNECTIONS,
                pool_timeout=s.upstream_pool_timeout_s,
                keepalive=s.upstream_keepalive_s,
                api_key=self._api_key,
            )
        return client

    async def _retire(self, keep: set[str]) -> None:
        for url in [u for u in self._clients if u not in keep]:
            await self._clients.pop(url).aclose()

    async def aclose(self) -> None:
        await self._retire(set())
