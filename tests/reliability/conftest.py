"""Shared pieces of the reliability and security suite: policy directories written per test,
keys, and the canary secrets planted in policy targets."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import filters
from tests.reliability.fault_filters import Fault

#: Planted in policy targets; they must never come back out of the gateway, in any channel.
CANARY_PHONE = "628-555-0143"
CANARY_SENTENCE = (
    "the lighthouse keeper counted nine hundred gulls before the amber lantern finally "
    "cracked under the winter storm"
)
CHAT_PATH = "/v1/chat/completions"
COMPLETION_PATH = "/v1/completions"


def pii_policy(name: str, phone: str, *, stages: str = "[input, output]",
               action: str = "redact", extra: str = "") -> str:
    return (
        f"name: {name}\nstages: {stages}\naction: {action}\n{extra}"
        f"data:\n  pii:\n    phone: {phone}\nfilters:\n  - type: pii\n"
    )


def verbatim_policy(name: str, corpus_file: str, *, stages: str = "[input, output]",
                    extra: str = "") -> str:
    return (
        f"name: {name}\nstages: {stages}\naction: block\n{extra}"
        f"message: \"I can't reproduce that text.\"\n"
        f"data:\n  corpus_file: {corpus_file}\nfilters:\n  - type: verbatim\n    min_words: 8\n"
    )


def write_policies(root: Path, files: dict[str, str]) -> Path:
    """Write `relative path -> text` under `root` (tenants/<t>/x.yaml for tenant policies)."""
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


@pytest.fixture
def canary_policies(tmp_path: Path) -> Path:
    """A pii policy on the canary phone and a verbatim policy on a corpus holding the sentence."""
    corpus = "Chapter one.\n" + CANARY_SENTENCE.capitalize() + ".\nThe end of the tale.\n"
    return write_policies(tmp_path / "policies", {
        "canary-person.yaml": pii_policy("canary-person", CANARY_PHONE),
        "canary-work.yaml": verbatim_policy("canary-work", "work.txt"),
        "work.txt": corpus,
    })


def chat(content: str, **extra: Any) -> dict[str, Any]:
    return {"model": "fake-model", "messages": [{"role": "user", "content": content}], **extra}


def sse_payloads(raw: bytes) -> list[bytes]:
    return [e[len(b"data: "):] for e in raw.split(b"\n\n") if e.startswith(b"data: ")]


def fault_policy(name: str, mode: str, *, stages: str = "[input, output]", extra: str = "",
                 options: str = "") -> str:
    return (
        f"name: {name}\nstages: {stages}\naction: block\n{extra}"
        f"filters:\n  - type: fault\n    mode: {mode}\n{options}"
    )


@pytest.fixture(scope="package", autouse=True)
def fault_filter_registered() -> Iterator[None]:
    """The test-only `fault` filter exists for this package's tests only."""
    filters.register(Fault)
    yield
    filters.unregister("fault")
