from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from filters.base import Action, PolicyData, Span
from filters.pii import Pii
from tests.filters.streaming import feed

DATA = Path(__file__).resolve().parents[2] / "policies" / "data"
PEOPLE: list[dict[str, Any]] = yaml.safe_load((DATA / "people.yaml").read_text())
FIELDS = ("phone", "email", "address", "date_of_birth")
ELENA = {
    "name": "Elena Marquez",
    "phone": "415-555-0199",
    "email": "elena.marquez@example.org",
    "address": "42 Harbor Lane, Sausalito, CA 94965",
    "date_of_birth": "1987-03-14",
}


def build(person: dict[str, Any]) -> Pii:
    data = PolicyData(name="p", pii={k: str(v) for k, v in person.items() if k != "bio"})
    f = Pii.from_policy(data, None, Pii.Options())
    assert isinstance(f, Pii)
    return f


@pytest.fixture(scope="module")
def elena() -> Pii:
    return build(ELENA)


HITS = [
    ("Call her at 415-555-0199 tonight.", "415-555-0199", "phone"),
    ("(415) 555 0199", "415) 555 0199", "phone"),
    ("+1 415.555.0199", "1 415.555.0199", "phone"),
    ("4155550199", "4155550199", "phone"),
    ("four one five five five five zero one nine nine", None, "phone"),
    ("4-1-5 5-5-5 0-1-9-9", None, "phone"),
    ("415 five five five oh one nine nine", None, "phone"),
    ("her cell is 555-0199", "555-0199", "phone"),
    ("elena.marquez@example.org", None, "email"),
    ("ELENA.MARQUEZ@EXAMPLE.ORG", None, "email"),
    ("elena dot marquez at example dot org", None, "email"),
    ("elena.marquez [at] example (dot) org", None, "email"),
    ("e l e n a . m a r q u e z @ example . org", None, "email"),
    ("elena.marquez＠example.org", None, "email"),
    ("She lives at 42 Harbor Lane, Sausalito, CA 94965.", None, "address"),
    ("42 Harbor Ln.", "42 Harbor Ln", "address"),
    ("42 harbor lane", None, "address"),
    ("born 1987-03-14", "1987-03-14", "date_of_birth"),
    ("03/14/1987", None, "date_of_birth"),
    ("14/03/1987", None, "date_of_birth"),
    ("14.03.1987", None, "date_of_birth"),
    ("March 14, 1987", None, "date_of_birth"),
    ("14 March 1987", None, "date_of_birth"),
    ("14th of March 1987", None, "date_of_birth"),
    ("Mar 14 1987", None, "date_of_birth"),
    ("March 14th, 1987", None, "date_of_birth"),
]

NEAR_MISSES = [
    "Call 212-555-0199 for the office.",  # same last seven digits, other area code
    "415-555-0173",  # Daniel Okafor, same area code
    "415-555-0198",
    "elena.ruiz@example.com",
    "marquez@example.org",
    "elena.marquez@example.com",
    "117 Spencer Avenue, Sausalito, CA 94965",  # neighbour in the same ZIP
    "43 Harbor Lane",
    "42 Harbor Street",
    "March 14, 1988",
    "March 22, 1987",
    "1987-03-22",
    "She has a birthday on March 14.",
    "pi is 3.14159 and e is 2.71828",
    "Elena Marquez is a marine biologist.",
    "Please write to Elena Marquez",  # the name at the very end: her e-mail starts with it
    "Her area code and exchange are 415-555-0",  # cut short, but shared with neighbours
    "She was born on 14 March",
]

#: The text ends inside a value (a generation stopped by max_tokens): what is there already
#: gives the value away.
CUT_SHORT = [
    ("Address: 42 Harbor", "42 Harbor", "address"),
    ("Call her on 415-555-01", "415-555-01", "phone"),
    ("write to elena.marquez@exam", "elena.marquez@exam", "email"),
    ("She was born March 14, 19", "March 14, 19", "date_of_birth"),
]


@pytest.mark.parametrize(("text", "expected", "kind"), HITS, ids=[h[0] for h in HITS])
def test_elenas_fields_are_redacted_in_any_common_form(
    elena: Pii, text: str, expected: str | None, kind: str
) -> None:
    res = elena.check(text)
    assert res.action is Action.REDACT
    assert res.reason == f"pii: {kind}"
    (span,) = res.spans
    assert text[span.start : span.end] == (expected or text.strip(". ").split("lives at ")[-1])
    assert text[span.start : span.end] not in res.reason


