"""Session-scoped real servers: one fake upstream, one vLLM-CPU engine, gateways in front."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from stack.processes import free_port
from tests.fakes.upstream import FakeUpstream
from tests.servers import RunningGateway, run_gateway

ROOT = Path(__file__).resolve().parent.parent
POLICIES = ROOT / "policies"
DECODE_POLICIES = ROOT / "tests" / "decoding" / "policies"
SERVED_MODEL = "smollm2-135m-instruct"


@pytest.fixture(scope="session")
def fake_upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        yield fake


@pytest.fixture(scope="session")
def fake_gateway(fake_upstream: FakeUpstream) -> Iterator[RunningGateway]:
    """A gateway without policies in front of the scripted upstream."""
    with run_gateway(upstream=fake_upstream.url, first_byte_timeout_s=2.0) as gw:
        yield gw


@pytest.fixture(scope="session")
def engine() -> Iterator[object]:
    """The real vLLM-CPU server on the bundled SmolLM2 model, started once per session."""
    from stack import bundle
    from stack.engine import Engine

    paths = bundle.prepare()
    port = int(os.environ.get("LETHE_TEST_ENGINE_PORT", "0")) or free_port()
    # With Lethe's decoding processor, indexing the test decode policies: a no-op for every
    # request that names no policy, so one engine serves the whole session.
    eng = Engine(
        paths.generator, served_model_name=SERVED_MODEL, port=port, decode_policies=DECODE_POLICIES
    )
    eng.start()
    try:
        eng.wait_healthy(timeout=600)
        yield eng
    finally:
        eng.stop()


@pytest.fixture(scope="session")
def engine_gateway(engine: object) -> Iterator[RunningGateway]:
    """A gateway without policies in front of the real engine."""
    with run_gateway(upstream=engine.base_url) as gw:  # type: ignore[attr-defined]
        yield gw


@pytest.fixture(scope="session")
def policy_gateway(engine: object) -> Iterator[RunningGateway]:
    """The gateway with the shipped default policies in front of the real engine."""
    with run_gateway(upstream=engine.base_url, policies=POLICIES) as gw:  # type: ignore[attr-defined]
        yield gw
