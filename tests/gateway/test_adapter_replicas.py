"""Adapters on every engine replica, over two scripted vLLM replicas (real HTTP servers).

The gateway checks adapters on its own mount of the adapter store and sends the engines' path;
it loads each adapter into every replica, re-loads it on a replica that lost it (an engine
restart), routes to it only while every answering replica holds it, and never loads or unloads
because another gateway starts or stops. The real-vLLM version is
tests/gateway/test_adapter_replicas_engine.py.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.engine_pool import EnginePool
from gateway.settings import Settings
from gateway.upstream import Upstream
from stack.processes import free_port
from tests.fakes.upstream import FakeUpstream, script
from tests.servers import RunningGateway, run_gateway
from unlearning.manifest import required_fields

PHONE = "415-555-0199"
ADMIN = "admin-secret-for-tests"
ENGINE_STORE = "/adapters"
NAME = "lethe-person"


def make_adapter(root: Path, name: str) -> Path:
    path = root / name
    path.mkdir(parents=True)
    (path / "adapter_config.json").write_text("{}")
    (path / "adapter_model.safetensors").write_bytes(b"\0")
    manifest = dict.fromkeys(required_fields(), None) | {
        "kind": "adapter",
        "method": "npo",
        "policy": "person",
        "hyperparameters": {},
        "base_model": "fake",
        "base_model_sha256": "0",
        "training_seconds": 1.0,
        "steps": 1,
        "final_losses": {},
        "recall_before": {},
        "recall_after": {},
        "format": 1,
        "created_at": "2026-11-23T00:00:00+00:00",
    }
    (path / "manifest.json").write_text(json.dumps(manifest))
    return path


def write_policy(directory: Path, mode: str, adapter: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "person.yaml").write_text(
        f"name: person\nmode: {mode}\naction: redact\nstages: [output]\n"
        f"data:\n  pii:\n    phone: {PHONE}\nfilters:\n  - type: pii\n"
        f"adapter:\n  path: {adapter}\n"
    )


@pytest.fixture
def replicas() -> Iterator[tuple[FakeUpstream, FakeUpstream]]:
    with FakeUpstream() as a, FakeUpstream() as b:
        yield a, b


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """The adapter store as the gateway mounts it (the engines see it at /adapters)."""
    root = tmp_path / "gateway-view-of-store"
    make_adapter(root, "person-npo-v1")
    make_adapter(root, "person-npo-v2")
    return root


Start = Callable[..., RunningGateway]


@pytest.fixture
def gateway(
    replicas: tuple[FakeUpstream, FakeUpstream], store: Path, tmp_path: Path
) -> Iterator[Start]:
    """Gateways in front of the two replicas; completions go to replica a (the Service)."""
    stack = ExitStack()
    started: list[RunningGateway] = []

    def start(
        mode: str = "unlearn", adapter: str = "person-npo-v1", **extra: Any
    ) -> RunningGateway:
        policies = tmp_path / f"policies-{len(started)}"
        write_policy(policies, mode, adapter)
        settings: dict[str, Any] = {
            "upstream": replicas[0].url,
            "engine_endpoints": (replicas[0].url, replicas[1].url),
            "adapter_dir": store,
            "engine_adapter_dir": ENGINE_STORE,
            "admin_key": ADMIN,
            "policies": policies,
            "adapter_sync_interval_s": 0.3,
        }
        settings.update(extra)
        started.append(stack.enter_context(run_gateway(**settings)))
        return started[-1]

    with stack:
        yield start


def _chat(gw: RunningGateway) -> dict[str, Any]:
    body = {
        "model": "fake-model",
        "messages": [{"role": "user", "content": "her phone?"}],
        **script(text=f"It is {PHONE}."),
    }
    response = httpx.post(gw.url + "/v1/chat/completions", json=body, timeout=10)
    reply: dict[str, Any] = response.json()
    return reply


def _adapters(gw: RunningGateway) -> list[dict[str, Any]]:
    auth = {"authorization": f"Bearer {ADMIN}"}
    rows: list[dict[str, Any]] = httpx.get(gw.url + "/admin/adapters", headers=auth).json()[
        "adapters"
    ]
    return rows


def _eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def test_every_replica_gets_the_adapter_under_the_engines_path(
    gateway: Start, replicas: tuple[FakeUpstream, FakeUpstream], store: Path
) -> None:
    gw = gateway()
    for replica in replicas:
        assert replica.recorder.adapters == {NAME: f"{ENGINE_STORE}/person-npo-v1"}
        assert str(store) not in json.dumps(replica.recorder.lora_loads), "gateway path leaked"
    (row,) = _adapters(gw)
    assert row["state"] == "loaded"
    assert row["path"] == str(store / "person-npo-v1")
    assert row["engine_path"] == f"{ENGINE_STORE}/person-npo-v1"
    assert {r["state"] for r in row["engines"].values()} == {"loaded"}
    assert set(row["engines"]) == {r.url for r in replicas}
    _chat(gw)
    assert replicas[0].recorder.requests[-1]["model"] == NAME


def test_an_absolute_adapter_path_inside_the_store_is_translated(
    gateway: Start, replicas: tuple[FakeUpstream, FakeUpstream], store: Path
) -> None:
    gateway(adapter=str(store / "person-npo-v2"))
    assert replicas[1].recorder.adapters == {NAME: f"{ENGINE_STORE}/person-npo-v2"}


def test_an_adapter_outside_the_store_is_refused_and_the_policy_keeps_its_filters(
    gateway: Start, replicas: tuple[FakeUpstream, FakeUpstream], tmp_path: Path
) -> None:
    elsewhere = make_adapter(tmp_path / "not-the-store", "person-npo")
    gw = gateway(adapter=str(elsewhere))
    (row,) = _adapters(gw)
    assert row["state"] == "failed"
    assert "outside the adapter store" in row["error"] and ENGINE_STORE in row["error"]
    assert not replicas[0].recorder.lora_loads and not replicas[1].recorder.lora_loads
    assert _chat(gw)["choices"][0]["message"]["content"] == "It is [REDACTED]."


def test_a_restarted_replica_gets_the_adapter_back_and_the_other_is_left_alone(
    gateway: Start, replicas: tuple[FakeUpstream, FakeUpstream]
) -> None:
    gateway()
    a, b = replicas
    assert len(a.recorder.lora_loads) == len(b.recorder.lora_loads) == 1
    b.recorder.adapters.clear()  # what an engine restart does to runtime adapters
    _eventually(lambda: NAME in b.recorder.adapters)
    time.sleep(1.0)  # a few more sync rounds
    assert len(b.recorder.lora_loads) == 2
    assert len(a.recorder.lora_loads) == 1, "a replica that holds the adapter is not reloaded"
    assert not a.recorder.lora_unloads and not b.recorder.lora_unloads


def test_a_replica_that_cannot_load_keeps_the_policy_on_filters_until_it_can(
    gateway: Start, replicas: tuple[FakeUpstream, FakeUpstream]
) -> None:
    a, b = replicas
    b.recorder.refuse_loads = "cannot read /adapters/person-npo-v1"
    gw = gateway()
    (row,) = _adapters(gw)
    assert row["state"] == "failed"
    assert row["engines"][a.url]["state"] == "loaded"
    assert row["engines"][b.url]["state"] == "failed"
    assert "cannot read /adapters/person-npo-v1" in row["engines"][b.url]["error"]
    reply = _chat(gw)
    assert a.recorder.requests[-1]["model"] == "fake-model", "fail closed: base model"
    assert reply["choices"][0]["message"]["content"] == "It is [REDACTED]."
    metrics = httpx.get(gw.url + "/metrics").text
    assert 'lethe_adapter_engines_missing{policy="person"} 1.0' in metrics
    b.recorder.refuse_loads = None
    _eventually(lambda: _adapters(gw)[0]["state"] == "loaded")
    _chat(gw)
    assert a.recorder.requests[-1]["model"] == NAME
    metrics = httpx.get(gw.url + "/metrics").text
    assert 'lethe_adapter_engines_missing{policy="person"} 0.0' in metrics


def test_a_replica_that_does_not_answer_does_not_block_the_others(
    gateway: Start, replicas: tuple[FakeUpstream, FakeUpstream]
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    gw = gateway(engine_endpoints=(replicas[0].url, replicas[1].url, dead))
    (row,) = _adapters(gw)
    assert row["state"] == "loaded"
    assert row["engines"][dead]["state"] == "unreachable"


def test_more_gateways_load_nothing_and_unload_nothing(
    gateway: Start, replicas: tuple[FakeUpstream, FakeUpstream], store: Path, tmp_path: Path
) -> None:
    first = gateway()
    loads = [len(r.recorder.lora_loads) for r in replicas]
    for _ in range(2):  # scale out, then back in
        with run_gateway(
            upstream=replicas[0].url,
            engine_endpoints=(replicas[0].url, replicas[1].url),
            adapter_dir=store,
            engine_adapter_dir=ENGINE_STORE,
            policies=first.settings.policies,
            adapter_sync_interval_s=0.3,
        ) as extra:
            assert _adapters_state(extra) == "loaded"
            _chat(extra)
            assert replicas[0].recorder.requests[-1]["model"] == NAME
    time.sleep(1.0)
    assert [len(r.recorder.lora_loads) for r in replicas] == loads
    assert not any(r.recorder.lora_unloads for r in replicas)
    assert all(NAME in r.recorder.adapters for r in replicas)
    _chat(first)
    assert replicas[0].recorder.requests[-1]["model"] == NAME


def _adapters_state(gw: RunningGateway) -> str:
    rows = gw.runtime.adapters.list()
    return str(rows[0].state) if rows else "none"


def test_a_new_adapter_version_is_swapped_in_place_on_every_replica(
    gateway: Start, replicas: tuple[FakeUpstream, FakeUpstream]
) -> None:
    gw = gateway()
    assert gw.settings.policies is not None
    write_policy(gw.settings.policies, "unlearn", "person-npo-v2")
    reload = httpx.post(gw.url + "/admin/reload", headers={"authorization": f"Bearer {ADMIN}"})
    assert reload.status_code == 200
    for replica in replicas:
        assert replica.recorder.adapters == {NAME: f"{ENGINE_STORE}/person-npo-v2"}
        assert replica.recorder.lora_loads[-1]["load_inplace"] is True
        assert not replica.recorder.lora_unloads, "the name never disappears"


@pytest.mark.parametrize(("unload", "left"), [(True, {}), (False, {NAME: "kept"})])
def test_removing_the_policy_unloads_from_every_replica_unless_told_not_to(
    gateway: Start, replicas: tuple[FakeUpstream, FakeUpstream], unload: bool, left: dict[str, str]
) -> None:
    gw = gateway(adapter_unload_on_removal=unload)
    assert gw.settings.policies is not None
    write_policy(gw.settings.policies, "suppress", "person-npo-v1")
    reload = httpx.post(gw.url + "/admin/reload", headers={"authorization": f"Bearer {ADMIN}"})
    assert reload.status_code == 200
    time.sleep(1.0)  # sync rounds must not bring it back
    for replica in replicas:
        assert set(replica.recorder.adapters) == set(left)
        assert replica.recorder.lora_unloads == ([NAME] if unload else [])
    _chat(gw)
    assert replicas[0].recorder.requests[-1]["model"] == "fake-model"


def test_the_engine_key_reaches_every_replica(
    replicas: tuple[FakeUpstream, FakeUpstream], store: Path, tmp_path: Path
) -> None:
    for replica in replicas:
        replica.recorder.api_key = "engine-key"
    policies = tmp_path / "policies"
    write_policy(policies, "unlearn", "person-npo-v1")
    with run_gateway(
        upstream=replicas[0].url,
        engine_endpoints=tuple(r.url for r in replicas),
        adapter_dir=store,
        engine_adapter_dir=ENGINE_STORE,
        policies=policies,
        upstream_api_key="engine-key",
    ) as gw:
        assert _adapters_state(gw) == "loaded"
    for replica in replicas:
        assert NAME in replica.recorder.adapters
        assert set(replica.recorder.authorizations) == {"Bearer engine-key"}


def test_engine_adapter_dir_without_adapter_dir_refuses_to_start(
    replicas: tuple[FakeUpstream, FakeUpstream],
) -> None:
    with pytest.raises(RuntimeError, match="gateway failed to start"), run_gateway(
        upstream=replicas[0].url, engine_adapter_dir=ENGINE_STORE
    ):
        pass


# --- discovery -----------------------------------------------------------------------------


async def test_discovery_finds_one_replica_per_address_on_the_services_port() -> None:
    """A headless Service: one name, one A record per pod, every pod on the same port. The
    two replicas listen on two loopback addresses; the resolver stands in for cluster DNS."""
    port = free_port()
    with FakeUpstream("127.0.0.1", port) as a, FakeUpstream("127.0.0.2", port) as b:
        answers = {"engine-pods.ai.svc": ["127.0.0.2", "127.0.0.1"]}

        async def resolver(host: str, _port: int) -> list[str]:
            return sorted(answers[host])

        settings = Settings(engine_discovery=f"http://engine-pods.ai.svc:{port}")
        default = Upstream(a.url)
        pool = EnginePool(settings, default, api_key=None, resolver=resolver)
        try:
            found = await pool.replicas()
            assert [r.url for r in found] == [a.url, b.url]
            for replica in found:
                status, _ = await replica.client.exchange("GET", "/v1/models")
                assert status == 200
            answers["engine-pods.ai.svc"] = ["127.0.0.2"]  # pod a went away
            assert [r.url for r in await pool.replicas()] == [b.url]
        finally:
            await pool.aclose()
            await default.aclose()


async def test_discovery_uses_the_system_resolver() -> None:
    port = free_port()
    settings = Settings(engine_discovery=f"http://localhost:{port}")
    default = Upstream(f"http://localhost:{port}")
    pool = EnginePool(settings, default, api_key=None)
    try:
        assert [r.url for r in await pool.replicas()] == [f"http://127.0.0.1:{port}"]
    finally:
        await pool.aclose()
        await default.aclose()


async def test_without_a_list_or_discovery_the_upstream_is_the_only_replica() -> None:
    default = Upstream("http://127.0.0.1:9")
    pool = EnginePool(Settings(), default, api_key=None)
    assert [(r.url, r.client) for r in await pool.replicas()] == [(default.base_url, default)]
    await default.aclose()
