"""The LoRA adapters of policies in unlearn/both mode, kept on every engine replica.

When a policy set goes live its adapters are loaded; a failure leaves the policy's filters on
(fail closed) and is retried. A watcher keeps every replica holding every wanted adapter (an
engine restart loses them). An adapter a reload removed is forgotten, or unloaded only when
LETHE_ADAPTER_UNLOAD_ON_REMOVAL says so: a gateway starting (or scaling out) unloads nothing
another gateway may route to. The registry (gateway.adapters) does the loading itself.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from gateway.adapters import AdapterError, AdapterRegistry
from gateway.policy.loading import LoadedPolicy
from gateway.policy.models import PolicySpec
from gateway.runtime_resources import cache_root
from gateway.settings import Settings

log = logging.getLogger("lethe")

UNLEARN_MODES = ("unlearn", "both")


class AdapterManager:
    def __init__(self, settings: Settings, registry: AdapterRegistry) -> None:
        self.settings = settings
        self.registry = registry
        self._wanted: dict[str, LoadedPolicy] = {}
        self._watcher: asyncio.Task[None] | None = None

    def path_for(self, policy: LoadedPolicy) -> Path:
        """Where a policy's adapter lives: `adapter.path` (relative to the adapter store,
        LETHE_ADAPTER_DIR, when there is one, else to the policy file) or the store's (else
        the cache's `adapters/`) `<policy>-<method>` that `lethe unlearning train` writes."""
        spec = policy.spec
        store = self.settings.adapter_dir
        if spec.adapter is not None and spec.adapter.path:
            base = store if store is not None else policy.path.parent
            return (base / spec.adapter.path).resolve()
        method = spec.adapter.method if spec.adapter and spec.adapter.method else "npo"
        root = store if store is not None else cache_root(self.settings) / "adapters"
        return root / f"{spec.name}-{method}"

    def status(self, spec: PolicySpec) -> str:
        """The policy's removal as an operator reads it (admin /policies)."""
        if spec.mode not in UNLEARN_MODES:
            return "not requested"
        record = self.registry.get(spec.name)
        if record is not None and record.state == "loaded":
            return f"loaded as {record.name}"
        why = record.error if record is not None and record.error else "no adapter loaded"
        return f"unavailable: {why}; suppression filters enforced instead"

    async def apply(self, policies: list[LoadedPolicy]) -> None:
        """The live policy set changed: load what it wants, let go of what it dropped."""
        self._wanted = {p.spec.name: p for p in policies if p.spec.mode in UNLEARN_MODES}
        for removed in [p for p in self.registry.wanted() if p not in self._wanted]:
            record = self.registry.get(removed)
            if record is None:
                continue
            if not self.settings.adapter_unload_on_removal:
                self.registry.forget(removed)
                continue
            try:
                await self.registry.unload(record.name)
            except AdapterError as exc:
                log.error("could not unload adapter %s: %s", record.name, exc)
        for name, policy in self._wanted.items():
            await self.ensure(name, self.path_for(policy))
        if self._wanted and self._watcher is None:
            self._watcher = asyncio.create_task(self._sync())

    async def ensure(self, policy: str, path: Path) -> bool:
        """`policy`'s adapter from `path` on every replica; False (logged) when it failed."""
        before = self.registry.get(policy)
        try:
            info = await self.registry.ensure(policy, path)
        except AdapterError as exc:
            log.error("adapter for policy %s not loaded (filters stay on): %s", policy, exc)
            return False
        if before is None or before.loaded_at != info.loaded_at:
            log.info(
                "adapter %s loaded for policy %s on %d engine replica(s) in %.2fs",
                info.name,
                policy,
                len(info.engines),
                info.load_seconds or 0.0,
            )
        return True

    def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()

    async def _sync(self) -> None:
        """Every replica keeps every wanted adapter (an engine restart loses them); adapters
        whose directory was not usable yet are tried again."""
        while True:
            await asyncio.sleep(self.settings.adapter_sync_interval_s)
            try:
                before = {r.policy: r.state for r in self.registry.list()}
                for info in await self.registry.sync():
                    if before.get(info.policy) != info.state:
                        log.warning(
                            "adapter %s for policy %s is now %s%s",
                            info.name,
                            info.policy,
                            info.state,
                            f": {info.error}" if info.error else "",
                        )
                synced = set(self.registry.wanted())
                for name, policy in self._wanted.items():
                    if name not in synced:
                        await self.ensure(name, self.path_for(policy))
            except Exception:  # the loop must outlive one bad round
                log.exception("adapter sync failed")
