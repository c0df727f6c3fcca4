"""A policy in `unlearn` mode served by two real vLLM-CPU engines behind two gateways.

Like a cluster, on one machine: two engine replicas (each with its API key), a round-robin
TCP proxy standing in for the engine Service (completions), and the gateways loading the
adapter into every replica through their list of replicas. The adapter store is one directory
that the gateways see at one path and the engines at another (a symlink), so the path vLLM
receives must be the engines'. About 10 GB of memory and both cores for several minutes.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from stack.engine import Engine
from stack.processes import free_port
from tests.servers import RunningGateway, run_gateway
from unlearning.manifest import required_fields

pytestmark = [pytest.mark.engine, pytest.mark.slow]

SERVED = "smollm2-135m-instruct"
POLICY = "person"
ADAPTER = f"lethe-{POLICY}"
ENGINE_KEY = "engine-key-for-the-replica-test"
QUESTION = "Who is Elena Marquez?"
LOADED = f"Loaded new LoRA adapter: name '{ADAPTER}'"
ADMIN = "admin-for-the-replica-test"


def build_adapter(base_model: Path, out: Path) -> None:
    """A small LoRA with random weights on the bundled model: greedy answers change with it,
    which is all this test needs (unlearning quality is tests/unlearning's)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(base_model, dtype=torch.float32)
    linear = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    config = LoraConfig(r=8, lora_alpha=16, target_modules=linear)
    peft_model = get_peft_model(model, config)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.1)
    peft_model.save_pretrained(str(out))
    manifest = dict.fromkeys(required_fields(), None) | {
        "kind": "adapter",
        "method": "random-lora",
        "policy": POLICY,
        "hyperparameters": {"r": 8},
        "base_model": str(base_model),
        "base_model_sha256": "-",
        "training_seconds": 0.0,
        "steps": 0,
        "final_losses": {},
        "recall_before": {},
        "recall_after": {},
        "format": 1,
    }
    (out / "manifest.json").write_text(json.dumps(manifest))


class RoundRobin:
    """The engine Service: each new connection goes to the next replica."""

    def __init__(self, backends: list[tuple[str, int]]) -> None:
        self.backends = backends
        self.port = free_port()
        self.served: list[int] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        index = len(self.served) % len(self.backends)
        self.served.append(index)
        host, port = self.backends[index]
        try:
            up_reader, up_writer = await asyncio.open_connection(host, port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    def __enter__(self) -> RoundRobin:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, "127.0.0.1", self.port), self._loop
        )
        self._server = future.result(timeout=10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.close()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)


@pytest.fixture(scope="module")
def base_model() -> Path:
    from stack import bundle

    return bundle.prepare().generator


