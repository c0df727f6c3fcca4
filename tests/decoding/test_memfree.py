"""MemFreeProcessor without an engine: synthetic batch updates, a logits tensor, the served
model's real tokenizer. Generation is simulated token by token: at each step the processor
masks, and the test checks the next token of the path it is walking."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
import torch
from vllm import SamplingParams
from vllm.v1.sample.logits_processor import BatchUpdate, MoveDirectionality

from decoding import POLICIES_ARG, PROBE_ARG, PROBE_REPLY
from decoding.index import PolicyIndex, Vocabulary, build_index
from decoding.memfree import MemFreeProcessor
from decoding.policies import DecodeSource, source_digest

WIDTH = 49152
PROTECTED = (
    "On the morning the tide forgot to come back, Ysolde Harrowick was already awake, "
    "sitting cross-legged on the roof of the chartmaker's tower."
)
LITERALS = ("Hogwarts", "Snape", "Harry Potter", "Muggle", "J.K. Rowling")


def source(corpus: str = PROTECTED, literals: tuple[str, ...] = (), n: int = 6) -> DecodeSource:
    return DecodeSource("work", corpus, literals, n, source_digest(corpus, literals, n))


@pytest.fixture(scope="module")
def work(tokenizer: Any, vocab: Vocabulary) -> PolicyIndex:
    return build_index(source(), tokenizer, vocab)


@pytest.fixture(scope="module")
def names(tokenizer: Any, vocab: Vocabulary) -> PolicyIndex:
    src = DecodeSource("names", "", LITERALS, 10, source_digest("", LITERALS, 10))
    return build_index(src, tokenizer, vocab)


def processor(vocab: Vocabulary, *indexes: PolicyIndex) -> MemFreeProcessor:
    return MemFreeProcessor(
        None, torch.device("cpu"), False, indexes=list(indexes), vocab=vocab, stop_tokens=(2,)
    )


def params(*policies: PolicyIndex | str) -> SamplingParams:
    tagged = [p if isinstance(p, str) else p.tagged for p in policies]
    return SamplingParams(temperature=0.0, extra_args={POLICIES_ARG: tagged} if tagged else None)


def add(proc: MemFreeProcessor, size: int, *reqs: tuple[int, SamplingParams, list[int], list[int]]):
    proc.update_state(BatchUpdate(batch_size=size, removed=[], added=list(reqs), moved=[]))


def masked_after(proc: MemFreeProcessor, row: int, rows: int = 1) -> set[int]:
    logits = torch.zeros(rows, WIDTH)
    out = proc.apply(logits)
    return set(torch.nonzero(torch.isinf(out[row])).flatten().tolist())


def walk(proc: MemFreeProcessor, prompt: list[int], path: list[int]) -> int | None:
    """Generate `path` one token at a time; the step at which its token was masked, if any."""
    output: list[int] = []
    add(proc, 1, (0, params(*proc.by_name.values()), prompt, output))
    for step, token in enumerate(path):
        if token in masked_after(proc, 0):
            return step
        output.append(token)  # the engine appends to the same list the processor holds
    return None


def encode(tokenizer: Any, text: str) -> list[int]:
    ids: list[int] = tokenizer.encode(text, add_special_tokens=False)
    return ids


def segmentations(
    vocab: Vocabulary, text: bytes, rng: random.Random, count: int
) -> list[list[int]]:
    """Random spellings of `text` in vocabulary tokens (not the tokenizer's choice)."""
    out = []
    for _ in range(count):
        pos, path = 0, []
        while pos < len(text):
            options = [
                j
                for j in range(pos + 1, min(len(text), pos + vocab.max_len) + 1)
                if text[pos:j] in vocab.by_bytes
            ]
            j = rng.choice(options)
            path.append(vocab.by_bytes[text[pos:j]][0])
            pos = j
        out.append(path)
    return out


# -- protected n-grams -------------------------------------------------------------------


def test_the_token_completing_a_protected_ngram_is_masked(tokenizer, vocab, work) -> None:
    ids = encode(tokenizer, PROTECTED)
    step = walk(processor(vocab, work), [], ids)
    # n = 6: five tokens of the text are free, the sixth completes the first 6-gram.
    assert step == 5


def test_a_prompt_holding_the_prefix_blocks_the_first_output_token(tokenizer, vocab, work) -> None:
    ids = encode(tokenizer, PROTECTED)
    proc = processor(vocab, work)
    assert walk(proc, ids[:20], ids[20:]) == 0


def test_text_outside_the_corpus_is_never_masked(tokenizer, vocab, work) -> None:
    other = " On the morning the train left early, the station was empty and cold and quiet."
    assert walk(processor(vocab, work), [], encode(tokenizer, other)) is None


def test_every_continuation_of_a_protected_context_is_masked_at_once(tokenizer, vocab) -> None:
    # Two corpus sentences share a context then diverge: greedy decoding must not fall from
    # the first continuation onto the second, so both are masked in the same step.
    corpus = "The lantern keeper walked down to the harbour. The lantern keeper walked up the hill."
    index = build_index(source(corpus, n=4), tokenizer, vocab)
    ids = encode(tokenizer, corpus)
    down, up = encode(tokenizer, " down")[0], encode(tokenizer, " up")[0]
    i, j = ids.index(down), ids.index(up)
    assert ids[i - 3 : i] == ids[j - 3 : j]  # precondition: one context, two continuations
    other = encode(tokenizer, " slowly")[0]
    proc = processor(vocab, index)
    add(proc, 1, (0, params(index), [], ids[:i]))
    logits = torch.zeros(1, WIDTH)
    logits[0, down], logits[0, up], logits[0, other] = 10.0, 9.0, 8.0
    out = proc.apply(logits)
    assert torch.isinf(out[0, down]) and torch.isinf(out[0, up])
    assert int(out[0].argmax()) == other


def test_tokens_spelling_the_start_of_a_masked_token_are_masked_too(tokenizer, vocab, work) -> None:
    ids = encode(tokenizer, PROTECTED)
    proc = processor(vocab, work)
    add(proc, 1, (0, params(work), [], ids[:5]))
    masked = masked_after(proc, 0)
    word = vocab.bytes[ids[5]]
    pieces = [t for k in range(1, len(word)) for t in vocab.by_bytes.get(word[:k], [])]
    assert ids[5] in masked
    assert pieces and set(pieces) <= masked


# -- literals ----------------------------------------------------------------------------

LITERAL_HITS = [
    ("The story is about", " Hogwarts"),
    ("The story is about", " HOGWARTS"),
    ("The story is about", " hogwarts"),
    ("The story:\n", "Hogwarts"),
    ("The story:\n", "hogwarts"),
    ("The story is about", "Hogwarts"),  # glued to the last word, but a capital starts it
    ("Ask", "\nSnape"),
    ("Ask", " (Snape)"),
    ("Ask", " Snape's"),
    ("Ask", ' "Snape"'),
    ("The story is about", " Harry Potter"),
    ("The story:\n", "Harry Potter"),
    ("The story is about", " harry potter"),
    ("The story is about", " HARRY POTTER"),
    ("The story is about", " Muggles"),
    ("The story is about", " J.K. Rowling"),
]


@pytest.mark.parametrize(("prompt", "text"), LITERAL_HITS)
def test_a_banned_literal_cannot_be_spelled_the_tokenizers_way(
    tokenizer, vocab, names, prompt, text
):
    path = encode(tokenizer, text)
    assert walk(processor(vocab, names), encode(tokenizer, prompt), path) is not None


@pytest.mark.parametrize("text", ["\nHogwarts", " Snape", " Harry Potter", " MUGGLE", "Snape"])
def test_a_banned_literal_cannot_be_spelled_in_any_other_tokens(tokenizer, vocab, names, text):
    rng = random.Random(text)
    prompt = encode(tokenizer, "The story is about")
    for path in segmentations(vocab, text.encode(), rng, 25):
        assert walk(processor(vocab, names), prompt, path) is not None, [
            vocab.bytes[t] for t in path
        ]


LITERAL_NEAR_MISSES = [
    " smuggler",
    " Snapchat snaps",
    " Harry Styles",
    " pottery",
    " the hog farm",
    " Rowling Hills",
]


@pytest.mark.parametrize("text", LITERAL_NEAR_MISSES)
def test_words_that_only_resemble_a_literal_stay_allowed(tokenizer, vocab, names, text) -> None:
    assert walk(processor(vocab, names), encode(tokenizer, "Say"), encode(tokenizer, text)) is None


def test_a_literal_split_by_a_space_is_not_caught(tokenizer, vocab, names) -> None:
    # Documented limit (docs/decoding.md): spacing and spelling changes are the output
    # filters' business.
    assert walk(processor(vocab, names), [], encode(tokenizer, " Hog warts")) is None


# -- batch bookkeeping -------------------------------------------------------------------


def test_requests_without_policies_leave_the_logits_untouched(tokenizer, vocab, work) -> None:
    proc = processor(vocab, work)
    ids = encode(tokenizer, PROTECTED)
    add(proc, 2, (0, params(), [], ids[:5]), (1, SamplingParams(), None, ids[:5]))
    logits = torch.randn(2, WIDTH)
    before = logits.clone()
    out = proc.apply(logits)
    assert out is logits
    assert torch.equal(out, before)


def test_only_the_row_of_the_request_naming_a_policy_is_masked(tokenizer, vocab, work) -> None:
    proc = processor(vocab, work)
    ids = encode(tokenizer, PROTECTED)
    add(proc, 2, (0, params(), [], ids[:5]), (1, params(work), [], ids[:5]))
    logits = torch.zeros(2, WIDTH)
    out = proc.apply(logits)
    assert not torch.isinf(out[0]).any()
    assert torch.isinf(out[1, ids[5]])


def test_state_follows_moves_swaps_and_removals(tokenizer, vocab, work) -> None:
    proc = processor(vocab, work)
    ids = encode(tokenizer, PROTECTED)
    add(proc, 2, (0, params(work), [], ids[:5]), (1, params(), [], []))
    proc.update_state(
        BatchUpdate(batch_size=2, removed=[], added=[], moved=[(0, 1, MoveDirectionality.SWAP)])
    )
    assert ids[5] in masked_after(proc, 1, rows=2)
    assert not masked_after(proc, 0, rows=2)
    proc.update_state(
        BatchUpdate(
            batch_size=3,
            removed=[],
            added=[],
            moved=[(1, 2, MoveDirectionality.UNIDIRECTIONAL)],
        )
    )
    assert ids[5] in masked_after(proc, 2, rows=3)
    assert not masked_after(proc, 1, rows=3)
    proc.update_state(BatchUpdate(batch_size=2, removed=[2], added=[], moved=[]))
    assert proc.requests == {}


def test_an_added_request_replaces_the_state_of_its_slot(tokenizer, vocab, work) -> None:
    proc = processor(vocab, work)
    ids = encode(tokenizer, PROTECTED)
    add(proc, 1, (0, params(work), [], ids[:5]))
    add(proc, 1, (0, params(), [], ids[:5]))
    assert proc.requests == {}


def test_the_output_list_is_read_by_reference(tokenizer, vocab, work) -> None:
    proc = processor(vocab, work)
    ids = encode(tokenizer, PROTECTED)
    output: list[int] = []
    add(proc, 1, (0, params(work), [], output))
    assert ids[5] not in masked_after(proc, 0)
    output.extend(ids[:5])
    assert ids[5] in masked_after(proc, 0)


def test_a_request_naming_a_policy_the_engine_lacks_can_only_stop(vocab, work) -> None:
    proc = processor(vocab, work)
    add(proc, 1, (0, params("other@0000"), [], []))
    out = proc.apply(torch.zeros(1, WIDTH))
    assert torch.isfinite(out[0]).nonzero().flatten().tolist() == [2]


def test_a_request_naming_an_older_version_of_a_policy_can_only_stop(vocab, work) -> None:
    proc = processor(vocab, work)
    add(proc, 1, (0, params("work@not-the-digest"), [], []))
    out = proc.apply(torch.zeros(1, WIDTH))
    assert torch.isfinite(out[0]).nonzero().flatten().tolist() == [2]


# -- validation in the API server ----------------------------------------------------------


@pytest.fixture
def policy_dir(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "work.txt").write_text(PROTECTED)
    (tmp_path / "work.yaml").write_text(
        "name: work\nmode: decode\ndata:\n  corpus_file: data/work.txt\n"
        "filters:\n  - type: verbatim\n"
    )
    (tmp_path / "plain.yaml").write_text(
        "name: plain\nmode: suppress\ndata:\n  literals: [x]\nfilters:\n  - type: logit_bias\n"
    )
    monkeypatch.setenv("LETHE_DECODE_POLICIES", str(tmp_path))
    monkeypatch.setattr("decoding.memfree._MANIFEST", None)
    return tmp_path


def test_the_probe_is_refused_with_the_engines_manifest(policy_dir) -> None:
    with pytest.raises(ValueError) as err:
        MemFreeProcessor.validate_params(SamplingParams(extra_args={PROBE_ARG: 1}))
    message = str(err.value)
    assert message.startswith(PROBE_REPLY)
    held = json.loads(message[len(PROBE_REPLY) :])
    assert list(held) == ["work"]


@pytest.mark.parametrize("tagged", ["plain", "missing", "work@0123456789abcdef"])
def test_naming_a_policy_the_engine_does_not_hold_is_a_bad_request(policy_dir, tagged) -> None:
    with pytest.raises(ValueError, match="not indexed"):
        MemFreeProcessor.validate_params(SamplingParams(extra_args={POLICIES_ARG: [tagged]}))


def test_requests_naming_held_policies_or_none_are_valid(policy_dir) -> None:
    from decoding.policies import read_directory

    (work,) = read_directory(policy_dir)
    MemFreeProcessor.validate_params(SamplingParams(extra_args={POLICIES_ARG: [work.tagged]}))
    MemFreeProcessor.validate_params(SamplingParams(extra_args={"other": 1}))
    MemFreeProcessor.validate_params(SamplingParams())


# -- protected word n-grams (normalised) -------------------------------------------------

BOOK = (
    "From up there she could see the whole of Quillhaven folded along the edge of the "
    "Brinmarch coast like a letter nobody had finished writing: the slate roofs of the "
    "net-menders' quarter, the crooked bell of Saint Obery's."
)
# The first nine words sit in the prompt; the tenth must not follow, however it is written.
PROMPT_WORDS = "From up there she could see the whole of"
COPIES = [
    " Quillhaven folded along the edge",
    " QUILLHAVEN FOLDED ALONG THE EDGE",
    " quillhaven Folded along",
    "\nQuillhaven\nfolded\nalong\nthe\nedge",
    " Quillhaven, folded -- along; the edge",
    "  Quillhaven  folded  along  the  edge",
]


@pytest.fixture(scope="module")
def book(tokenizer: Any, vocab: Vocabulary) -> PolicyIndex:
    # ngram_tokens 64: the token index stays out of the way, the word index alone decides.
    src = DecodeSource("book", BOOK, (), 64, source_digest(BOOK, (), 64, 10), 10)
    return build_index(src, tokenizer, vocab)


@pytest.mark.parametrize("copy", COPIES)
def test_a_copy_in_any_case_spacing_or_punctuation_is_stopped_at_the_tenth_word(
    tokenizer, vocab, book, copy
) -> None:
    step = walk(processor(vocab, book), encode(tokenizer, PROMPT_WORDS), encode(tokenizer, copy))
    assert step == 0 or (
        step is not None and not vocab.spell(encode(tokenizer, copy)[:step]).strip()
    )


@pytest.mark.parametrize("copy", [" Quillhaven folded", " QUILLHAVEN", "\nquillhaven"])
def test_a_copy_in_any_tokens_is_stopped_at_the_tenth_word(tokenizer, vocab, book, copy):
    rng = random.Random(copy)
    prompt = encode(tokenizer, PROMPT_WORDS)
    for path in segmentations(vocab, copy.encode(), rng, 20):
        step = walk(processor(vocab, book), prompt, path)
        spelled = vocab.spell(path[: step or 0]).strip()
        assert step is not None and not spelled, [vocab.bytes[t] for t in path]


def test_a_word_started_in_pieces_cannot_be_finished(tokenizer, vocab, book) -> None:
    # Defence in depth: were a first piece let through, the rest of the word stays banned.
    proc = processor(vocab, book)
    prompt = encode(tokenizer, PROMPT_WORDS + " Quill")
    add(proc, 1, (0, params(book), prompt, []))
    masked = masked_after(proc, 0)
    assert encode(tokenizer, "haven")[0] in masked or encode(tokenizer, "h")[0] in masked


WORD_NEAR_MISSES = [
    (PROMPT_WORDS, " the town, and beyond it the grey sea."),
    (PROMPT_WORDS, " Quillhavens"),  # another word that starts like the protected one
    ("From up there she could see", " the whole of the harbour"),  # eight words in common
    ("She saw the whole of", " Quillhaven folded along its edge, near the coast"),
]


@pytest.mark.parametrize(("prompt", "text"), WORD_NEAR_MISSES)
def test_text_sharing_fewer_than_ten_words_with_the_corpus_is_allowed(
    tokenizer, vocab, book, prompt, text
) -> None:
    path = encode(tokenizer, text)
    step = walk(processor(vocab, book), encode(tokenizer, prompt), path)
    if text == " Quillhavens":
        # " Quill" + "h" + "avens": the prefix spells the protected word's start, so it is
        # masked; the test documents that collateral: a word sharing the protected word's
        # first letters cannot be written right there.
        assert step == 0
        return
    assert step is None
