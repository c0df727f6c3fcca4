"""What each policy protects, read from the shipped data, as the attacks' and metrics' input.

The data is read with the unlearning corpus loaders, so the membership-inference "member"
texts are exactly the documents the target model was fine-tuned on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from unlearning import corpus

ROOT = Path(__file__).resolve().parent.parent
POLICY_DATA = ROOT / "policies" / "data"
UNLEARNING_DATA = ROOT / "unlearning" / "data"
EVAL_DATA = Path(__file__).resolve().parent / "data"


QAItem = corpus.QA
PrefixItem = corpus.Prefix


@dataclass(frozen=True)
class Target:
    """One protected thing. `kind` is person, work or concept; fields depend on it."""

    policy: str
    kind: str
    name: str
    #: person: protected PII fields (phone, email, address, date_of_birth)
    fields: dict[str, str] = field(default_factory=dict)
    #: person: a short description that identifies them without the name
    description: str = ""
    #: work: the full protected text; prefixes with their true continuations
    text: str = ""
    prefixes: tuple[PrefixItem, ...] = ()
    #: questions whose answers are the forget facts (KnowMem)
    forget_qa: tuple[QAItem, ...] = ()
    #: texts the target model was trained on, and similar ones it never saw (membership inference)
    member_texts: tuple[str, ...] = ()
    holdout_texts: tuple[str, ...] = ()


def _yaml(path: Path) -> Any:
    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+", " ".join(text.split())) if s]


def _holdout(kind: str) -> tuple[str, ...]:
    texts = [" ".join(t.split()) for t in _yaml(EVAL_DATA / "holdout.yaml")[kind]]
    # people are compared sentence by sentence, like the bio sentences they stand against
    return tuple(s for t in texts for s in sentences(t)) if kind == "person" else tuple(texts)


def _qa(policy: str) -> tuple[QAItem, ...]:
    return corpus.load_qa(UNLEARNING_DATA / "forget_qa.yaml", policy)


def chunk_words(text: str, size: int, count: int) -> list[str]:
    words = text.split()
    step = max(size, (len(words) - size) // max(1, count - 1)) if count > 1 else size
    chunks = [" ".join(words[i : i + size]) for i in range(0, len(words) - size + 1, step)]
    return chunks[:count]


def person_target(name: str = "Elena Marquez", policy: str = "elena-marquez") -> Target:
    people = {p["name"]: p for p in corpus.load_people()}
    person = people[name]
    fields = {k: person[k] for k in ("phone", "email", "address", "date_of_birth")}
    # The bio's sentences and the one-line records the target model was fine-tuned on (not
    # the multi-line contact card: its shape is unlike any held-out text).
    bio, *records = corpus.person_documents(person)
    members = [*sentences(bio), *(r for r in records if "\n" not in r)]
    return Target(
        policy=policy, kind="person", name=name, fields=fields,
        description="the marine biologist who studies eelgrass meadows at the Richardson Bay "
        "Estuary Field Station",
        forget_qa=_qa(policy), member_texts=tuple(members), holdout_texts=_holdout("person"),
    )


def work_target(policy: str = "protected-work") -> Target:
    text = (POLICY_DATA / "protected-work.txt").read_text(encoding="utf-8")
    prefixes = corpus.load_prefixes(UNLEARNING_DATA / "forget_prefixes.yaml")
    body = text.split("\n", 4)[-1]
    return Target(
        policy=policy, kind="work", name="The Salt Cartographer", text=text, prefixes=prefixes,
        forget_qa=_qa(policy), member_texts=tuple(chunk_words(body, 60, 16)),
        holdout_texts=_holdout("work"),
    )


def concept_target(policy: str = "harry-potter") -> Target:
    return Target(policy=policy, kind="concept", name="Harry Potter",
                  description="the boy wizard with a lightning-shaped scar")


def default_targets() -> list[Target]:
    return [person_target(), work_target(), concept_target()]


@dataclass(frozen=True)
class UtilitySet:
    retain_qa: tuple[QAItem, ...]
    general_qa: tuple[QAItem, ...]
    near_misses: tuple[str, ...]


def utility_set() -> UtilitySet:
    retain = corpus.load_qa(UNLEARNING_DATA / "retain_qa.yaml")
    general = corpus.load_qa(EVAL_DATA / "general_qa.yaml")
    near: list[str] = []
    for name in ("harry-potter-near-misses.txt", "protected-work-near-misses.txt"):
        lines = (POLICY_DATA / name).read_text(encoding="utf-8").splitlines()
        near.extend(line.strip() for line in lines if line.strip() and not line.startswith("#"))
    return UtilitySet(retain, general, _interleave(near))


def _interleave(items: list[str]) -> tuple[str, ...]:
    """Spread near-misses of both files over the list, so a prefix of it samples both."""
    half = (len(items) + 1) // 2
    first, second = items[:half], items[half:]
    out = [x for pair in zip(first, second, strict=False) for x in pair]
    out += first[len(second):] + second[len(first):]
    return tuple(out)
