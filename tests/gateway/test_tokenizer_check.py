"""The gateway's tokenizer is checked against the engine's before token bans are trusted.

The fake engine tokenizes with a real Hugging Face tokenizer (`Recorder.tokenizer`), as vLLM's
/tokenize and /detokenize do with the served model's.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from stack import bundle
from tests.fakes.upstream import FakeUpstream
from tests.servers import RunningGateway, run_gateway

SMOLLM2 = bundle.model_paths().generator
MINILM = bundle.model_paths().embedder

BANS_POLICY = """\
name: franchise
stages: [output]
action: refuse
data:
  literals: [Hogwarts, Dumbledore]
filters:
  - type: logit_bias
"""
PII_POLICY = """\
name: person
stages: [output]
action: redact
data:
  pii:
    phone: 415-555-0199
filters:
  - type: pii
"""


def _tokenizer(path: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path))


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The served model's tokenizer, another model's, and the served one with one token more
    (same ids for every probe text: only the vocabulary size tells them apart)."""
    if not (SMOLLM2 / "tokenizer.json").is_file() or not (MINILM / "tokenizer.json").is_file():
        pytest.skip("model bundle not prepared (lethe models prepare)")
    grown = tmp_path_factory.mktemp("grown-tokenizer")
    tok = _tokenizer(SMOLLM2)
    tok.add_tokens(["<lethe-extra-token>"])
    tok.save_pretrained(grown)
    return {"served": SMOLLM2, "other-model": MINILM, "one-more-token": grown}


@pytest.fixture
def engine() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        fake.recorder.tokenizer = _tokenizer(SMOLLM2)
        yield fake


def _policies(tmp_path: Path, text: str) -> Path:
    directory = tmp_path / "policies"
    directory.mkdir()
    (directory / "policy.yaml").write_text(text)
    return directory


def _readiness(gw: RunningGateway) -> tuple[int, dict[str, Any]]:
    response = httpx.get(gw.url + "/readyz", timeout=10)
    return response.status_code, response.json()


def test_the_served_models_tokenizer_is_checked_and_the_gateway_is_ready(
    engine: FakeUpstream, tokenizers: dict[str, Path], tmp_path: Path
) -> None:
    with run_gateway(
        upstream=engine.url,
        policies=_policies(tmp_path, BANS_POLICY),
        tokenizer_dir=tokenizers["served"],
    ) as gw:
        status, body = _readiness(gw)
    assert status == 200
    assert body["tokenizer"]["state"] == "match"
    assert "vocabulary of 49152" in body["tokenizer"]["detail"]


@pytest.mark.parametrize(
    ("gateway_tokenizer", "complaint"),
    [
        ("other-model", "is not the served model 'fake-model'"),
        ("one-more-token", "has 49153 tokens"),
    ],
)
def test_a_tokenizer_that_is_not_the_served_models_refuses_to_start(
    engine: FakeUpstream,
    tokenizers: dict[str, Path],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    gateway_tokenizer: str,
    complaint: str,
) -> None:
    with pytest.raises(RuntimeError, match="gateway failed to start"), run_gateway(
        upstream=engine.url,
        policies=_policies(tmp_path, BANS_POLICY),
        tokenizer_dir=tokenizers[gateway_tokenizer],
    ):
        pass
    (failure,) = [r.getMessage() for r in caplog.records if "tokenizer check failed" in r.message]
    assert complaint in failure
    assert str(tokenizers[gateway_tokenizer]) in failure


def test_an_engine_with_more_tokens_than_the_gateway_is_a_mismatch(
    tokenizers: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with FakeUpstream() as engine:
        engine.recorder.tokenizer = _tokenizer(tokenizers["one-more-token"])
        with pytest.raises(RuntimeError, match="gateway failed to start"), run_gateway(
            upstream=engine.url,
            policies=_policies(tmp_path, BANS_POLICY),
            tokenizer_dir=tokenizers["served"],
        ):
            pass
    assert "has more tokens than the tokenizer" in caplog.text


def test_no_check_when_no_policy_bans_tokens(
    engine: FakeUpstream, tokenizers: dict[str, Path], tmp_path: Path
) -> None:
    with run_gateway(
        upstream=engine.url,
        policies=_policies(tmp_path, PII_POLICY),
        tokenizer_dir=tokenizers["other-model"],
    ) as gw:
        status, body = _readiness(gw)
    assert status == 200 and body["tokenizer"]["state"] == "unchecked"


def test_check_off_lets_a_mismatch_start(
    engine: FakeUpstream, tokenizers: dict[str, Path], tmp_path: Path
) -> None:
    with run_gateway(
        upstream=engine.url,
        policies=_policies(tmp_path, BANS_POLICY),
        tokenizer_dir=tokenizers["other-model"],
        tokenizer_check="off",
    ) as gw:
        assert _readiness(gw)[0] == 200


def test_an_engine_without_tokenize_is_reported_unverifiable_not_refused(
    tokenizers: dict[str, Path], tmp_path: Path
) -> None:
    with FakeUpstream() as engine, run_gateway(
        upstream=engine.url,
        policies=_policies(tmp_path, BANS_POLICY),
        tokenizer_dir=tokenizers["served"],
    ) as gw:
        status, body = _readiness(gw)
    assert status == 200
    assert body["tokenizer"] == {
        "state": "unverifiable",
        "detail": "the engine has no /tokenize (not vLLM?)",
    }


def test_an_engine_that_is_not_up_yet_is_checked_when_it_answers(
    tokenizers: dict[str, Path], tmp_path: Path
) -> None:
    late = FakeUpstream()
    late.recorder.tokenizer = _tokenizer(SMOLLM2)
    with run_gateway(
        upstream=late.url,
        policies=_policies(tmp_path, BANS_POLICY),
        tokenizer_dir=tokenizers["served"],
        adapter_sync_interval_s=0.5,
    ) as gw:
        status, body = _readiness(gw)
        assert status == 503 and body["tokenizer"]["state"] == "unreachable"
        with late:
            deadline = time.monotonic() + 15
            while _readiness(gw)[0] != 200 and time.monotonic() < deadline:
                time.sleep(0.2)
            status, body = _readiness(gw)
    assert status == 200 and body["tokenizer"]["state"] == "match"
