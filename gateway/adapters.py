"""LoRA unlearning adapters loaded into vLLM at runtime, one per policy, on every engine replica.

The registry keeps a record per policy, including failures, so the gateway can fail closed:
a policy in `unlearn` mode whose adapter is not loaded gets its suppression filters instead.

Routing rule (one request goes to one upstream model, and vLLM applies one LoRA per
request): among the request's policies, in policy order, the first with a loaded adapter
decides the upstream model; the other policies' adapters are not applied, so those policies
are enforced by their filters. Adapters are never stacked or merged at request time.

Several engine replicas (gateway.engine_pool): completions go through the engine Service, so
any replica may serve a request; an adapter counts as loaded only while every replica that
answers lists it, and `sync` (periodic) loads it where it is missing (an engine that restarted
lost its runtime adapters). Loading is idempotent across gateways: a replica that already
lists the name with the same path is left alone, whoever loaded it, and a race between two
gateways ("already been loaded") counts as loaded. Nothing is ever unloaded because a gateway
starts or scales; only an explicit removal (admin, or a policy reload removing the policy)
unloads, and from every replica.

Paths: the gateway checks an adapter on its own mount of the adapter store and sends vLLM the
engine's path for it (AdapterStore): the same store, mounted elsewhere on the engines.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any, Literal, Protocol

import orjson
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from gateway.upstream import Upstream, UpstreamError
from unlearning import manifest as manifests

LOAD_PATH = "/v1/load_lora_adapter"
UNLOAD_PATH = "/v1/unload_lora_adapter"
MODELS_PATH = "/v1/models"
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
LOAD_TIMEOUT_S = 120.0
LIST_TIMEOUT_S = 10.0

State = Literal["loaded", "failed", "unloaded"]
#: On one replica: listed under the wanted path, not listed, its load failed, or the replica
#: did not answer (it takes no traffic either, so it does not block routing).
ReplicaState = Literal["loaded", "missing", "failed", "unreachable"]


class AdapterError(RuntimeError):
    """An adapter could not be loaded or unloaded; the message says which and why."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ReplicaAdapter:
    state: ReplicaState
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"state": self.state, "error": self.error}


@dataclass(frozen=True)
class AdapterInfo:
    name: str
    policy: str
    path: str
    state: State
    error: str | None = None
    loaded_at: str | None = None
    load_seconds: float | None = None
    manifest: dict[str, Any] = field(default_factory=dict)
    #: The path sent to vLLM (the engines' view of the adapter store).
    engine_path: str | None = None
    #: By replica base URL.
    engines: dict[str, ReplicaAdapter] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "policy": self.policy,
            "path": self.path,
            "engine_path": self.engine_path,
            "state": self.state,
            "error": self.error,
            "loaded_at": self.loaded_at,
            "load_seconds": self.load_seconds,
            "manifest": self.manifest,
            "engines": {url: r.as_dict() for url, r in sorted(self.engines.items())},
        }

    def missing_on(self) -> int:
        """Replicas that answer but do not hold the adapter."""
        return sum(1 for r in self.engines.values() if r.state in ("missing", "failed"))


def adapter_name(policy: str) -> str:
    """The upstream LoRA name for a policy's adapter (what vLLM lists and requests name)."""
    return f"lethe-{policy}"


@dataclass(frozen=True)
class AdapterStore:
    """The adapter store as this gateway mounts it (`local_root`) and as the engines do
    (`engine_root`). Without an engine root, the engines see the gateway's paths."""

    local_root: Path | None = None
    engine_root: str | None = None

    def __post_init__(self) -> None:
        if self.engine_root is not None and self.local_root is None:
            raise ValueError(
                "LETHE_ENGINE_ADAPTER_DIR needs LETHE_ADAPTER_DIR: the gateway must know where "
                "it sees the store the engines see there"
            )

    def engine_path(self, local: Path) -> str:
        if self.engine_root is None or self.local_root is None:
            return str(local)
        try:
            relative = local.resolve().relative_to(self.local_root.resolve())
        except ValueError:
            raise AdapterError(
                f"adapter {local} is outside the adapter store {self.local_root} (the engines "
                f"see that store at {self.engine_root}): the engines cannot read it"
            ) from None
        return str(PurePosixPath(self.engine_root) / relative.as_posix())


