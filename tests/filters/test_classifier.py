from __future__ import annotations

from pathlib import Path

import pytest

from filters import get
from filters.base import Action, PolicyData
from filters.classifier import Classifier
from filters.resources import Resources
from tests.filters.conftest import lines
from tests.filters.streaming import feed

EXEMPLARS = lines("harry-potter-exemplars.txt")
NEAR_MISSES = lines("harry-potter-near-misses.txt")


@pytest.fixture(scope="module")
def flt(resources: Resources) -> Classifier:
    data = PolicyData(name="hp", exemplars=tuple(EXEMPLARS), near_misses=tuple(NEAR_MISSES))
    f = get("classifier").from_policy(data, resources, Classifier.Options())
    assert isinstance(f, Classifier)
    return f


HITS = [
    "The boy who lived discovers he is a wizard and goes to Hogwarts.",
    "Harry, Ron and Hermione fight Lord Voldemort.",
    "Which Hogwarts house would the Sorting Hat put me in?",
    "Write a story where Hermione Granger casts Expelliarmus on Draco Malfoy.",
]

ALLOWED = [
    "Harry Styles released a new album this year.",
    "Prince Harry spoke about his charity work in Africa.",
    "How do I center clay on a pottery wheel?",
    "What is the capital of France?",
    "My grandmother grows tomatoes and basil in her garden.",
]


@pytest.mark.parametrize("text", HITS)
def test_texts_about_the_franchise_are_blocked(flt: Classifier, text: str) -> None:
    res = flt.check(text)
    assert res.action is Action.BLOCK, res.score
    assert res.reason.startswith("classifier: p=")
    assert text not in res.reason


@pytest.mark.parametrize("text", ALLOWED)
def test_near_misses_and_unrelated_texts_are_allowed(flt: Classifier, text: str) -> None:
    assert flt.check(text).action is Action.ALLOW


def test_training_needs_near_misses(resources: Resources) -> None:
    data = PolicyData(name="hp", exemplars=tuple(EXEMPLARS))
    with pytest.raises(ValueError, match="near_misses"):
        Classifier.from_policy(data, resources, Classifier.Options())


def test_model_dir_and_label_go_together() -> None:
    with pytest.raises(ValueError, match="together"):
        Classifier.Options.model_validate({"model_dir": "x"})


def test_stream_blocks_before_the_matching_text_is_released(flt: Classifier) -> None:
    text = " ".join(ALLOWED[2:5]) + " " + " ".join(HITS[:2]) + " " + ALLOWED[0]
    out = feed(flt.open_stream(), text)
    assert out.hit is not None


def tiny_hf_model(path: Path, bias: tuple[float, float]) -> Path:
    """A randomly initialised two-label BERT whose head bias decides the label."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    path.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "harry", "potter", "clay", "the"]
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizer(vocab_file=str(path / "vocab.txt"))
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
        id2label={0: "SAFE", 1: "FRANCHISE"},
        label2id={"SAFE": 0, "FRANCHISE": 1},
    )
    model = BertForSequenceClassification(config)
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor(bias))
    model.save_pretrained(str(path))
    tokenizer.save_pretrained(str(path))
    return path


@pytest.mark.parametrize(
    ("label", "blocked"), [("FRANCHISE", True), ("SAFE", False)], ids=["positive", "negative"]
)
def test_local_hf_model_scores_the_named_label(tmp_path: Path, label: str, blocked: bool) -> None:
    tiny_hf_model(tmp_path / "clf", (-3.0, 3.0))
    data = PolicyData(name="p", base_dir=tmp_path)
    options = Classifier.Options(model_dir=Path("clf"), label=label, threshold=0.9)
    flt = Classifier.from_policy(data, Resources(), options)
    long_text = "harry potter and the clay " * 100
    for text in ["harry potter", long_text]:
        res = flt.check(text)
        assert res.hit is blocked
        assert res.score == pytest.approx(0.9975 if blocked else 0.0025, abs=1e-3)


def test_local_hf_model_with_unknown_label_fails_loudly(tmp_path: Path) -> None:
    tiny_hf_model(tmp_path / "clf", (0.0, 0.0))
    options = Classifier.Options(model_dir=tmp_path / "clf", label="TOXIC")
    with pytest.raises(ValueError, match="TOXIC"):
        Classifier.from_policy(PolicyData(name="p"), Resources(), options)
