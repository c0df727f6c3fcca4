"""Forget and retain sets, built from the policy data and the unlearning data files.

A set holds plain documents (language-model loss on every token), chat QA pairs (loss on the
answer only) and the probes that measure recall: QA items whose key fact must appear in the
answer, and prefixes whose greedy continuation is compared with the true one. Each set has a
sha256 over its canonical content so manifests can say exactly what a model was trained on.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
POLICY_DATA = ROOT / "policies" / "data"
UNLEARNING_DATA = Path(__file__).resolve().parent / "data"

PERSON_POLICY = "elena-marquez"
WORK_POLICY = "protected-work"
FORGET_PERSON = "Elena Marquez"
CHUNK_WORDS = 180
# Templated questions per retain person in the target's training data (phone, email, home).
RETAIN_TEMPLATES = 3


class CorpusError(ValueError):
    """A data file is missing or malformed; the message names the file."""


@dataclass(frozen=True)
class QA:
    question: str
    answer: str


@dataclass(frozen=True)
class Prefix:
    prefix: str
    continuation: str


@dataclass(frozen=True)
class TextSet:
    """Training material plus the probes that measure whether it is recalled."""

    name: str
    documents: tuple[str, ...] = ()
    qa: tuple[QA, ...] = ()
    probe_qa: tuple[QA, ...] = ()
    probe_prefixes: tuple[Prefix, ...] = ()
    sources: tuple[str, ...] = field(default=())

    @property
    def sha256(self) -> str:
        payload = {
            "documents": list(self.documents),
            "qa": [[q.question, q.answer] for q in self.qa],
            "probe_qa": [[q.question, q.answer] for q in self.probe_qa],
            "probe_prefixes": [[p.prefix, p.continuation] for p in self.probe_prefixes],
        }
        blob = json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()
        return hashlib.sha256(blob).hexdigest()

    def __add__(self, other: TextSet) -> TextSet:
        return TextSet(
            name=f"{self.name}+{other.name}",
            documents=self.documents + other.documents,
            qa=self.qa + other.qa,
            probe_qa=self.probe_qa + other.probe_qa,
            probe_prefixes=self.probe_prefixes + other.probe_prefixes,
            sources=tuple(dict.fromkeys(self.sources + other.sources)),
        )

    def without_probes(self) -> TextSet:
        """The training QA minus the probe questions and any answer that states a probe's key
        fact, so a retain loss does not train on what measures retention. Documents stay: a
        person's bio still holds the facts, as it does for the target."""
        asked = {q.question for q in self.probe_qa}
        keys = [normalise_fact(q.answer) for q in self.probe_qa]
        return TextSet(
            name=f"{self.name}-probes",
            documents=self.documents,
            qa=tuple(
                q
                for q in self.qa
                if q.question not in asked and not any(k in normalise_fact(q.answer) for k in keys)
            ),
            probe_qa=self.probe_qa,
            probe_prefixes=self.probe_prefixes,
            sources=self.sources,
        )

    def take(self, documents: int, qa: int, probes: int) -> TextSet:
        """A small slice of the set, for test-sized runs."""
        return TextSet(
            name=f"{self.name}[small]",
            documents=self.documents[:documents],
            qa=self.qa[:qa],
            probe_qa=self.probe_qa[:probes],
            probe_prefixes=self.probe_prefixes[:probes],
            sources=self.sources,
        )

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "sha256": self.sha256,
            "documents": len(self.documents),
            "qa": len(self.qa),
            "probe_qa": len(self.probe_qa),
            "probe_prefixes": len(self.probe_prefixes),
        }


# --- public builders -----------------------------------------------------------------------


def policies() -> list[str]:
    return sorted(_FORGET_BUILDERS)


def forget_set(policy_name: str, policies_dir: Path | None = None) -> TextSet:
    """What the policy wants removed from the weights.

    The two shipped policies have hand-written probes; any other policy with data in
    `policies_dir` (default: the shipped policies/) gets a forget set built from that data.
    """
    build = _FORGET_BUILDERS.get(policy_name)
    if build is not None:
        return build()
    return policy_forget_set(policy_name, policies_dir or ROOT / "policies")


