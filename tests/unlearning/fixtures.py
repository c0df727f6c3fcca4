"""Fixtures on the real bundled model: a small memorized target and one small adapter
per method, trained once and shared by the unlearning and adapter-registry tests.

Test-sized on purpose (a handful of facts, a dozen steps): the full-sized runs are
`lethe unlearning memorize` and `lethe unlearning train`, measured in the README.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from unlearning import corpus
from unlearning.memorize import MemorizeConfig, MemorizeResult, memorize
from unlearning.methods import UnlearnResult, get

FORGET_PROBES = 6
RETAIN_PROBES = 6

# Test-sized hyper-parameters, tuned on this 2-core CPU (see the README's table for full runs).
SMALL_MEMORIZE = MemorizeConfig(
    epochs=14, batch_size=12, learning_rate=3e-4, target_recall=0.9, check_below_loss=0.15
)
SMALL_METHODS: dict[str, dict[str, object]] = {
    "ga": {"steps": 8, "learning_rate": 1e-3, "rank": 8, "batch_size": 6},
    "graddiff": {"steps": 7, "learning_rate": 1e-3, "rank": 8, "batch_size": 6},
    "npo": {"steps": 10, "learning_rate": 1e-3, "rank": 8, "batch_size": 6},
}


# Module-level caches: these fixtures are imported by tests/gateway/test_adapters.py too, and a
# second fixture definition must not train everything again in the same session.
_TARGET: dict[str, MemorizeResult] = {}
_TRAINED: dict[str, UnlearnResult] = {}


@pytest.fixture(scope="session")
def base_model() -> Path:
    from gateway import bundle

    return bundle.prepare().generator


@pytest.fixture(scope="session")
def small_forget() -> corpus.TextSet:
    full = corpus.forget_set(corpus.PERSON_POLICY)
    probes = full.probe_qa[:FORGET_PROBES]
    return corpus.TextSet(name="elena-small", qa=probes, probe_qa=probes)


@pytest.fixture(scope="session")
def small_retain() -> corpus.TextSet:
    full = corpus.retain_set()
    probes = full.probe_qa[:RETAIN_PROBES]
    names = [
        p["name"] for p in corpus.load_people() if any(p["name"] in q.question for q in probes)
    ]
    # Retain-loss material: templated questions on people the probes do not ask about.
    extra = tuple(q for q in full.qa if q not in probes and not any(n in q.question for n in names))
    return corpus.TextSet(name="retain-small", qa=probes + extra[:12], probe_qa=probes)


@pytest.fixture(scope="session")
def small_target(
    base_model: Path,
    small_forget: corpus.TextSet,
    small_retain: corpus.TextSet,
    tmp_path_factory: pytest.TempPathFactory,
) -> MemorizeResult:
    memorized = corpus.TextSet(
        name="memorize-small",
        qa=small_forget.qa + small_retain.probe_qa,
        probe_qa=small_forget.probe_qa + small_retain.probe_qa,
    )
    if "target" not in _TARGET:
        from gateway.bundle import cache_dir

        # memorize() reuses this directory while its manifest matches the data, base weights
        # and hyper-parameters: a fresh clone trains it (about 14 min on a busy 2-core CPU).
        out = cache_dir() / "test-models" / "small-target"
        _TARGET["target"] = memorize(base_model, out, memorized, "target", SMALL_MEMORIZE)
    return _TARGET["target"]


@pytest.fixture(scope="session")
def trained(
    small_target: MemorizeResult,
    small_forget: corpus.TextSet,
    small_retain: corpus.TextSet,
    tmp_path_factory: pytest.TempPathFactory,
) -> Callable[[str], UnlearnResult]:
    """method name -> its small adapter, trained on first use."""
    cache = _TRAINED
    root = tmp_path_factory.mktemp("adapters")

    def train(method: str) -> UnlearnResult:
        if method not in cache:
            cls = get(method)
            cache[method] = cls(**SMALL_METHODS[method]).run(  # type: ignore[arg-type]
                target=small_target.out,
                policy=corpus.PERSON_POLICY,
                out=root / f"{corpus.PERSON_POLICY}-{method}",
                forget=small_forget,
                retain=small_retain,
            )
        return cache[method]

    return train
