"""Arm configuration: YAML of existing endpoints, and the per-arm policy directories."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from evaluation.arms import (
    ArmConfigError,
    GatewayProcess,
    GatewayStartError,
    adapter_routed,
    decode_plan,
    load_arms,
    write_policies,
)
from gateway.policy import load_directory
from tests.fakes.upstream import FakeUpstream

ROOT = Path(__file__).resolve().parents[2]


def test_arms_yaml_with_weights_and_per_target_endpoints(tmp_path: Path) -> None:
    path = tmp_path / "arms.yaml"
    path.write_text(
        "arms:\n"
        "  - {name: target, base_url: 'http://h:1/v1', model: m}\n"
        "  - name: unlearn\n    kind: gateway\n    base_url: 'http://h:2/v1'\n    model: m\n"
        "    api_key: k\n    weights: {base_url: 'http://h:1/v1', model: lora}\n"
        "    targets: {elena-marquez: {base_url: 'http://h:3/v1', model: m}}\n"
    )
    target, unlearn = load_arms(path)
    assert target.kind == "direct" and target.weights_for("x") == target.endpoint
    assert unlearn.endpoint_for("elena-marquez").base_url == "http://h:3/v1"  # type: ignore[union-attr]
    assert unlearn.endpoint_for("harry-potter").base_url == "http://h:2/v1"  # type: ignore[union-attr]
    assert unlearn.weights_for("harry-potter").model == "lora"  # type: ignore[union-attr]
    assert unlearn.endpoint.api_key == "k"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("arms: []\n", "non-empty list"),
        ("arms:\n  - {base_url: u, model: m}\n", "needs a name"),
        ("arms:\n  - {name: a, model: m}\n", "needs base_url and model"),
        ("arms:\n  - {name: a, base_url: u, model: m, colour: red}\n", "unknown keys"),
        ("arms:\n  - {name: a, base_url: u, model: m, kind: proxy}\n", "kind must be"),
        ("arms:\n  - {name: a, base_url: u, model: m}\n  - {name: a, base_url: u, model: m}\n",
         "unique"),
    ],
)
def test_bad_arm_configs_fail_with_the_reason(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "arms.yaml"
    path.write_text(text)
    with pytest.raises(ArmConfigError, match=message):
        load_arms(path)


def test_policy_copy_sets_modes_and_adapters_and_stays_valid(tmp_path: Path) -> None:
    adapter = tmp_path / "adapters" / "elena-marquez-npo"
    adapter.mkdir(parents=True)
    out = write_policies(tmp_path / "policies", {"elena-marquez": "unlearn",
                                                 "protected-work": "suppress"},
                         {"elena-marquez": adapter})
    specs = {f.spec.name: f.spec for f in load_directory(out)}
    assert specs["elena-marquez"].mode == "unlearn"
    assert specs["elena-marquez"].adapter is not None
    assert specs["elena-marquez"].adapter.path == str(adapter)
    assert specs["elena-marquez"].adapter.method == "npo"
    assert specs["protected-work"].mode == "suppress"
    assert specs["harry-potter"].mode == "off"


@pytest.mark.parametrize(
    ("status", "routed"),
    [("unavailable: no adapter loaded, suppression filters enforced instead", False),
     ("not requested", False), ("", False), ("loaded as elena-marquez-npo", True)],
)
def test_adapter_routing_status(status: str, routed: bool) -> None:
    assert adapter_routed(status) is routed


def test_a_killed_evaluation_leaves_no_gateway_behind(
    tmp_path: Path, fake_upstream: FakeUpstream
) -> None:
    """The evaluation's gateways die with it, even when it is killed without cleaning up."""
    policies = tmp_path / "policies"
    policies.mkdir()
    program = (
        "import sys, os\n"
        "from pathlib import Path\n"
        "from evaluation.arms import GatewayProcess\n"
        f"gw = GatewayProcess({fake_upstream.url!r}, Path({str(policies)!r}), "
        f"Path({str(tmp_path / 'gw.log')!r}), 'admin')\n"
        "gw.wait_ready(60)\n"
        "print(gw.url, flush=True)\n"
        "os._exit(0)\n"
    )
    out = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                         timeout=120, cwd=ROOT, check=True)
    url = out.stdout.strip()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(url + "/healthz", timeout=1)
        except httpx.HTTPError:
            return
        time.sleep(0.5)
    raise AssertionError(f"the gateway at {url} outlived the evaluation that started it")


@pytest.mark.parametrize(("upstream_timeout_s", "status"), [(1.0, 504), (8.0, 200)])
def test_evaluation_gateways_wait_for_the_engine_as_long_as_told(
    tmp_path: Path, fake_upstream: FakeUpstream, upstream_timeout_s: float, status: int
) -> None:
    """A first byte 2.5 s late: a 504 under a 1 s budget, an answer under 8 s (the gateway's
    own default is 60 s, so the 504 shows the budget reached the gateway)."""
    policies = tmp_path / "policies"
    policies.mkdir()
    gw = GatewayProcess(fake_upstream.url, policies, tmp_path / "gw.log", "admin",
                        upstream_timeout_s=upstream_timeout_s)
    try:
        gw.wait_ready(60)
        response = httpx.post(gw.url + "/v1/chat/completions", timeout=30, json={
            "model": "fake-model", "messages": [{"role": "user", "content": "hi"}],
            "fake": {"text": "hello", "first_byte_s": 2.5}})
        assert response.status_code == status, response.text
    finally:
        gw.stop()


def test_decode_arm_indexes_corpus_literals_and_the_persons_values(tmp_path: Path) -> None:
    modes, literals, skipped = decode_plan(["elena-marquez", "protected-work", "harry-potter"])
    assert modes == {"elena-marquez": "decode", "protected-work": "decode",
                     "harry-potter": "decode"}
    assert "415-555-0199" in literals["elena-marquez"]
    # the work's corpus file and the concept's own literals are indexed as they are
    assert set(literals) == {"elena-marquez"} and not skipped
    out = write_policies(tmp_path / "decode", modes, {}, literals)
    specs = {f.spec.name: f.spec for f in load_directory(out)}
    assert specs["elena-marquez"].mode == "decode"
    assert "elena.marquez@example.org" in specs["elena-marquez"].data.literals
    assert "Hogwarts" in specs["harry-potter"].data.literals


def test_decode_arm_skips_a_policy_with_nothing_to_index() -> None:
    modes, _, skipped = decode_plan(["no-such-policy"])
    assert modes == {} and skipped == {}


def test_a_gateway_that_cannot_start_raises_gateway_start_error_with_its_log(
    tmp_path: Path, fake_upstream: FakeUpstream
) -> None:
    """LocalStack turns this error into an unavailable arm, so the other arms still run."""
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "broken.yaml").write_text("name: broken\nmode: suppress\nfilters: []\n")
    gw = GatewayProcess(fake_upstream.url, policies, tmp_path / "gw.log", "admin")
    try:
        with pytest.raises(GatewayStartError, match="gateway exited"):
            gw.wait_ready(120)
    finally:
        gw.stop()