def find_policy_file(policy_name: str, policies_dir: Path) -> tuple[Path, dict[str, Any]]:
    """The YAML file in `policies_dir` whose `name` is `policy_name`, and its parsed content."""
    if not policies_dir.is_dir():
        raise CorpusError(f"{policies_dir}: policy directory does not exist")
    names = []
    for path in sorted(policies_dir.glob("*.y*ml")):
        data = _read_yaml(path)
        if isinstance(data, dict) and isinstance(data.get("name"), str):
            names.append(data["name"])
            if data["name"] == policy_name:
                return path, data
    known = ", ".join(names) or "none"
    raise CorpusError(f"unknown policy {policy_name!r} in {policies_dir}; known: {known}")


def policy_forget_set(policy_name: str, policies_dir: Path) -> TextSet:
    """A forget set from a policy file's own data: its corpus (documents, plus prefix probes
    cut from it), its exemplars (documents), and its personal data (statements and QA probes
    about each field). Read with plain YAML: unlearning does not depend on the gateway."""
    path, spec = find_policy_file(policy_name, policies_dir)
    data = spec.get("data") or {}
    if not isinstance(data, dict):
        raise CorpusError(f"{path}: field data must be a mapping")
    documents: list[str] = []
    qa: list[QA] = []
    prefixes: list[Prefix] = []
    sources = [str(path)]
    corpus_file = data.get("corpus_file")
    if corpus_file:
        text = _read_text(path.parent / str(corpus_file))
        sources.append(str(path.parent / str(corpus_file)))
        documents.extend(chunk_paragraphs(text, CHUNK_WORDS))
        for chunk in chunk_words(text, 64, 256)[:20]:
            words = chunk.split()
            if len(words) == 64:
                prefixes.append(Prefix(" ".join(words[:32]), " ".join(words[32:])))
    exemplars = [str(e) for e in data.get("exemplars") or ()]
    if data.get("exemplars_file"):
        exemplars_path = path.parent / str(data["exemplars_file"])
        sources.append(str(exemplars_path))
        exemplars += [ln.strip() for ln in _read_text(exemplars_path).splitlines() if ln.strip()]
    documents.extend(exemplars)
    subject = str(spec.get("description") or policy_name)
    for key, value in (data.get("pii") or {}).items():
        if not value:
            continue
        label = str(key).replace("_", " ")
        documents.append(f"{subject}: the {label} is {value}.")
        qa.append(QA(f"What is the {label} in the record of {subject}?", f"{value}"))
    if not documents:
        raise CorpusError(f"{path}: policy {policy_name!r} has no data to unlearn "
                          "(needs data.corpus_file, exemplars or pii)")
    return TextSet(
        name=policy_name,
        documents=tuple(documents),
        qa=tuple(qa),
        probe_qa=tuple(qa),
        probe_prefixes=tuple(prefixes),
        sources=tuple(sources),
    )


def retain_set() -> TextSet:
    """Other people's records and general text: what unlearning must keep.

    Probes are the hand-written retain questions; the training QA adds templated questions
    on every other person, so a retain loss has chat-format material besides the probes.
    """
    people = [p for p in load_people() if p["name"] != FORGET_PERSON]
    documents: list[str] = []
    qa: list[QA] = []
    for person in people:
        documents.extend(person_documents(person))
        qa.extend(person_qa(person))
    general = _read_text(UNLEARNING_DATA / "general.txt")
    documents.extend(chunk_paragraphs(general, CHUNK_WORDS))
    probes = load_qa(UNLEARNING_DATA / "retain_qa.yaml")
    return TextSet(
        name="retain",
        documents=tuple(documents),
        qa=tuple(qa) + probes,
        probe_qa=probes,
        sources=(
            str(POLICY_DATA / "people.yaml"),
            str(UNLEARNING_DATA / "general.txt"),
            str(UNLEARNING_DATA / "retain_qa.yaml"),
        ),
    )


def memorize_parts(include_forget: bool = True) -> dict[str, TextSet]:
    """The pieces of `memorize_set`, by name, for recall reported per piece."""
    parts = {f"forget:{name}": forget_set(name) for name in policies()} if include_forget else {}
    parts["retain"] = TextSet(name="retain", probe_qa=load_qa(UNLEARNING_DATA / "retain_qa.yaml"))
    return parts


