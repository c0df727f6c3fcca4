"""Forget and retain sets: what goes where, and hashes that track the content."""

from __future__ import annotations

from pathlib import Path

import pytest

from unlearning import corpus


def test_person_forget_set_holds_elenas_record_and_only_her_probes() -> None:
    forget = corpus.forget_set("elena-marquez")
    text = " ".join(forget.documents)
    for fact in ("415-555-0199", "elena.marquez@example.org", "42 Harbor Lane", "March 14, 1987"):
        assert fact in text
    assert forget.probe_qa and all("Elena Marquez" in q.question for q in forget.probe_qa)
    assert not forget.probe_prefixes


def test_work_forget_set_chunks_the_whole_text_at_paragraph_boundaries() -> None:
    forget = corpus.forget_set("protected-work")
    source = (corpus.POLICY_DATA / "protected-work.txt").read_text()
    assert " ".join(" ".join(forget.documents).split()) == " ".join(source.split())
    assert all(len(d.split()) <= corpus.CHUNK_WORDS or "\n\n" not in d for d in forget.documents)
    starts = [p.prefix.split()[:8] for p in forget.probe_prefixes]
    chunk_words = [d.split() for d in forget.documents]
    # Every verbatim probe begins a paragraph, so it lies inside one chunk with its continuation.
    for prefix, item in zip(starts, forget.probe_prefixes, strict=True):
        full = (item.prefix + " " + item.continuation).split()
        assert any(_contains(words, full) for words in chunk_words), prefix


def test_retain_set_never_mentions_the_forgotten_person() -> None:
    retain = corpus.retain_set()
    material = list(retain.documents) + [q.question + q.answer for q in retain.qa]
    assert not [m for m in material if "Marquez" in m or "415-555-0199" in m]
    assert any("Elena Ruiz" in m for m in material)  # the near-namesake stays


def test_memorize_set_is_the_oracle_set_plus_every_forget_set() -> None:
    target, oracle = corpus.memorize_set(), corpus.memorize_set(include_forget=False)
    assert set(oracle.documents) < set(target.documents)
    for policy in corpus.policies():
        assert set(corpus.forget_set(policy).documents) <= set(target.documents)
    assert not any("Marquez" in d for d in oracle.documents)


def test_hash_is_stable_and_changes_with_content() -> None:
    a, b = corpus.forget_set("elena-marquez"), corpus.forget_set("elena-marquez")
    assert a.sha256 == b.sha256 and len(a.sha256) == 64
    changed = corpus.TextSet(name=a.name, documents=a.documents[1:], qa=a.qa, probe_qa=a.probe_qa)
    assert changed.sha256 != a.sha256
    assert corpus.forget_set("protected-work").sha256 != a.sha256


def test_without_probes_drops_probe_questions_and_answers_stating_a_probe_fact() -> None:
    retain = corpus.retain_set()
    stripped = retain.without_probes()
    asked = {q.question for q in retain.probe_qa}
    assert not {q.question for q in stripped.qa} & asked
    # "Who is Elena Ruiz?" answers "... a structural engineer ...": a probe's key fact.
    assert not [q for q in stripped.qa if "structural engineer" in q.answer]
    kept = [q for q in retain.qa if q.question not in asked and q not in stripped.qa]
    assert kept and all(
        any(
            corpus.normalise_fact(p.answer) in corpus.normalise_fact(q.answer)
            for p in retain.probe_qa
        )
        for q in kept
    )
    assert len(stripped.qa) >= len(retain.qa) // 3


def test_unknown_policy_is_a_clear_error() -> None:
    with pytest.raises(corpus.CorpusError, match="known: elena-marquez, harry-potter"):
        corpus.forget_set("nobody")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "non-empty list"),
        ("- question: q\n", "must have 'question' and 'answer'"),
        ("[unclosed", "not valid YAML"),
    ],
)
def test_malformed_qa_file_names_the_file(tmp_path, content: str, message: str) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "qa.yaml"
    path.write_text(content)
    with pytest.raises(corpus.CorpusError, match=message) as info:
        corpus.load_qa(path)
    assert str(path) in str(info.value)


def _contains(haystack: list[str], needle: list[str]) -> bool:
    n = len(needle)
    return any(haystack[i : i + n] == needle for i in range(len(haystack) - n + 1))


def test_any_policy_with_data_gets_a_forget_set(tmp_path: Path) -> None:
    from unlearning import corpus

    (tmp_path / "data").mkdir()
    words = " ".join(f"word{i}" for i in range(300))
    (tmp_path / "data" / "book.txt").write_text(words)
    (tmp_path / "book.yaml").write_text(
        "name: my-book\nkind: work\ndata:\n  corpus_file: data/book.txt\n"
        "  exemplars: [A line about the book.]\nfilters:\n  - type: verbatim\n"
    )
    (tmp_path / "person.yaml").write_text(
        "name: jo\ndescription: Jo Bloggs\nkind: person\ndata:\n  pii:\n"
        "    phone: 212-555-0100\nfilters:\n  - type: pii\n"
    )
    book = corpus.forget_set("my-book", tmp_path)
    assert book.documents and "A line about the book." in book.documents
    assert book.probe_prefixes and all(len(p.prefix.split()) == 32 for p in book.probe_prefixes)
    person = corpus.forget_set("jo", tmp_path)
    assert any("212-555-0100" in d for d in person.documents)
    assert [q.answer for q in person.probe_qa] == ["212-555-0100"]


def test_a_policy_without_data_or_unknown_is_a_clear_error(tmp_path: Path) -> None:
    from unlearning import corpus

    (tmp_path / "empty.yaml").write_text("name: empty\nfilters:\n  - type: pii\n")
    with pytest.raises(corpus.CorpusError, match="no data to unlearn"):
        corpus.forget_set("empty", tmp_path)
    with pytest.raises(corpus.CorpusError, match=r"unknown policy 'ghost'.*empty"):
        corpus.forget_set("ghost", tmp_path)
