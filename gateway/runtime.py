"""Everything the app owns for its lifetime, built once at start-up and shared by requests."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from gateway.adapter_manager import AdapterManager
from gateway.adapters import AdapterCollector, AdapterRegistry, AdapterStore
from gateway.audit import AuditLog
from gateway.auth import KeyStore
from gateway.decode import EngineDecoding, wants_decode
from gateway.enforcement import Env, activate
from gateway.engine_pool import EnginePool, upstream_api_key
from gateway.errors import GatewayError
from gateway.filter_pool import FilterPool
from gateway.metrics import Metrics, bounded_model
from gateway.metrics_port import serve_metrics
from gateway.pipeline import Pipeline
from gateway.policy.loading import load_tree
from gateway.policy.store import PolicyStore
from gateway.runtime_resources import resources_from_settings
from gateway.scope import RequestScope
from gateway.settings import Settings
from gateway.stages import RequestContext
from gateway.tokenizer_check import TokenizerGate
from gateway.upstream import Upstream, UpstreamError

log = logging.getLogger("lethe")

_MODELS_TTL_S = 5.0


class Runtime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        engine_key = upstream_api_key(settings)
        self.keys = KeyStore.from_sources(
            api_keys=settings.api_keys,
            api_keys_file=settings.api_keys_file,
            admin_key=settings.admin_key,
            admin_key_file=settings.admin_key_file,
        )
        self.upstream = Upstream(
            settings.upstream,
            connect_timeout=settings.connect_timeout_s,
            first_byte_timeout=settings.first_byte_timeout_s,
            read_timeout=settings.read_timeout_s,
            idle_timeout=settings.upstream_idle_timeout_s,
            max_connections=settings.max_upstream_connections,
            pool_timeout=settings.upstream_pool_timeout_s,
            keepalive=settings.upstream_keepalive_s,
            api_key=engine_key,
        )
        self.metrics.watch_upstream_pool(self.upstream.pool_stats)
        self.pool = FilterPool(
            settings.filter_threads,
            work_budget_s=settings.filter_timeout_s,
            wait_budget_s=settings.filter_queue_timeout_s,
        )
        # Adapters go to every engine replica; completions keep using the upstream (Service).
        self.engines = EnginePool(settings, self.upstream, engine_key)
        self.adapters = AdapterRegistry(
            self.upstream,
            settings.served_models[0] if settings.served_models else "",
            engines=self.engines,
            store=AdapterStore(settings.adapter_dir, settings.engine_adapter_dir),
            on_load=self.metrics.adapter_load,
        )
        self.metrics.registry.register(AdapterCollector(self.adapters))
        self.adapter_manager = AdapterManager(settings, self.adapters)
        self.decoding = EngineDecoding(settings.engine_decode == "auto", self.metrics)
        self.resources = resources_from_settings(settings)
        env = Env(
            metrics=self.metrics,
            audit=AuditLog(settings.audit_log, settings.audit_key),
            run_blocking=self.pool.run,
            filter_timeout_s=settings.filter_timeout_s,
            max_holdback_chars=settings.max_holdback_chars,
            max_holdback_raw_chars=settings.max_holdback_raw_chars,
            adapter_for=self.adapters.adapter_for,
            decode_for=self.decoding.tagged_for,
        )
        self.policies = PolicyStore(
            settings,
            self.metrics,
            build=partial(
                load_tree, resources=self.resources, max_holdback_chars=settings.max_holdback_chars
            ),
            activate=partial(activate, env=env),
            on_loaded=self.on_policies_loaded,
        )
        self.pipeline = Pipeline(self.upstream)
        self.draining = False
        self._models_cache: tuple[float, dict[str, Any]] | None = None
        self._stop_metrics_port: Callable[[], None] | None = None
        self.tokenizer_gate = TokenizerGate(
            settings.tokenizer_check == "require", settings.adapter_sync_interval_s
        )
        self._started = False

    @classmethod
    async def start(cls, settings: Settings) -> Runtime:
        runtime = cls(settings)
        if runtime.keys.open:
            log.warning("no API keys configured: the gateway accepts every client")
        try:
            await runtime.policies.load_initial()
        except BaseException:
            # Refused to start (bad policies, wrong tokenizer): release what was opened.
            await runtime.stop()
            raise
        runtime._started = True
        if settings.metrics_port:
            runtime._stop_metrics_port = serve_metrics(
                settings.host, settings.metrics_port, runtime.metrics.registry
            )
        return runtime

    async def stop(self) -> None:
        self.draining = True
        if self._stop_metrics_port is not None:
            self._stop_metrics_port()
        self.tokenizer_gate.stop()
        await self.policies.stop()
        self.adapter_manager.stop()
        self.decoding.stop()
        await self.engines.aclose()
        await self.upstream.aclose()
        self.pool.shutdown()

    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        if self.draining:
            return False, {"reason": "draining"}
        pool = self.upstream.pool_stats()
        # A saturated pool is not ready whatever the upstream says; a probe would only queue
        # behind the completions holding every slot.
        upstream_ok: bool | None = None
        if not pool.saturated:
            try:
                status, _ = await self.upstream.exchange("GET", "/health", timeout=2.0)
                upstream_ok = status == 200
            except UpstreamError:
                upstream_ok = False
        detail = {
            "upstream": upstream_ok,
            "upstream_pool": pool.summary(),
            "policies": self.policies.summary(),
            "tokenizer": self.tokenizer_gate.summary(),
        }
        ready = bool(upstream_ok) and not pool.saturated and self.policies.loaded
        return ready and self.tokenizer_gate.ready, detail

    async def list_models(self) -> dict[str, Any]:
        now = time.monotonic()
        if self._models_cache is None or now - self._models_cache[0] > _MODELS_TTL_S:
            data = await self.upstream.get_json("/v1/models")
            # LoRA adapters are an implementation detail of policies: clients see base models.
            data["data"] = [
                m for m in data.get("data", []) if isinstance(m, dict) and not m.get("parent")
            ]
            self._models_cache = (now, data)
        return self._models_cache[1]

    async def check_model(self, model: str) -> None:
        # Only what /v1/models shows: an adapter named directly would skip its policy's filters.
        allowed = self.settings.served_models
        if not allowed:
            try:
                listed = (await self.list_models())["data"]
            except UpstreamError:
                if self._models_cache is None:
                    raise
                # A failed refresh must not fail the request: the last list still holds.
                listed = self._models_cache[1]["data"]
            allowed = tuple(m.get("id") for m in listed)
        if model not in allowed:
            raise GatewayError(
                404,
                f"The model `{model}` does not exist.",
                type="NotFoundError",
                param="model",
                code=404,
            )

    def model_label(self, model: str) -> str:
        known = self.settings.served_models or [
            m.get("id") for m in (self._models_cache[1]["data"] if self._models_cache else [])
        ]
        return bounded_model(model, known)

    def request(self, ctx: RequestContext) -> RequestScope:
        """The scope of one completion request (gateway.scope), its policy work begun."""
        if self.draining:
            raise GatewayError(503, "gateway is shutting down", type="unavailable", code=503)
        stages = self.policies.stages().begin(ctx)
        return RequestScope(ctx, stages, self.metrics, self.model_label(ctx.requested_model))

    async def served_model(self) -> str:
        """The engine's base model name: the first served model, else the first it lists."""
        if self.settings.served_models:
            return self.settings.served_models[0]
        listed = (await self.list_models())["data"]
        return str(listed[0]["id"]) if listed else ""

    async def probe_decoding(self) -> None:
        try:
            model = await self.served_model()
        except (UpstreamError, KeyError, TypeError):
            model = ""
        await self.decoding.probe(self.upstream, model)

    async def on_policies_loaded(self, store: PolicyStore) -> None:
        """Check the tokenizer against the engine's when a policy uses it
        (gateway.tokenizer_check); probe the engine for the decoding processor when policies
        ask for it (gateway.decode); load the adapters they want (gateway.adapter_manager)."""
        await self.tokenizer_gate.check(
            self.upstream, self.resources, self.served_model, at_start=not self._started
        )
        decode = [(p.spec.name, p.path) for _, p in store.all_policies() if wants_decode(p.spec)]
        await asyncio.to_thread(self.decoding.expect, decode)
        if decode:
            await self.probe_decoding()
            if self.settings.reload_interval_s > 0:
                self.decoding.watch(self.probe_decoding)
        await self.adapter_manager.apply([p for _, p in store.all_policies()])
