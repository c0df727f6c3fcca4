"""The live policy set: loaded at start-up (or the gateway refuses to start), hot-reloaded by
validate-then-swap, global policies plus per-tenant additions.

The store knows neither the runtime nor the enforcement: it is given how to build a policy
tree from a directory, how to make it enforceable, and what to do once one is live.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from gateway.metrics import Metrics
from gateway.policy.loading import EMPTY, LoadedPolicy, PolicySet, PolicyTree
from gateway.policy.models import PolicyError
from gateway.settings import Settings
from gateway.stages import PASS_THROUGH, PolicyStages

log = logging.getLogger("lethe")


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
    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        *,
        build: Callable[[Path], PolicyTree],
        activate: Callable[[PolicyTree], PolicyStages],
        on_loaded: Callable[[PolicyStore], Awaitable[None]],
    ) -> None:
        """`build` loads a directory (in a thread: it reads files and builds models),
        `activate` makes a tree enforceable, `on_loaded` runs after each swap (adapters,
        decoding probe, tokenizer check)."""
        self.settings = settings
        self.metrics = metrics
        self._build = build
        self._activate = activate
        self._on_loaded = on_loaded
        self.tree = EMPTY
        self.loaded = False
        self.reload_failures = 0
        self.last_error: str | None = None
        self._active: PolicyStages = PASS_THROUGH
        self._fingerprint: tuple[Any, ...] = ()
        self._watcher: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    @property
    def global_set(self) -> PolicySet:
        return self.tree.global_set

    def stages(self) -> PolicyStages:
        return self._active

    def _swap(self, tree: PolicyTree) -> None:
        self.tree = tree
        self._active = self._activate(tree)
        self.metrics.set_policy_set(tree.global_set.digest, len(tree.all_policies()))
        self.loaded = True

    async def load_initial(self) -> None:
        directory = self.settings.policies
        if directory is None:
            self._swap(EMPTY)
            return
        self._fingerprint = _fingerprint(directory)
        tree = await asyncio.to_thread(self._build, directory)
        self._swap(tree)
        await self._on_loaded(self)
        log.info(
            "loaded %d policies from %s (set %s)",
            len(tree.global_set.policies),
            directory,
            tree.global_set.digest,
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
                tree = await asyncio.to_thread(self._build, directory)
            except (PolicyError, OSError) as exc:
                self.reload_failures += 1
                self.last_error = str(exc)
                self.metrics.reload(False)
                log.error("policy reload failed, keeping set %s: %s", self.global_set.digest, exc)
                return False, str(exc)
            self._swap(tree)
            self.last_error = None
            self.metrics.reload(True)
            await self._on_loaded(self)
            log.info("policies reloaded: set %s", tree.global_set.digest)
            return True, tree.global_set.digest

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

    def all_policies(self) -> list[tuple[str, LoadedPolicy]]:
        return self.tree.all_policies()

    def summary(self) -> dict[str, Any]:
        return {
            "set": self.global_set.digest,
            "count": len(self.all_policies()),
            "reload_failures": self.reload_failures,
        }
