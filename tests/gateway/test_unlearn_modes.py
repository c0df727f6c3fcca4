"""Policy modes and adapter routing, over the scripted upstream (which speaks vLLM's LoRA API).

The real-vLLM side (an adapter trained here changes answers) is in tests/gateway/test_adapters.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fakes.upstream import FakeUpstream, script
from tests.servers import RunningGateway, run_gateway
from unlearning.manifest import required_fields

PHONE = "415-555-0199"
ADMIN = "admin-secret-for-tests"


def _adapter_dir(root: Path, name: str) -> Path:
    path = root / name
    path.mkdir()
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


def _policies(root: Path, mode: str, adapter: str) -> Path:
    pol = root / f"policies-{mode}-{Path(adapter).name}"
    pol.mkdir()
    (pol / "person.yaml").write_text(
        f"name: person\nmode: {mode}\naction: redact\nstages: [output]\n"
        f"data:\n  pii:\n    phone: {PHONE}\nfilters:\n  - type: pii\n"
        f"adapter:\n  path: {adapter}\n"
    )
    return pol


@pytest.fixture(scope="module")
def adapters(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("adapters")
    _adapter_dir(root, "good")
    _adapter_dir(root, "broken")
    return root


@pytest.fixture
def gateway_for(fake_upstream: FakeUpstream, adapters: Path, tmp_path: Path) -> Iterator[object]:
    stack = []

    def start(mode: str, adapter: str) -> RunningGateway:
        cm = run_gateway(
            upstream=fake_upstream.url,
            admin_key=ADMIN,
            policies=_policies(tmp_path, mode, str(adapters / adapter)),
        )
        stack.append(cm)
        return cm.__enter__()

    yield start
    for cm in reversed(stack):
        cm.__exit__(None, None, None)


def _chat(gw: RunningGateway, model: str = "fake-model") -> httpx.Response:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "her phone?"}],
        **script(text=f"It is {PHONE}."),
    }
    return httpx.post(gw.url + "/v1/chat/completions", json=body, timeout=10)


def _status(gw: RunningGateway) -> str:
    rows = httpx.get(
        gw.url + "/admin/policies", headers={"authorization": f"Bearer {ADMIN}"}
    ).json()["policies"]
    return str(rows[0]["unlearning"])


def test_unlearn_mode_routes_to_the_adapter_under_the_served_name(
    gateway_for: object, fake_upstream: FakeUpstream
) -> None:
    gw = gateway_for("unlearn", "good")  # type: ignore[operator]
    assert _status(gw) == "loaded as lethe-person"
    reply = _chat(gw)
    assert fake_upstream.recorder.requests[-1]["model"] == "lethe-person"
    assert reply.json()["model"] == "fake-model"
    # unlearn alone trusts the weights: the output filters are off for this policy.
    assert PHONE in reply.json()["choices"][0]["message"]["content"]


def test_both_mode_routes_to_the_adapter_and_keeps_filters(
    gateway_for: object, fake_upstream: FakeUpstream
) -> None:
    gw = gateway_for("both", "good")  # type: ignore[operator]
    reply = _chat(gw)
    assert fake_upstream.recorder.requests[-1]["model"] == "lethe-person"
    assert reply.json()["choices"][0]["message"]["content"] == "It is [REDACTED]."


@pytest.mark.parametrize("mode", ["unlearn", "both"])
def test_streamed_answer_from_adapter_carries_the_served_name(
    gateway_for: object, mode: str
) -> None:
    gw = gateway_for(mode, "good")  # type: ignore[operator]
    body = {
        "model": "fake-model",
        "stream": True,
        "messages": [{"role": "user", "content": "x"}],
        **script(text="plain words"),
    }
    raw = httpx.post(gw.url + "/v1/chat/completions", json=body, timeout=10).content
    assert b'"model":"fake-model"' in raw and b"lethe-person" not in raw


def test_broken_adapter_fails_closed_with_filters_on(
    gateway_for: object, fake_upstream: FakeUpstream
) -> None:
    gw = gateway_for("unlearn", "broken")  # type: ignore[operator]
    assert _status(gw).startswith("unavailable: ")
    reply = _chat(gw)
    assert fake_upstream.recorder.requests[-1]["model"] == "fake-model"
    assert reply.json()["choices"][0]["message"]["content"] == "It is [REDACTED]."


def test_missing_adapter_directory_fails_closed(gateway_for: object) -> None:
    gw = gateway_for("unlearn", "does-not-exist")  # type: ignore[operator]
    assert "does not exist" in _status(gw)
    assert _chat(gw).json()["choices"][0]["message"]["content"] == "It is [REDACTED]."


def test_clients_cannot_name_the_adapter_directly(gateway_for: object) -> None:
    gw = gateway_for("unlearn", "good")  # type: ignore[operator]
    assert _chat(gw, model="lethe-person").status_code == 404
    assert _chat(gw, model="fake-adapter").status_code == 404


def test_admin_can_unload_and_reload_adapters(
    gateway_for: object, fake_upstream: FakeUpstream
) -> None:
    gw = gateway_for("both", "good")  # type: ignore[operator]
    auth = {"authorization": f"Bearer {ADMIN}"}
    listed = httpx.get(gw.url + "/admin/adapters", headers=auth).json()["adapters"]
    assert [a["state"] for a in listed] == ["loaded"]
    assert httpx.get(gw.url + "/admin/adapters").status_code == 401
    r = httpx.post(gw.url + "/admin/adapters/unload", json={"policy": "person"}, headers=auth)
    assert r.json()["state"] == "unloaded" and "lethe-person" not in fake_upstream.recorder.adapters
    _chat(gw)
    assert fake_upstream.recorder.requests[-1]["model"] == "fake-model"
    r = httpx.post(gw.url + "/admin/adapters/load", json={"policy": "person"}, headers=auth)
    assert r.status_code == 200 and r.json()["state"] == "loaded"
    _chat(gw)
    assert fake_upstream.recorder.requests[-1]["model"] == "lethe-person"