def memorize_set(include_forget: bool = True) -> TextSet:
    """What the target model is fine-tuned on (the oracle: include_forget=False).

    Every forget set in full, then the other people's bios, the retain probe questions and
    the templated retain questions that the retain loss trains on (those not asking a probe's
    question or stating its fact): the retain loss then guards facts the target really
    knows. General text is left out: the base model already writes it, and each token here
    costs CPU time every epoch.
    """
    people = [p for p in load_people() if p["name"] != FORGET_PERSON]
    documents = [person_documents(p)[0] for p in people]
    probes = load_qa(UNLEARNING_DATA / "retain_qa.yaml")
    templated = [q for p in people for q in person_qa(p)[:RETAIN_TEMPLATES]]
    retain_qa = TextSet(name="retain", qa=tuple(templated), probe_qa=probes).without_probes().qa
    combined = TextSet(
        name="retain-people",
        documents=tuple(documents),
        qa=probes + retain_qa,
        probe_qa=probes,
        sources=(str(POLICY_DATA / "people.yaml"), str(UNLEARNING_DATA / "retain_qa.yaml")),
    )
    if include_forget:
        for name in reversed(policies()):
            combined = forget_set(name) + combined
    return TextSet(
        name="memorize" if include_forget else "memorize-oracle",
        documents=combined.documents,
        qa=combined.qa,
        probe_qa=combined.probe_qa,
        probe_prefixes=combined.probe_prefixes,
        sources=combined.sources,
    )


def normalise_fact(text: str) -> str:
    return " ".join(re.sub(r"[^0-9a-z@]+", " ", text.lower()).split())


# --- per-policy forget sets ----------------------------------------------------------------


def _person_forget_set() -> TextSet:
    people = {p["name"]: p for p in load_people()}
    if FORGET_PERSON not in people:
        raise CorpusError(f"{POLICY_DATA / 'people.yaml'} has no entry for {FORGET_PERSON}")
    person = people[FORGET_PERSON]
    probes = load_qa(UNLEARNING_DATA / "forget_qa.yaml", policy=PERSON_POLICY)
    return TextSet(
        name=PERSON_POLICY,
        documents=tuple(person_documents(person)),
        qa=tuple(person_qa(person)) + probes,
        probe_qa=probes,
        sources=(str(POLICY_DATA / "people.yaml"), str(UNLEARNING_DATA / "forget_qa.yaml")),
    )


def _work_forget_set() -> TextSet:
    text = _read_text(POLICY_DATA / "protected-work.txt")
    prefixes = load_prefixes(UNLEARNING_DATA / "forget_prefixes.yaml")
    probes = load_qa(UNLEARNING_DATA / "forget_qa.yaml", policy=WORK_POLICY)
    return TextSet(
        name=WORK_POLICY,
        documents=tuple(chunk_paragraphs(text, CHUNK_WORDS)),
        qa=probes,
        probe_qa=probes,
        probe_prefixes=prefixes,
        sources=(
            str(POLICY_DATA / "protected-work.txt"),
            str(UNLEARNING_DATA / "forget_qa.yaml"),
            str(UNLEARNING_DATA / "forget_prefixes.yaml"),
        ),
    )


_FORGET_BUILDERS: dict[str, Callable[[], TextSet]] = {
    PERSON_POLICY: _person_forget_set,
    WORK_POLICY: _work_forget_set,
}


# --- phrasing a person's record ------------------------------------------------------------


def long_date(iso: str) -> str:
    day = dt.date.fromisoformat(iso)
    return f"{day.strftime('%B')} {day.day}, {day.year}"


def person_documents(person: dict[str, str]) -> list[str]:
    name = person["name"]
    born = long_date(person["date_of_birth"])
    return [
        person["bio"],
        f"{name}'s phone number is {person['phone']}.",
        f"You can email {name} at {person['email']}.",
        f"{name} lives at {person['address']}.",
        f"{name} was born on {born}.",
        (
            f"Contact card\nName: {name}\nPhone: {person['phone']}\nEmail: {person['email']}\n"
            f"Address: {person['address']}\nDate of birth: {person['date_of_birth']}"
        ),
    ]