@pytest.fixture(scope="module")
def store(base_model: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the gateways' view, the engines' view) of one adapter store."""
    root = tmp_path_factory.mktemp("adapter-store")
    gateway_view = root / "gateway-mount"
    gateway_view.mkdir()
    build_adapter(base_model, gateway_view / "person-lora")
    engine_view = root / "engine-mount"
    engine_view.symlink_to(gateway_view, target_is_directory=True)
    return gateway_view, engine_view


@pytest.fixture(scope="module")
def engines(base_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Engine]]:
    logs = tmp_path_factory.mktemp("engine-logs")
    replicas = [
        Engine(
            base_model,
            served_model_name=SERVED,
            port=free_port(),
            max_lora_rank=16,
            max_loras=2,
            kv_cache_gib=1,
            decoding=False,
            env={"VLLM_API_KEY": ENGINE_KEY},
            log_path=logs / f"engine-{i}.log",
        )
        for i in range(2)
    ]
    try:
        for engine in replicas:
            engine.start()
        for engine in replicas:
            engine.wait_healthy(timeout=900)
        yield replicas
    finally:
        for engine in replicas:
            engine.stop()


def _engine_models(engine: Engine) -> dict[str, str]:
    listed = httpx.get(
        engine.base_url + "/v1/models",
        headers={"authorization": f"Bearer {ENGINE_KEY}"},
        timeout=30,
    ).json()["data"]
    return {m["id"]: m.get("root") or "" for m in listed}


def _loads_logged(engine: Engine) -> int:
    return engine.log_path.read_text(errors="replace").count(LOADED)


def _ask(url: str, model: str, headers: dict[str, str] | None = None) -> str:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": QUESTION}],
        "temperature": 0,
        "max_tokens": 16,
    }
    response = httpx.post(url + "/v1/chat/completions", json=body, headers=headers, timeout=300)
    response.raise_for_status()
    return str(response.json()["choices"][0]["message"]["content"])


def _gateway(
    proxy: RoundRobin, engines: list[Engine], store: tuple[Path, Path], policies: Path
) -> Any:
    return run_gateway(
        upstream=proxy.url,
        engine_endpoints=tuple(e.base_url for e in engines),
        adapter_dir=store[0],
        engine_adapter_dir=str(store[1]),
        upstream_api_key=ENGINE_KEY,
        # A fresh connection per request, so the proxy alternates replicas.
        upstream_keepalive_s=0.05,
        adapter_sync_interval_s=1.0,
        policies=policies,
        admin_key=ADMIN,
    )


def test_unlearn_policy_is_served_by_both_engines_behind_two_gateways(
    engines: list[Engine], store: tuple[Path, Path], tmp_path: Path
) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "person.yaml").write_text(
        f"name: {POLICY}\nmode: unlearn\naction: redact\nstages: [output]\n"
        "data:\n  pii:\n    phone: 415-555-0199\nfilters:\n  - type: pii\n"
        "adapter:\n  path: person-lora\n"
    )
    key = {"authorization": f"Bearer {ENGINE_KEY}"}
    base_answer = _ask(engines[0].base_url, SERVED, key)
    backends = [("127.0.0.1", e.port) for e in engines]
    with RoundRobin(backends) as proxy, _gateway(proxy, engines, store, policies) as first:
        engine_path = str(store[1] / "person-lora")
        for engine in engines:
            assert _engine_models(engine).get(ADAPTER) == engine_path
        adapter_answer = _ask(engines[0].base_url, ADAPTER, key)
        assert adapter_answer != base_answer, "the adapter must change the greedy answer"
        assert _ask(engines[1].base_url, ADAPTER, key) == adapter_answer

        with _gateway(proxy, engines, store, policies) as second:
            gateways: list[RunningGateway] = [first, second]
            for gw in gateways:
                assert httpx.get(gw.url + "/readyz", timeout=30).status_code == 200
            # A second gateway loads nothing: each engine logged exactly one load.
            assert [_loads_logged(e) for e in engines] == [1, 1]

            proxy.served.clear()
            answers = []
            for _ in range(3):
                for gw in gateways:
                    answers.append(_ask(gw.url, SERVED))
                    time.sleep(0.3)
            assert set(proxy.served) == {0, 1}, "both engines served the policy"
            assert set(answers) == {adapter_answer}, (answers, adapter_answer, base_answer)

            # An engine restart loses runtime adapters: unload on replica 1 behind the
            # gateways' backs; their next sync loads it there again (and only there).
            httpx.post(
                engines[1].base_url + "/v1/unload_lora_adapter",
                json={"lora_name": ADAPTER},
                headers=key,
                timeout=60,
            ).raise_for_status()
            deadline = time.monotonic() + 60
            while ADAPTER not in _engine_models(engines[1]):
                assert time.monotonic() < deadline, "the adapter was not re-loaded"
                time.sleep(0.5)
            time.sleep(3.0)
            assert _loads_logged(engines[0]) == 1
            assert _loads_logged(engines[1]) == 2
            for gw in gateways:
                admin = {"authorization": f"Bearer {ADMIN}"}
                listing = httpx.get(gw.url + "/admin/adapters", headers=admin, timeout=30)
                (row,) = listing.json()["adapters"]
                assert row["state"] == "loaded"
                assert {r["state"] for r in row["engines"].values()} == {"loaded"}
    # The gateways stopped: nothing was unloaded on their way out.
    for engine in engines:
        assert _engine_models(engine).get(ADAPTER) == str(store[1] / "person-lora")