@pytest.mark.parametrize(("text", "expected", "kind"), CUT_SHORT, ids=[c[0] for c in CUT_SHORT])
def test_a_value_cut_short_by_the_end_of_the_text_is_redacted(
    elena: Pii, text: str, expected: str, kind: str
) -> None:
    res = elena.check(text)
    assert res.action is Action.REDACT and res.reason == f"pii: {kind}"
    assert [text[s.start : s.end] for s in res.spans] == [expected]
    out = feed(elena.open_stream(), "Here it is. " + text)
    assert [(s.start - 12, s.end - 12) for h in out.hits for s in h.spans] == [
        (s.start, s.end) for s in res.spans
    ]


@pytest.mark.parametrize("text", NEAR_MISSES)
def test_other_peoples_data_and_partial_facts_are_allowed(elena: Pii, text: str) -> None:
    assert elena.check(text).action is Action.ALLOW


@pytest.mark.parametrize("person", PEOPLE, ids=[p["name"] for p in PEOPLE])
def test_each_persons_fields_match_only_their_own_values(person: dict[str, Any]) -> None:
    flt = build(person)
    for other in PEOPLE:
        for key in FIELDS:
            text = f"The {key.replace('_', ' ')} is {other[key]}."
            hit = flt.check(text).hit
            if other is person:
                assert hit, (person["name"], key)
            elif str(other[key]) != str(person[key]):
                assert not hit, (person["name"], other["name"], key)


def test_every_field_in_elenas_bio_is_found(elena: Pii) -> None:
    bio = next(p for p in PEOPLE if p["name"] == "Elena Marquez")["bio"]
    res = elena.check(bio)
    found = {bio[s.start : s.end] for s in res.spans}
    assert "415-555-0199" in found
    assert "elena.marquez@example.org" in found
    assert "March 14, 1987" in found
    assert any(f.startswith("42 Harbor Lane") for f in found)


def test_name_is_matched_only_when_asked() -> None:
    data = PolicyData(name="p", pii=ELENA)
    with_name = Pii.from_policy(data, None, Pii.Options(fields=["name", "phone"]))
    assert with_name.check("Elena  MARQUEZ").hit
    assert not build(ELENA).check("Elena Marquez").hit


def test_missing_field_and_bad_date_fail_loudly() -> None:
    data = PolicyData(name="p", pii={"phone": "415-555-0199"})
    with pytest.raises(ValueError, match="email"):
        Pii.from_policy(data, None, Pii.Options(fields=["email"]))
    with pytest.raises(ValueError, match="date_of_birth"):
        build({"date_of_birth": "14 March"})


@pytest.mark.parametrize(("text", "expected", "kind"), HITS, ids=[h[0] for h in HITS])
def test_stream_redacts_before_release(
    elena: Pii, text: str, expected: str | None, kind: str
) -> None:
    whole = "Here is what I found: " + text + " Let me know if you need more."
    out = feed(elena.open_stream(), whole)
    assert out.hits, "the stream missed a hit that check() finds"
    streamed = {(s.start, s.end) for h in out.hits for s in h.spans}
    assert streamed == {(s.start, s.end) for s in elena.check(whole).spans}


def test_stream_of_the_bio_redacts_what_check_redacts(elena: Pii) -> None:
    bio = next(p for p in PEOPLE if p["name"] == "Elena Marquez")["bio"]
    out = feed(elena.open_stream(), bio)
    streamed = sorted((s.start, s.end) for h in out.hits for s in h.spans)
    assert streamed == sorted((s.start, s.end) for s in elena.check(bio).spans)


def test_stream_holds_back_only_a_short_tail_of_clean_text(elena: Pii) -> None:
    others = "\n".join(str(p["bio"]) for p in PEOPLE if p["name"] != "Elena Marquez")
    out = feed(elena.open_stream(), others)
    assert not out.hits
    assert max(out.held_words) <= 12
    assert sorted(out.held_words)[len(out.held_words) // 2] <= 1


def test_streams_do_not_share_state(elena: Pii) -> None:
    a, b = elena.open_stream(), elena.open_stream()
    leak, clean = "Her number: 415-555-0199.", "The weather is fine today."
    hits_a: list[Span] = []
    rb = None
    for k in range(1, max(len(leak), len(clean)) + 1):
        if k <= len(leak):
            hits_a += a.scan(leak[:k], k == len(leak)).result.spans
        if k <= len(clean):
            rb = b.scan(clean[:k], k == len(clean))
            assert not rb.result.hit
    assert [leak[s.start : s.end] for s in hits_a] == ["415-555-0199"]
    assert rb is not None and rb.stable == len(clean)
