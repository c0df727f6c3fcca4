"""Policy mode `decode`: the gateway names the policy to the engine's decoding processor when
the engine holds the same version of it, and falls back to the policy's filters otherwise.

The engine is a fake vLLM that validates `vllm_xargs` with the processor's own check
(tests/fakes/decoding_engine.py). That the processor masks tokens is tested on the real engine
in tests/decoding/test_memfree_engine.py; here the fake answers protected text regardless, so
a delivered answer means "the gateway trusted the engine" and a blocked one "filters ran".
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from decoding.policies import read_policy
from tests.fakes.decoding_engine import MODEL, FakeDecodingEngine
from tests.servers import RunningGateway, run_gateway

ADMIN = "admin-secret-for-decode-tests"
CORPUS = (
    "On the morning the tide forgot to come back, Ysolde Harrowick was already awake, sitting "
    "cross-legged on the roof of the chartmaker's tower with a cup of bitter thornleaf tea."
)
# 20 consecutive corpus words: the verbatim filter (min_words 12) blocks it when it runs.
RECITAL = " ".join(CORPUS.split()[:20])


def write_policy(root: Path, mode: str) -> Path:
    (root / "data").mkdir(exist_ok=True)
    (root / "data" / "work.txt").write_text(CORPUS)
    path = root / "work.yaml"
    path.write_text(
        f"name: work\nmode: {mode}\nstages: [output]\naction: block\n"
        "data:\n  corpus_file: data/work.txt\n"
        "filters:\n  - type: verbatim\n    min_words: 12\n"
    )
    return path


def digest(path: Path) -> str:
    source = read_policy(path)
    assert source is not None
    return source.digest


class Setup:
    def __init__(self, engine: FakeDecodingEngine, gateway: RunningGateway, path: Path) -> None:
        self.engine = engine
        self.gateway = gateway
        self.path = path

    def complete(self, **extra: Any) -> httpx.Response:
        body = {"model": MODEL, "prompt": "Tell me about the book.", "max_tokens": 30, **extra}
        return httpx.post(f"{self.gateway.url}/v1/completions", json=body, timeout=30)

    def admin_row(self) -> dict[str, Any]:
        answer = httpx.get(
            f"{self.gateway.url}/admin/policies",
            headers={"authorization": f"Bearer {ADMIN}"},
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
        (row,) = answer.json()["policies"]
        return row

    def fallbacks(self) -> float:
        text = httpx.get(f"{self.gateway.url}/metrics", timeout=10).text
        for line in text.splitlines():
            if line.startswith('lethe_decode_fallbacks_total{policy="work"}'):
                return float(line.split()[-1])
        return 0.0


@pytest.fixture
def setup(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Setup]:
    """param: (policy mode, what the engine holds: "same", "other", "none", or "off" for a
    gateway told not to rely on the engine)."""
    mode, holds = request.param
    path = write_policy(tmp_path, mode)
    manifest = {
        "same": {"work": digest(path)},
        "other": {"work": "0123456789abcdef"},
        "off": {"work": digest(path)},
        "none": None,
    }[holds]
    settings = {"engine_decode": "off"} if holds == "off" else {}
    with (
        FakeDecodingEngine(RECITAL, manifest) as engine,
        run_gateway(upstream=engine.url, policies=tmp_path, admin_key=ADMIN, **settings) as gw,
    ):
        yield Setup(engine, gw, path)


def _text(answer: httpx.Response) -> str:
    assert answer.status_code == 200, answer.text
    return str(answer.json()["choices"][0]["text"])


@pytest.mark.parametrize("setup", [("decode", "same")], indirect=True)
def test_a_decode_policy_the_engine_holds_is_named_to_it_and_its_filters_stand_aside(setup):
    answer = setup.complete()
    assert _text(answer) == RECITAL  # the fake does not mask: only the real engine does
    sent = setup.engine.requests[-1]
    assert sent["vllm_xargs"] == {"lethe_policies": [f"work@{digest(setup.path)}"]}
    assert setup.fallbacks() == 0
    assert setup.admin_row()["decoding"].startswith("enforced by the engine (work@")


@pytest.mark.parametrize(
    ("setup", "why"),
    [
        (("decode", "none"), "without the lethe decoding processor"),
        (("decode", "other"), "another version of this policy"),
        (("decode", "off"), "LETHE_ENGINE_DECODE=off"),
    ],
    indirect=["setup"],
)
def test_a_decode_policy_the_engine_does_not_enforce_falls_back_to_its_filters(setup, why):
    answer = setup.complete()
    assert RECITAL not in answer.text
    assert answer.json()["choices"][0]["finish_reason"] == "content_filter"
    assert "lethe_policies" not in (setup.engine.requests[-1].get("vllm_xargs") or {})
    assert setup.fallbacks() == 1
    status = setup.admin_row()["decoding"]
    assert status.startswith("unavailable") and why in status
    assert status.endswith("output filters enforced instead")


@pytest.mark.parametrize("setup", [("decode", "off")], indirect=True)
def test_a_gateway_told_not_to_rely_on_the_engine_never_probes_it(setup):
    setup.complete()
    assert setup.engine.probes == 0


@pytest.mark.parametrize("setup", [("both", "same")], indirect=True)
def test_mode_both_names_the_policy_to_the_engine_and_keeps_its_filters(setup):
    answer = setup.complete()
    assert answer.json()["choices"][0]["finish_reason"] == "content_filter"
    assert setup.engine.requests[-1]["vllm_xargs"]["lethe_policies"] == [
        f"work@{digest(setup.path)}"
    ]


CLIENT_XARGS = [
    {"lethe_policies": []},
    {"lethe_policies": ["other@0"]},
    {"lethe_policies": None, "lethe_probe": 1},
    {"LETHE_policies": []},
]


@pytest.mark.parametrize("setup", [("decode", "same")], indirect=True)
@pytest.mark.parametrize("xargs", CLIENT_XARGS)
def test_a_client_cannot_unset_or_replace_the_engines_policies(setup, xargs):
    answer = setup.complete(vllm_xargs=xargs)
    if answer.status_code == 400:  # refused outright by the allow-list: also fine
        return
    sent = setup.engine.requests[-1]["vllm_xargs"]
    assert sent["lethe_policies"] == [f"work@{digest(setup.path)}"]
    assert "lethe_probe" not in sent


@pytest.mark.parametrize("setup", [("decode", "same")], indirect=True)
def test_logprobs_are_not_asked_for_while_the_engine_masks(setup):
    # Logprobs come from the logits before the processor runs: they would show, at every
    # step, the protected token the processor masked.
    setup.complete(logprobs=5, prompt_logprobs=1, return_token_ids=True)
    sent = setup.engine.requests[-1]
    assert not {"logprobs", "prompt_logprobs", "return_token_ids"} & set(sent)
