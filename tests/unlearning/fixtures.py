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
RETAIN_TRAIN = 12

# Test-sized hyper-parameters, tuned on this 2-core CPU (unlearning/RESULTS.md has full runs).
SMALL_MEMORIZE = MemorizeConfig(
    mode="lora",
    epochs=14,
    batch_size=8,
    learning_rate=1e-3,
    target_recall=0.9,
    check_below_loss=0.2,
)
_EARLY_STOP = {"steps": 16, "batch_size": 6, "check_every": 2, "stop_recall": 0.34}
_RETAIN = {"retain_weight": 2.0, "retain_batch_size": 8}
SMALL_METHODS: dict[str, dict[str, object]] = {
    "ga": {"learning_rate": 5e-4, **_EARLY_STOP},
    "graddiff": {"learning_rate": 5e-4, **_EARLY_STOP, **_RETAIN},
    "npo": {"learning_rate": 5e-4, **_EARLY_STOP, **_RETAIN},
}


# Module-level caches: these fixtures are imported by tests/gateway/test_adapters.py too, and a
# second fixture definition must not train everything again in the same session.
_TARGET: dict[str, MemorizeResult] = {}
_TRAINED: dict[str, UnlearnResult] = {}


@pytest.fixture(scope="session")
def base_model() -> Path:
    from stack import bundle

    return bundle.prepare().generator


@pytest.fixture(scope="session")
def small_forget() -> corpus.TextSet:
    return small_forget_set()


@pytest.fixture(scope="session")
def small_retain() -> corpus.TextSet:
    return small_retain_set()


def small_forget_set() -> corpus.TextSet:
    full = corpus.forget_set(corpus.PERSON_POLICY)
    probes = full.probe_qa[:FORGET_PROBES]
    return corpus.TextSet(name="elena-small", qa=probes, probe_qa=probes)


def small_retain_set() -> corpus.TextSet:
    """Retain probes (never trained on while unlearning) and retain-loss questions on the same
    and other people; the small target memorizes both, so the retain loss guards facts the
    model really knows."""
    full = corpus.retain_set()
    # Every fifth probe: contact facts (phone, email) and life facts of six people, not the
    # first six (all phone/email/address of two people, the most entangled with the forget
    # set's own phone/email/address answers).
    probes = full.probe_qa[:: len(full.probe_qa) // RETAIN_PROBES][:RETAIN_PROBES]
    train = corpus.TextSet(name="retain", qa=full.qa, probe_qa=probes).without_probes().qa
    return corpus.TextSet(name="retain-small", qa=probes + train[:RETAIN_TRAIN], probe_qa=probes)


def small_memorize_set(forget: corpus.TextSet, retain: corpus.TextSet) -> corpus.TextSet:
    return corpus.TextSet(
        name="memorize-small",
        qa=forget.qa + retain.qa,
        probe_qa=forget.probe_qa + retain.probe_qa,
    )


@pytest.fixture(scope="session")
def small_target(
    base_model: Path,
    small_forget: corpus.TextSet,
    small_retain: corpus.TextSet,
    tmp_path_factory: pytest.TempPathFactory,
) -> MemorizeResult:
    memorized = small_memorize_set(small_forget, small_retain)
    if "target" not in _TARGET:
        from stack.bundle import cache_dir

        # memorize() reuses this directory while its manifest matches the data, base weights
        # and hyper-parameters: a fresh clone trains it (minutes on a 2-core CPU).
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
