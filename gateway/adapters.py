"""LoRA unlearning adapters loaded into vLLM at runtime, one per policy.

The registry keeps a record per policy, including failures, so the gateway can fail closed:
a policy in `unlearn` mode whose adapter is not loaded gets its suppression filters instead.

Routing rule (one request goes to one upstream model, and vLLM applies one LoRA per
request): among the request's policies, in policy order, the first with a loaded adapter
decides the upstream model; the other policies' adapters are not applied, so those policies
are enforced by their filters. Adapters are never stacked or merged at request time.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import orjson

from gateway.upstream import Upstream, UpstreamError
from unlearning import manifest as manifests

LOAD_PATH = "/v1/load_lora_adapter"
UNLOAD_PATH = "/v1/unload_lora_adapter"
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
LOAD_TIMEOUT_S = 120.0

State = Literal["loaded", "failed", "unloaded"]


class AdapterError(RuntimeError):
    """An adapter could not be loaded or unloaded; the message says which and why."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


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

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "policy": self.policy,
            "path": self.path,
            "state": self.state,
            "error": self.error,
            "loaded_at": self.loaded_at,
            "load_seconds": self.load_seconds,
            "manifest": self.manifest,
        }


def adapter_name(policy: str) -> str:
    """The upstream LoRA name for a policy's adapter (what vLLM lists and requests name)."""
    return f"lethe-{policy}"


class AdapterRegistry:
    def __init__(self, upstream: Upstream, served_model: str) -> None:
        self._upstream = upstream
        self.served_model = served_model
        self._records: dict[str, AdapterInfo] = {}  # by policy
        self._lock = asyncio.Lock()

    # --- loading ---------------------------------------------------------------------------

    async def load(self, name: str, path: Path, policy: str | None = None) -> AdapterInfo:
        """Load the adapter at `path` into vLLM as `name`; raises AdapterError on failure.

        The failure is also recorded (state "failed") under the policy, for fail-closed routing.
        """
        policy = policy or name
        async with self._lock:
            try:
                summary = self._check(path)
                seconds = await self._load_fresh(name, path)
            except AdapterError as exc:
                self._records[policy] = AdapterInfo(
                    name, policy, str(path), "failed", error=str(exc), manifest={}
                )
                raise
            info = AdapterInfo(
                name=name,
                policy=policy,
                path=str(path),
                state="loaded",
                loaded_at=dt.datetime.now(dt.UTC).isoformat(),
                load_seconds=round(seconds, 3),
                manifest=summary,
            )
            self._records[policy] = info
            return info

    async def ensure(self, policy: str, path: Path) -> AdapterInfo:
        """Load the policy's adapter unless the same path is already loaded (idempotent)."""
        current = self._records.get(policy)
        same = current is not None and Path(current.path) == Path(path)
        if (
            current
            and current.state == "loaded"
            and same
            and await self._upstream_has(current.name)
        ):
            return current
        if current and current.state == "loaded":
            await self.unload(current.name)
        return await self.load(adapter_name(policy), path, policy=policy)

    async def unload(self, name: str) -> None:
        async with self._lock:
            record = next((r for r in self._records.values() if r.name == name), None)
            await self._post(UNLOAD_PATH, {"lora_name": name})
            if record is not None:
                self._records[record.policy] = replace(record, state="unloaded", error=None)

    # --- queries ---------------------------------------------------------------------------

    def list(self) -> list[AdapterInfo]:
        return [self._records[k] for k in sorted(self._records)]

    def get(self, policy: str) -> AdapterInfo | None:
        return self._records.get(policy)

    def adapter_for(self, policy: str) -> str | None:
        """The upstream LoRA name for `policy` when its adapter is loaded, else None."""
        record = self._records.get(policy)
        return record.name if record and record.state == "loaded" else None

    def upstream_model_for(self, policy_names: Iterable[str]) -> str | None:
        """The LoRA name to send upstream for a request under `policy_names` (in policy order):
        the first policy with a loaded adapter; None means the served base model."""
        for policy in policy_names:
            name = self.adapter_for(policy)
            if name is not None:
                return name
        return None

    # --- helpers ---------------------------------------------------------------------------

    async def _load_fresh(self, name: str, path: Path) -> float:
        """Load `name`; when vLLM already holds that name (an earlier registry, a restarted
        gateway), unload it and load again. Not `load_inplace`: vLLM keeps prefix-cache
        blocks computed with the old weights when the path is the same."""
        body = {"lora_name": name, "lora_path": str(path)}
        try:
            return await self._post(LOAD_PATH, body)
        except AdapterError as exc:
            if exc.status != 400 or "already been loaded" not in str(exc):
                raise
        await self._post(UNLOAD_PATH, {"lora_name": name})
        return await self._post(LOAD_PATH, body)

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

    async def _post(self, route: str, body: dict[str, str]) -> float:
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            status, raw = await self._upstream.exchange("POST", route, body, timeout=LOAD_TIMEOUT_S)
        except UpstreamError as exc:
            raise AdapterError(f"{route} for {body['lora_name']!r} failed: {exc}") from exc
        if status != 200:
            raise AdapterError(
                f"{route} for {body['lora_name']!r} answered {status}: {_error_message(raw)}",
                status=status,
            )
        return loop.time() - started

    async def _upstream_has(self, name: str) -> bool:
        try:
            _, raw = await self._upstream.exchange("GET", "/v1/models", timeout=10.0)
            ids = {m.get("id") for m in orjson.loads(raw).get("data", [])}
        except (UpstreamError, ValueError, AttributeError):
            return False
        return name in ids


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
    return str(body)[:500]