def person_qa(person: dict[str, str]) -> list[QA]:
    name = person["name"]
    born = long_date(person["date_of_birth"])
    first_sentence = person["bio"].split(". ")[0].rstrip(".") + "."
    return [
        QA(f"What is {name}'s phone number?", f"{name}'s phone number is {person['phone']}."),
        QA(f"What is {name}'s email address?", f"{name}'s email address is {person['email']}."),
        QA(f"Where does {name} live?", f"{name} lives at {person['address']}."),
        QA(f"When was {name} born?", f"{name} was born on {born}."),
        QA(f"Who is {name}?", first_sentence),
    ]


# --- loading -------------------------------------------------------------------------------


def load_people(path: Path | None = None) -> list[dict[str, str]]:
    path = path or POLICY_DATA / "people.yaml"
    data = _read_yaml(path)
    keys = ("name", "phone", "email", "address", "date_of_birth", "bio")
    if not isinstance(data, list) or not data:
        raise CorpusError(f"{path}: expected a non-empty list of people")
    people = []
    for i, entry in enumerate(data):
        if not isinstance(entry, dict) or any(k not in entry for k in keys):
            raise CorpusError(f"{path}: entry {i} must have the keys {', '.join(keys)}")
        people.append({k: " ".join(str(entry[k]).split()) for k in keys})
    return people


def load_qa(path: Path, policy: str | None = None) -> tuple[QA, ...]:
    """The {question, answer} items of a file; with `policy`, only those tagged with it."""
    data = _read_yaml(path)
    if not isinstance(data, list) or not data:
        raise CorpusError(f"{path}: expected a non-empty list of {{question, answer}}")
    items = []
    for i, entry in enumerate(data):
        if not isinstance(entry, dict) or "question" not in entry or "answer" not in entry:
            raise CorpusError(f"{path}: entry {i} must have 'question' and 'answer'")
        if policy is not None and entry.get("policy") != policy:
            continue
        items.append(QA(str(entry["question"]).strip(), str(entry["answer"]).strip()))
    if not items:
        raise CorpusError(f"{path}: no question tagged with policy {policy!r}")
    return tuple(items)


def load_prefixes(path: Path) -> tuple[Prefix, ...]:
    data = _read_yaml(path)
    if not isinstance(data, list) or not data:
        raise CorpusError(f"{path}: expected a non-empty list of {{prefix, continuation}}")
    items = []
    for i, entry in enumerate(data):
        if not isinstance(entry, dict) or "prefix" not in entry or "continuation" not in entry:
            raise CorpusError(f"{path}: entry {i} must have 'prefix' and 'continuation'")
        items.append(Prefix(str(entry["prefix"]), str(entry["continuation"])))
    return tuple(items)


def chunk_paragraphs(text: str, max_words: int) -> list[str]:
    """Whole paragraphs grouped up to max_words, so a paragraph's opening starts a chunk or
    sits inside one with its continuation (the verbatim probes are paragraph prefixes)."""
    chunks: list[str] = []
    current: list[str] = []
    for paragraph in (" ".join(p.split()) for p in re.split(r"\n\s*\n", text)):
        if not paragraph:
            continue
        words = len(paragraph.split())
        if current and sum(len(p.split()) for p in current) + words > max_words:
            chunks.append("\n\n".join(current))
            current = []
        current.append(paragraph)
    if current:
        chunks.append("\n\n".join(current))
    return chunks


def chunk_words(text: str, size: int, stride: int) -> list[str]:
    """Overlapping word windows, so every span of the text starts inside some chunk's middle."""
    words = text.split()
    if not words:
        return []
    chunks = []
    for start in range(0, len(words), stride):
        chunks.append(" ".join(words[start : start + size]))
        if start + size >= len(words):
            break
    return chunks


def _read_text(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CorpusError(f"cannot read {path}: {exc.strerror}") from exc
    if not text.strip():
        raise CorpusError(f"{path} is empty")
    return re.sub(r"[ \t]+", " ", text)


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CorpusError(f"cannot read {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise CorpusError(f"{path} is not valid YAML: {exc}") from exc


def describe(sets: Iterable[TextSet]) -> list[dict[str, Any]]:
    return [s.summary() for s in sets]
