"""The live policy set: loaded at start-up (or the gateway refuses to start), hot-reloaded by
validate-then-swap, global policies plus per-tenant additions."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.audit import AuditLog
from gateway.enforcement import ActivePolicies, Env, PolicySet, build_policy_set
from gateway.policy import PolicyError, load_directory
from gateway.runtime_resources import resources_from_settings
from gateway.settings import Settings
from gateway.stages import PASS_THROUGH, PolicyStages

if TYPE_CHECKING:
    from gateway.runtime import Runtime

log = logging.getLogger("lethe")

TENANTS_DIR = "tenants"


def _fingerprint(directory: Path) -> tuple[tuple[str, int, int], ...]:
    entries = []
    for path in sorted(directory.rglob("*")):
        try:
            st = path.stat()
        except OSError:
            continue
        if path.is_file():
            entries.append((str(path), st.st_mtime_ns, st.st_size))
    return tuple(entries)


class PolicyStore:
    def __init__(self, settings: Settings, runtime: Runtime) -> None:
        self.settings = settings
        self.runtime = runtime
        self.resources = resources_from_settings(settings)
        self.audit = AuditLog(settings.audit_log, settings.audit_key)
        self.global_set = PolicySet((), "empty")
        self.tenant_sets: dict[str, PolicySet] = {}
        self.loaded = False
        self.reload_failures = 0
        self.last_error: str | None = None
        self._active: PolicyStages = PASS_THROUGH
        self._fingerprint: tuple[Any, ...] = ()
        self._watcher: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    def env(self) -> Env:
        runtime = self.runtime
        return Env(
            metrics=runtime.metrics,
            audit=self.audit,
            run_blocking=runtime.run_blocking,
            filter_timeout_s=self.settings.filter_timeout_s,
            max_holdback_chars=self.settings.max_holdback_chars,
            max_holdback_raw_chars=self.settings.max_holdback_raw_chars,
            adapter_for=runtime.adapter_for,
            decode_for=runtime.decode_for,
        )

    def stages(self) -> PolicyStages:
        return self._active

    def _build(self, directory: Path) -> tuple[PolicySet, dict[str, PolicySet]]:
        holdback = self.settings.max_holdback_chars
        global_set = build_policy_set(
            load_directory(directory), self.resources, max_holdback_chars=holdback
        )
        tenants: dict[str, PolicySet] = {}
        tenant_root = directory / TENANTS_DIR
        if tenant_root.is_dir():
            for tenant_dir in sorted(p for p in tenant_root.iterdir() if p.is_dir()):
                tenant_set = build_policy_set(
                    load_directory(tenant_dir), self.resources, max_holdback_chars=holdback
                )
                clash = set(tenant_set.names) & set(global_set.names)
                if clash:
                    raise PolicyError(
                        f"{tenant_dir}: tenant policies cannot replace global ones: "
                        f"{', '.join(sorted(clash))}"
                    )
                tenants[tenant_dir.name] = tenant_set
        return global_set, tenants

    def _swap(self, global_set: PolicySet, tenants: dict[str, PolicySet]) -> None:
        self.global_set, self.tenant_sets = global_set, tenants
        if global_set.policies or tenants:
            self._active = _TenantAware(global_set, tenants, self.env())
        else:
            self._active = PASS_THROUGH
        count = len(global_set.policies) + sum(len(t.policies) for t in tenants.values())
        self.runtime.metrics.set_policy_set(global_set.digest, count)
        self.loaded = True

    async def load_initial(self) -> None:
        directory = self.settings.policies
        if directory is None:
            self._swap(PolicySet((), "empty"), {})
            return
        self._fingerprint = _fingerprint(directory)
        global_set, tenants = await asyncio.to_thread(self._build, directory)
        self._swap(global_set, tenants)
        await self.runtime.on_policies_loaded(self)
        log.info(
            "loaded %d policies from %s (set %s)",
            len(global_set.policies),
            directory,
            global_set.digest,
        )
        if self.settings.reload_interval_s > 0:
            self._watcher = asyncio.create_task(self._watch(directory))

    async def reload(self) -> tuple[bool, str]:
        directory = self.settings.policies
        if directory is None:
            return False, "no policy directory configured"
        async with self._lock:
            self._fingerprint = _fingerprint(directory)
            try:
                global_set, tenants = await asyncio.to_thread(self._build, directory)
            except (PolicyError, OSError) as exc:
                self.reload_failures += 1
                self.last_error = str(exc)
                self.runtime.metrics.reload(False)
                log.error("policy reload failed, keeping set %s: %s", self.global_set.digest, exc)
                return False, str(exc)
            self._swap(global_set, tenants)
            self.last_error = None
            self.runtime.metrics.reload(True)
            await self.runtime.on_policies_loaded(self)
            log.info("policies reloaded: set %s", global_set.digest)
            return True, global_set.digest

    async def _watch(self, directory: Path) -> None:
        while True:
            await asyncio.sleep(self.settings.reload_interval_s)
            try:
                current = await asyncio.to_thread(_fingerprint, directory)
            except OSError:
                continue
            if current != self._fingerprint:
                await self.reload()

    async def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()

    def all_policies(self) -> list[tuple[str, Any]]:
        rows = [("*", p) for p in self.global_set.policies]
        rows += [(t, p) for t, s in self.tenant_sets.items() for p in s.policies]
        return rows

    def summary(self) -> dict[str, Any]:
        return {
            "set": self.global_set.digest,
            "count": len(self.all_policies()),
            "reload_failures": self.reload_failures,
        }


class _TenantAware:
    """Global policies for everyone; a tenant's own set only ever adds to them."""

    def __init__(self, global_set: PolicySet, tenants: dict[str, PolicySet], env: Env) -> None:
        self._default = ActivePolicies([global_set], env)
        self._tenants = {t: ActivePolicies([global_set, s], env) for t, s in tenants.items()}

    def begin(self, ctx: Any) -> Any:
        return self._tenants.get(ctx.tenant, self._default).begin(ctx)