@dataclass(frozen=True)
class _Single:
    url: str
    client: Upstream


class Replicas(Protocol):
    async def replicas(self) -> list[Any]: ...


class _OneEngine:
    def __init__(self, upstream: Upstream) -> None:
        self._one = _Single(upstream.base_url, upstream)

    async def replicas(self) -> list[Any]:
        return [self._one]


@dataclass(frozen=True)
class _Wanted:
    policy: str
    name: str
    path: Path
    engine_path: str
    manifest: dict[str, Any]


class AdapterRegistry:
    def __init__(
        self,
        upstream: Upstream,
        served_model: str,
        engines: Replicas | None = None,
        store: AdapterStore | None = None,
        on_load: Callable[[bool], None] | None = None,
    ) -> None:
        self._upstream = upstream
        self.served_model = served_model
        self._engines: Replicas = engines or _OneEngine(upstream)
        self._store = store or AdapterStore()
        self._on_load = on_load or (lambda ok: None)
        self._records: dict[str, AdapterInfo] = {}  # by policy
        self._wanted: dict[str, _Wanted] = {}  # by policy: what sync keeps loaded
        self._lock = asyncio.Lock()

    # --- loading ---------------------------------------------------------------------------

    async def load(self, name: str, path: Path, policy: str | None = None) -> AdapterInfo:
        """Load the adapter at `path` as `name` into every replica that does not list it with
        this path; raises AdapterError when it is not loaded everywhere that answers.

        The failure is also recorded (state "failed") under the policy, for fail-closed routing.
        """
        policy = policy or name
        async with self._lock:
            try:
                summary = self._check(path)
                engine_path = self._store.engine_path(path)
            except AdapterError as exc:
                self._on_load(False)
                self._wanted.pop(policy, None)
                self._records[policy] = AdapterInfo(
                    name, policy, str(path), "failed", error=str(exc), manifest={}
                )
                raise
            wanted = _Wanted(policy, name, path, engine_path, summary)
            self._wanted[policy] = wanted
            info = await self._sync_one(wanted)
            if info.state != "loaded":
                raise AdapterError(info.error or f"adapter {name} not loaded")
            return info

    async def ensure(self, policy: str, path: Path) -> AdapterInfo:
        """Load the policy's adapter wherever it is not listed with this path (idempotent)."""
        return await self.load(adapter_name(policy), path, policy=policy)

    async def sync(self) -> list[AdapterInfo]:
        """Every wanted adapter onto every replica that answers and lacks it (periodic): one
        listing per replica, a load only where one is missing."""
        async with self._lock:
            if not self._wanted:
                return []
            replicas = await self._engines.replicas()
            listings = await asyncio.gather(*(self._listed(r.client) for r in replicas))
            return [
                await self._sync_one(w, replicas, list(listings))
                for w in list(self._wanted.values())
            ]

    async def unload(self, name: str) -> None:
        """Unload `name` from every replica (an explicit removal: it is no longer wanted)."""
        async with self._lock:
            record = next((r for r in self._records.values() if r.name == name), None)
            if record is not None:
                self._wanted.pop(record.policy, None)
            replicas = await self._engines.replicas()
            errors = [
                e for e in await asyncio.gather(*(self._unload_on(r, name) for r in replicas)) if e
            ]
            if errors:
                raise AdapterError("; ".join(errors))
            if record is not None:
                self._records[record.policy] = replace(
                    record,
                    state="unloaded",
                    error=None,
                    engines={r.url: ReplicaAdapter("missing") for r in replicas},
                )

    def forget(self, policy: str) -> None:
        """Stop routing to and syncing the policy's adapter without unloading it (another
        gateway may still route to it)."""
        self._wanted.pop(policy, None)
        record = self._records.get(policy)
        if record is not None and record.state == "loaded":
            self._records[policy] = replace(record, state="unloaded", error=None)

    # --- queries ---------------------------------------------------------------------------

    def list(self) -> list[AdapterInfo]:
        return [self._records[k] for k in sorted(self._records)]

    def wanted(self) -> Sequence[str]:
        return sorted(self._wanted)

    def get(self, policy: str) -> AdapterInfo | None:
        return self._records.get(policy)

    def adapter_for(self, policy: str) -> str | None:
        """The upstream LoRA name for `policy` when its adapter is loaded, else None."""
        record = self._records.get(policy)
        return record.name if record and record.state == "loaded" else None

    # --- one adapter on every replica --------------------------------------------------------

    async def _sync_one(
        self,
        wanted: _Wanted,
        replicas: Sequence[Any] | None = None,
        listings: Sequence[dict[str, Any] | str | None] | None = None,
    ) -> AdapterInfo:
        if replicas is None:
            replicas = await self._engines.replicas()
        if listings is None:
            listings = list(await asyncio.gather(*(self._listed(r.client) for r in replicas)))
        loop = asyncio.get_running_loop()
        started = loop.time()
        pairs = zip(replicas, listings, strict=True)
        results = await asyncio.gather(*(self._ensure_on(r, wanted, ls) for r, ls in pairs))
        engines = {r.url: result for r, (result, _) in zip(replicas, results, strict=True)}
        loaded_now = any(fresh for _, fresh in results)
        previous = self._records.get(wanted.policy)
        lacking = {u: r for u, r in engines.items() if r.state in ("missing", "failed")}
        holders = [u for u, r in engines.items() if r.state == "loaded"]
        if lacking:
            state: State = "failed"
            error = "; ".join(
                f"{u}: {r.error or 'not loaded'}" for u, r in sorted(lacking.items())
            )
        elif holders:
            state, error = "loaded", None
        else:
            # No replica answers: nothing serves requests either; keep the last known state.
            state = previous.state if previous is not None else "failed"
            error = "no engine replica answers" if state != "loaded" else None
        same = previous is not None and previous.engine_path == wanted.engine_path
        keep_time = same and previous is not None and previous.state == "loaded" and not loaded_now
        info = AdapterInfo(
            name=wanted.name,
            policy=wanted.policy,
            path=str(wanted.path),
            state=state,
            error=error,
            loaded_at=(
                previous.loaded_at
                if keep_time and previous is not None
                else dt.datetime.now(dt.UTC).isoformat() if state == "loaded" else None
            ),
            load_seconds=(
                previous.load_seconds
                if keep_time and previous is not None
                else round(loop.time() - started, 3) if state == "loaded" else None
            ),
            manifest=wanted.manifest,
            engine_path=wanted.engine_path,
            engines=engines,
        )
        self._records[wanted.policy] = info
        return info

    async def _ensure_on(
        self, replica: Any, wanted: _Wanted, listed: dict[str, Any] | str | None
    ) -> tuple[ReplicaAdapter, bool]:
        """The adapter's state on one replica (whose models are `listed`) after loading it
        there if needed; True when this call loaded it."""
        if listed is None:
            return ReplicaAdapter("unreachable", "the replica does not answer"), False
        if isinstance(listed, str):
            return ReplicaAdapter("failed", listed), False
        root = listed.get(wanted.name, _ABSENT)
        if root == wanted.engine_path:
            return ReplicaAdapter("loaded"), False
        # Listed under another path (a new version of the policy's adapter): swap in place,
        # so the name never disappears from the replica.
        inplace = root is not _ABSENT
        body: dict[str, Any] = {"lora_name": wanted.name, "lora_path": wanted.engine_path}
        if inplace:
            body["load_inplace"] = True
        error = await self._post(replica.client, LOAD_PATH, body)
        if error is None:
            self._on_load(True)
            return ReplicaAdapter("loaded"), True
        if error.status == 400 and "already been loaded" in str(error):
            # Another gateway loaded it between our listing and our load: look again.
            again = await self._listed(replica.client)
            if isinstance(again, dict) and again.get(wanted.name) == wanted.engine_path:
                return ReplicaAdapter("loaded"), False
        self._on_load(False)
        return ReplicaAdapter("failed", str(error)), False

    async def _unload_on(self, replica: Any, name: str) -> str | None:
        error = await self._post(replica.client, UNLOAD_PATH, {"lora_name": name})
        if error is None or error.status == 404:
            return None
        if error.status is None:
            return None  # unreachable: a restarted replica holds no runtime adapter anyway
        return f"{replica.url}: {error}"

    async def _listed(self, client: Upstream) -> dict[str, Any] | str | None:
        """The replica's models by id -> root; None when it does not answer; a string when
        it answers with an error (a refused API key, for one)."""
        try:
            status, raw = await client.exchange("GET", MODELS_PATH, timeout=LIST_TIMEOUT_S)
        except UpstreamError:
            return None
        if status >= 500:
            return None
        if status != 200:
            return f"{MODELS_PATH} answered {status}: {_error_message(raw)}"
        try:
            data = orjson.loads(raw).get("data", [])
            return {str(m["id"]): str(m.get("root") or "") for m in data if isinstance(m, dict)}
        except (ValueError, AttributeError, KeyError):
            return f"{MODELS_PATH} answered an unreadable body"

    async def _post(
        self, client: Upstream, route: str, body: dict[str, Any]
    ) -> AdapterError | None:
        try:
            status, raw = await client.exchange("POST", route, body, timeout=LOAD_TIMEOUT_S)
        except UpstreamError as exc:
            return AdapterError(f"{route} for {body['lora_name']!r} failed: {exc}")
        if status != 200:
            return AdapterError(
                f"{route} for {body['lora_name']!r} answered {status}: {_error_message(raw)}",
                status=status,
            )
        return None

    def _check(self, path: Path) -> dict[str, Any]:
        if not path.is_dir():
            raise AdapterError(f"adapter directory {path} does not exist")
        missing = [f for f in ADAPTER_FILES if not (path / f).is_file()]
        if missing:
            raise AdapterError(f"adapter directory {path} lacks {', '.join(missing)}")
        try:
            return manifests.read(path).summary()
        except manifests.ManifestError as exc:
            raise AdapterError(f"adapter {path}: {exc}") from exc


_ABSENT: Any = object()


class _Records(Protocol):
    def list(self) -> Sequence[AdapterInfo]: ...

    def wanted(self) -> Sequence[str]: ...


class AdapterCollector(Collector):
    """Per-policy replicas lacking the adapter, read from the registry at each scrape."""

    def __init__(self, registry: _Records) -> None:
        self._registry = registry

    def collect(self) -> Iterator[Any]:
        missing = GaugeMetricFamily(
            "lethe_adapter_engines_missing",
            "Engine replicas that answer but lack a wanted adapter (its policy runs on its "
            "filters until every replica holds it), by policy.",
            labels=["policy"],
        )
        wanted = set(self._registry.wanted())
        for record in self._registry.list():
            if record.policy in wanted:
                missing.add_metric([record.policy], record.missing_on())
        yield missing


def _error_message(raw: bytes) -> str:
    try:
        body = orjson.loads(raw)
    except ValueError:
        return raw[:500].decode("utf-8", "replace")
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and "message" in error:
            return str(error["message"])
        if "message" in body:
            return str(body["message"])
        if isinstance(error, str):
            return error
    return str(body)[:500]
