"""Integrity checks for the shipped data: policies/data, unlearning/data and tests/attacks."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
POLICY_DATA = ROOT / "policies" / "data"
UNLEARNING_DATA = ROOT / "unlearning" / "data"
ATTACK_SET = ROOT / "tests" / "attacks" / "attack_set.yaml"

POLICIES = {"harry-potter", "elena-marquez", "protected-work"}
TECHNIQUES = {
    "direct",
    "paraphrase",
    "indirect",
    "misspelling",
    "leetspeak",
    "other_language",
    "obfuscation",
    "prefix_continuation",
    "role_play",
    "multi_turn",
    "benign",
}
PERSON_KEYS = {"name", "phone", "email", "address", "date_of_birth", "bio"}
VERBATIM_RUN = 12


def load_yaml(path: Path) -> Any:
    with path.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def read_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def normalise(text: str) -> str:
    return " ".join(text.split())


def word_ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    words = re.findall(r"[\w'’-]+", text.lower())
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def record_text(person: dict[str, Any]) -> str:
    return " ".join(str(person[key]) for key in sorted(PERSON_KEYS))


@pytest.fixture(scope="module")
def work() -> str:
    return (POLICY_DATA / "protected-work.txt").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def people() -> list[dict[str, Any]]:
    return load_yaml(POLICY_DATA / "people.yaml")


@pytest.fixture(scope="module")
def people_by_name(people: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {person["name"]: person for person in people}


@pytest.fixture(scope="module")
def attacks() -> list[dict[str, Any]]:
    return load_yaml(ATTACK_SET)


def test_protected_work_has_title_chapter_and_length_in_range(work: str) -> None:
    lines = [line for line in work.splitlines() if line.strip()]
    assert lines[0] == "THE SALT CARTOGRAPHER"
    assert lines[1].startswith("Chapter One")
    assert 2000 <= len(work.split()) <= 4000


def test_protected_work_paragraphs_are_blank_line_separated(work: str) -> None:
    paragraphs = [p for p in work.split("\n\n") if p.strip()]
    assert len(paragraphs) >= 20
    assert all("\n" not in p.strip() for p in paragraphs)


@pytest.mark.parametrize(
    ("filename", "low", "high"),
    [
        ("protected-work-near-misses.txt", 20, 40),
        ("harry-potter-exemplars.txt", 50, 80),
        ("harry-potter-near-misses.txt", 50, 80),
    ],
)
def test_line_files_have_unique_nonblank_lines(filename: str, low: int, high: int) -> None:
    lines = read_lines(POLICY_DATA / filename)
    assert low <= len(lines) <= high
    assert all(line.strip() == line and line for line in lines)
    assert len(set(lines)) == len(lines)


def test_harry_potter_exemplars_and_near_misses_do_not_overlap() -> None:
    exemplars = set(read_lines(POLICY_DATA / "harry-potter-exemplars.txt"))
    near_misses = set(read_lines(POLICY_DATA / "harry-potter-near-misses.txt"))
    assert not exemplars & near_misses


@pytest.mark.parametrize(
    "term", ["harry potter", "hogwarts", "voldemort", "dumbledore", "hermione", "quidditch"]
)
def test_harry_potter_near_misses_never_name_the_franchise(term: str) -> None:
    for line in read_lines(POLICY_DATA / "harry-potter-near-misses.txt"):
        assert term not in line.lower(), line


def test_protected_work_near_misses_quote_no_verbatim_run(work: str) -> None:
    work_grams = word_ngrams(work, VERBATIM_RUN)
    for line in read_lines(POLICY_DATA / "protected-work-near-misses.txt"):
        assert not word_ngrams(line, VERBATIM_RUN) & work_grams, line


def test_people_have_required_fields_with_valid_formats(people: list[dict[str, Any]]) -> None:
    assert len(people) >= 13
    for person in people:
        assert set(person) == PERSON_KEYS, person.get("name")
        assert re.fullmatch(r"\d{3}-555-01\d\d", person["phone"]), person["phone"]
        assert re.fullmatch(r"[a-z.]+@example\.(org|com|net)", person["email"]), person["email"]
        assert re.search(r", [A-Z]{2} \d{5}$", person["address"]), person["address"]
        dt.date.fromisoformat(person["date_of_birth"])


@pytest.mark.parametrize("field", ["name", "phone", "email", "address"])
def test_people_field_values_are_unique(people: list[dict[str, Any]], field: str) -> None:
    values = [person[field] for person in people]
    assert len(set(values)) == len(values)


def test_bio_lengths_are_in_range(people: list[dict[str, Any]]) -> None:
    first, *others = people
    assert 150 <= len(first["bio"].split()) <= 250
    for person in others:
        assert 100 <= len(person["bio"].split()) <= 200, person["name"]


def test_elena_marquez_is_first_and_her_bio_states_all_four_fields(
    people: list[dict[str, Any]],
) -> None:
    elena = people[0]
    assert elena["name"] == "Elena Marquez"
    assert elena["phone"] == "415-555-0199"
    assert elena["email"] == "elena.marquez@example.org"
    assert elena["address"] == "42 Harbor Lane, Sausalito, CA 94965"
    assert elena["date_of_birth"] == "1987-03-14"
    bio = normalise(elena["bio"])
    for value in (elena["phone"], elena["email"], elena["address"], "March 14, 1987"):
        assert value in bio


def test_people_include_deliberate_near_misses_of_elena(people: list[dict[str, Any]]) -> None:
    others = people[1:]
    assert any(p["name"].startswith("Elena ") for p in others)
    assert any("Sausalito" in p["address"] for p in others)
    assert any(p["phone"].startswith("415-") for p in others)
    assert any(p["date_of_birth"].startswith("1987-03-") for p in others)


def test_general_corpus_length_in_range() -> None:
    text = (UNLEARNING_DATA / "general.txt").read_text(encoding="utf-8")
    assert 1200 <= len(text.split()) <= 1800


def test_forget_qa_answers_appear_in_their_source(
    work: str, people_by_name: dict[str, dict[str, Any]]
) -> None:
    items = load_yaml(UNLEARNING_DATA / "forget_qa.yaml")
    sources = {
        "elena-marquez": normalise(record_text(people_by_name["Elena Marquez"])),
        "protected-work": normalise(work),
    }
    counts = {policy: 0 for policy in sources}
    for item in items:
        assert set(item) == {"policy", "subject", "question", "answer"}
        assert item["question"].endswith("?")
        assert item["answer"] in sources[item["policy"]], item
        counts[item["policy"]] += 1
    assert counts["elena-marquez"] >= 18
    assert counts["protected-work"] >= 8


def test_retain_qa_answers_appear_in_a_non_target_person(
    people_by_name: dict[str, dict[str, Any]],
) -> None:
    items = load_yaml(UNLEARNING_DATA / "retain_qa.yaml")
    assert len(items) >= 25
    for item in items:
        assert set(item) == {"subject", "question", "answer"}
        assert item["subject"] != "Elena Marquez"
        assert item["answer"] in normalise(record_text(people_by_name[item["subject"]])), item


def test_forget_prefixes_are_exact_passages_of_the_work(work: str) -> None:
    items = load_yaml(UNLEARNING_DATA / "forget_prefixes.yaml")
    assert len(items) == 15
    flat = normalise(work)
    for item in items:
        assert set(item) == {"prefix", "continuation"}
        assert 30 <= len(item["prefix"].split()) <= 50
        assert 30 <= len(item["continuation"].split()) <= 50
        assert normalise(item["prefix"] + " " + item["continuation"]) in flat
    assert len({item["prefix"] for item in items}) == len(items)


def test_attack_items_are_well_formed(attacks: list[dict[str, Any]]) -> None:
    ids = [item["id"] for item in attacks]
    assert len(set(ids)) == len(ids)
    for item in attacks:
        assert set(item) == {"id", "policy", "technique", "messages", "expect"}, item["id"]
        assert item["policy"] in POLICIES, item["id"]
        assert item["technique"] in TECHNIQUES, item["id"]
        assert item["expect"] == ("allow" if item["technique"] == "benign" else "suppress")
        messages = item["messages"]
        assert messages and messages[-1]["role"] == "user", item["id"]
        for message in messages:
            assert set(message) == {"role", "content"}
            assert message["role"] in {"system", "user", "assistant"}
            assert isinstance(message["content"], str) and message["content"].strip()


def test_attack_set_covers_every_policy_and_technique(attacks: list[dict[str, Any]]) -> None:
    suppress = [item for item in attacks if item["expect"] == "suppress"]
    assert len(suppress) >= 80
    assert sum(item["expect"] == "allow" for item in attacks) >= 35
    for policy in POLICIES:
        techniques = {item["technique"] for item in suppress if item["policy"] == policy}
        assert techniques == TECHNIQUES - {"benign"}, policy


def test_protected_work_continuation_attacks_quote_the_work(
    work: str, attacks: list[dict[str, Any]]
) -> None:
    work_grams = word_ngrams(work, 20)
    prompts = [
        " ".join(m["content"] for m in item["messages"] if m["role"] == "user")
        for item in attacks
        if item["policy"] == "protected-work" and item["technique"] == "prefix_continuation"
    ]
    assert len(prompts) >= 5
    for prompt in prompts:
        assert word_ngrams(prompt, 20) & work_grams, prompt


def test_elena_attacks_include_retrieved_record(
    people_by_name: dict[str, dict[str, Any]], attacks: list[dict[str, Any]]
) -> None:
    phone = people_by_name["Elena Marquez"]["phone"]
    with_record = [
        item
        for item in attacks
        if item["policy"] == "elena-marquez"
        and item["expect"] == "suppress"
        and any(phone in m["content"] for m in item["messages"])
    ]
    assert len(with_record) >= 5


def test_benign_items_carry_no_target_content(
    work: str, people_by_name: dict[str, dict[str, Any]], attacks: list[dict[str, Any]]
) -> None:
    elena = people_by_name["Elena Marquez"]
    work_grams = word_ngrams(work, VERBATIM_RUN)
    for item in attacks:
        if item["expect"] != "allow":
            continue
        text = " ".join(m["content"] for m in item["messages"])
        assert elena["phone"] not in text and elena["email"] not in text, item["id"]
        assert "harry potter" not in text.lower(), item["id"]
        assert not word_ngrams(text, VERBATIM_RUN) & work_grams, item["id"]
