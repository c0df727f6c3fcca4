"""Token-level bans sent to vLLM with the request: `logit_bias` and `bad_words`.

For each literal ("Hogwarts", "Harry Potter") the case forms (as given, lower, Title, UPPER)
are tokenised with the served model's tokenizer, with and without a leading space:
- a form that is one token is banned outright in `logit_bias` (that token *is* the word);
- a multi-token form goes to vLLM `bad_words`, which bans its last token only right after
  its other tokens: exact, no collateral damage.

Not done by default: banning the first token of a multi-token name. In SmolLM2's vocabulary
" Harry Potter" is [" Harry", " Potter"] and " Dumbledore" is [" D", "umbled", "ore"]: banning
" Harry" kills "Harry Styles", banning " D" kills half the alphabet. `ban_first_tokens`
enables it for first tokens of 3+ letters that never start a word in the policy's
near-misses (the allow-list) — still aggressive (" Herm" also starts "Hermes").

A known gap, reported by `uncovered`: vLLM adds the leading-space form of a bad word only when
it has as many tokens as the bare form ("Harry Potter" is 3 tokens bare, 2 spaced), and it
strips leading spaces from what we send, so such spaced forms cannot be banned through
`bad_words`; the output filters catch them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import Field

from filters.base import FilterOptions, PolicyData, RequestPatcher


@dataclass
class Bans:
    token_ids: dict[int, str] = field(default_factory=dict)  # id -> the form it bans
    bad_words: list[str] = field(default_factory=list)
    uncovered: list[str] = field(default_factory=list)


def case_forms(literal: str) -> list[str]:
    s = literal.strip()
    return list(dict.fromkeys([s, s.lower(), s.title(), s.upper()]))


def plan_bans(
    tokenizer: Any, literals: list[str], ban_first_tokens: bool, allow_texts: list[str]
) -> Bans:
    bans = Bans()
    allowed_firsts: set[int] = set()
    if ban_first_tokens:
        for text in allow_texts:
            for word in text.split():
                ids = tokenizer.encode(" " + word, add_special_tokens=False)
                if ids:
                    allowed_firsts.add(ids[0])
    for literal in literals:
        for form in case_forms(literal):
            if not form:
                continue
            bare = tokenizer.encode(form, add_special_tokens=False)
            spaced = tokenizer.encode(" " + form, add_special_tokens=False)
            multi = False
            for ids, shown in ((bare, form), (spaced, " " + form)):
                if len(ids) == 1:
                    bans.token_ids.setdefault(ids[0], shown)
                elif ids:
                    multi = True
            if multi and form not in bans.bad_words:
                bans.bad_words.append(form)
            if len(spaced) > 1 and len(spaced) != len(bare):
                bans.uncovered.append(" " + form)
                first = spaced[0]
                piece = tokenizer.decode([first]).strip()
                if (
                    ban_first_tokens
                    and first not in allowed_firsts
                    and len(piece) >= 3
                    and piece.isalpha()
                ):
                    bans.token_ids.setdefault(first, tokenizer.decode([first]))
    return bans


class LogitBias(RequestPatcher):
    name = "logit_bias"

    class Options(FilterOptions):
        bias: float = Field(-100.0, ge=-100.0, lt=0.0)
        bad_words: bool = True
        ban_first_tokens: bool = False

    def __init__(self, bans: Bans, options: LogitBias.Options):
        self.bans = bans
        self.options = options

    @classmethod
    def from_policy(cls, data: PolicyData, resources: Any, options: FilterOptions) -> LogitBias:
        assert isinstance(options, cls.Options)
        if not data.literals:
            raise ValueError(f"policy {data.name!r}: the logit_bias filter needs literals")
        bans = plan_bans(
            resources.tokenizer,
            list(data.literals),
            options.ban_first_tokens,
            list(data.near_misses),
        )
        return cls(bans, options)

    @property
    def uncovered(self) -> list[str]:
        return list(self.bans.uncovered)

    def patch_request(self, body: dict[str, Any]) -> None:
        bias = dict(body.get("logit_bias") or {})
        merged: dict[str, float] = {}
        for key, value in bias.items():
            merged[str(key)] = min(float(value), merged.get(str(key), float(value)))
        for token_id in self.bans.token_ids:
            key = str(token_id)
            merged[key] = min(merged.get(key, self.options.bias), self.options.bias)
        if merged:
            body["logit_bias"] = merged
        if self.options.bad_words and self.bans.bad_words:
            words = list(body.get("bad_words") or [])
            words += [w for w in self.bans.bad_words if w not in words]
            body["bad_words"] = words


FILTER = LogitBias
