from __future__ import annotations

from typing import Any

import pytest

from filters import get
from filters.base import PolicyData, RequestPatcher, TextFilter
from filters.logit_bias import Bans, LogitBias, case_forms
from filters.resources import Resources
from tests.filters.conftest import lines

LITERALS = ("Harry Potter", "Hogwarts", "Dumbledore", "Voldemort", "Quidditch")
NEAR_MISSES = tuple(lines("harry-potter-near-misses.txt"))


def build(resources: Resources, **options: Any) -> LogitBias:
    data = PolicyData(name="hp", literals=LITERALS, near_misses=NEAR_MISSES)
    f = get("logit_bias").from_policy(data, resources, LogitBias.Options(**options))
    assert isinstance(f, LogitBias)
    return f


@pytest.fixture(scope="module")
def flt(resources: Resources, tokenizer: Any) -> LogitBias:
    return build(resources)


def single_token(tokenizer: Any, text: str) -> int | None:
    ids = tokenizer.encode(text, add_special_tokens=False)
    return ids[0] if len(ids) == 1 else None


def test_case_forms_cover_lower_title_and_upper() -> None:
    assert case_forms(" harry potter ") == ["harry potter", "Harry Potter", "HARRY POTTER"]


def test_every_case_form_is_sent_as_bad_words_or_banned_token(
    flt: LogitBias, tokenizer: Any
) -> None:
    for literal in LITERALS:
        for form in case_forms(literal):
            ids = [single_token(tokenizer, form), single_token(tokenizer, " " + form)]
            assert form in flt.bans.bad_words or any(i in flt.bans.token_ids for i in ids if i)


def test_single_token_literals_are_banned_by_id(resources: Resources, tokenizer: Any) -> None:
    one = next(w for w in (" Harry", " Potter", " wizard") if single_token(tokenizer, w))
    data = PolicyData(name="p", literals=(one.strip(),))
    f = LogitBias.from_policy(data, resources, LogitBias.Options())
    assert single_token(tokenizer, one) in f.bans.token_ids


@pytest.mark.parametrize("common", [" the", " Harry", " D", " Hog", " V", " Qu"])
def test_common_first_tokens_of_names_are_not_banned_by_default(
    flt: LogitBias, tokenizer: Any, common: str
) -> None:
    token = single_token(tokenizer, common)
    assert token is not None
    assert token not in flt.bans.token_ids


def test_ban_first_tokens_spares_tokens_that_start_near_miss_words(
    resources: Resources, tokenizer: Any
) -> None:
    aggressive = build(resources, ban_first_tokens=True)
    assert single_token(tokenizer, " Harry") not in aggressive.bans.token_ids  # Harry Styles
    assert single_token(tokenizer, " D") not in aggressive.bans.token_ids  # too short
    assert single_token(tokenizer, " Hog") in aggressive.bans.token_ids


def test_spaced_forms_vllm_cannot_ban_are_reported(flt: LogitBias) -> None:
    assert " Harry Potter" in flt.uncovered


def test_a_token_ban_is_a_request_patch_and_never_judges_text(flt: LogitBias) -> None:
    assert isinstance(flt, RequestPatcher) and not isinstance(flt, TextFilter)


def test_patch_request_merges_with_the_clients_values() -> None:
    f = LogitBias(Bans({123: " Hogwarts"}, ["Harry Potter", "Hogwarts"]), LogitBias.Options())
    body: dict[str, Any] = {
        "logit_bias": {"42": 5.0, 123: 100},  # an int key and a value trying to lift the ban
        "bad_words": ["mine", "Hogwarts"],
    }
    f.patch_request(body)
    assert body["logit_bias"] == {"42": 5.0, "123": -100.0}
    assert body["bad_words"] == ["mine", "Hogwarts", "Harry Potter"]


def test_patch_request_keeps_a_stronger_client_ban() -> None:
    f = LogitBias(Bans({7: " x"}), LogitBias.Options(bias=-50))
    body: dict[str, Any] = {"logit_bias": {"7": -100}}
    f.patch_request(body)
    assert body["logit_bias"]["7"] == -100


def test_patch_request_adds_bans_to_a_plain_request(flt: LogitBias) -> None:
    body: dict[str, Any] = {"messages": []}
    flt.patch_request(body)
    assert body["bad_words"] == flt.bans.bad_words
    assert "Harry Potter" in body["bad_words"]


def test_bad_words_can_be_switched_off(flt: LogitBias) -> None:
    f = LogitBias(flt.bans, LogitBias.Options(bad_words=False))
    body: dict[str, Any] = {}
    f.patch_request(body)
    assert "bad_words" not in body


def test_policy_without_literals_fails_loudly(resources: Resources) -> None:
    with pytest.raises(ValueError, match="literals"):
        LogitBias.from_policy(PolicyData(name="p"), resources, LogitBias.Options())
