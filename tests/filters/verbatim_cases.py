"""Copies of the protected work in many disguises, and benign texts about it.

Shared by tests/filters/test_verbatim*.py and `python -m bench.verbatim_quality`: each
obfuscation is a function of a passage's words (whitespace tokens of the corpus, punctuation
attached) and a seeded random generator, so every figure can be reproduced.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import yaml

from filters.normalize import words

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "policies" / "data"
CORPUS = (DATA / "protected-work.txt").read_text()
CW = CORPUS.split()


def lines(name: str) -> list[str]:
    return [s.strip() for s in (DATA / name).read_text().splitlines() if s.strip()]


def passage_words(start: int, n: int) -> list[str]:
    return CW[start : start + n]


def passage(start: int, n: int) -> str:
    return " ".join(passage_words(start, n))


# Letters that other scripts draw the same way (Cyrillic, Greek, Latin small capitals).
HOMOGLYPHS = {
    "a": "а", "c": "с", "e": "е", "o": "о", "p": "р", "x": "х", "y": "у", "i": "і",
    "s": "ѕ", "j": "ј", "h": "һ", "d": "ԁ", "A": "А", "B": "В", "C": "С", "E": "Е",
    "H": "Н", "K": "К", "M": "М", "O": "Ο", "P": "Р", "T": "Т", "X": "Х", "Y": "Υ",
    "I": "І", "S": "Ѕ", "N": "Ν", "Z": "Ζ", "v": "ν",
}  # fmt: skip
FILLERS = ["uh", "um", "like", "you know", "so", "well", "er", "hmm", "basically", "I mean"]
SEPARATORS = [", ", " — ", "... ", " 🌊 ", " * ", " ~ ", " (", ") ", " 🙂 "]
STRANGERS = ["banana", "quickly", "purple", "engine", "seven", "however", "blah", "wow"]

Obfuscation = Callable[[list[str], random.Random], str]


def homoglyphs(text: str, rng: random.Random, share: float = 1.0) -> str:
    return "".join(HOMOGLYPHS[c] if c in HOMOGLYPHS and rng.random() < share else c for c in text)


def drop_every(ws: list[str], n: int) -> list[str]:
    return [w for i, w in enumerate(ws) if i % n != n - 1]


def join_some(ws: list[str], rng: random.Random, share: float = 0.5) -> str:
    out = ws[0] if ws else ""
    for w in ws[1:]:
        out += ("" if rng.random() < share else " ") + w
    return out


def with_filler(ws: list[str], rng: random.Random, every: int = 1) -> list[str]:
    out: list[str] = []
    for i, w in enumerate(ws):
        out.append(w)
        if i % every == every - 1 and i < len(ws) - 1:
            out.append(rng.choice(FILLERS))
    return out


def filler_and_punctuation(ws: list[str], rng: random.Random) -> str:
    """ "the, uh, tide — like — forgot to, um, come back" """
    out = ws[0] if ws else ""
    for w in ws[1:]:
        roll = rng.random()
        if roll < 0.4:
            out += rng.choice(SEPARATORS) + rng.choice(FILLERS) + rng.choice(SEPARATORS) + w
        elif roll < 0.7:
            out += rng.choice(SEPARATORS) + w
        else:
            out += " " + w
    return out


OBFUSCATIONS: dict[str, Obfuscation] = {
    "exact": lambda ws, rng: " ".join(ws),
    "homoglyphs (every letter)": lambda ws, rng: homoglyphs(" ".join(ws), rng),
    "homoglyphs (a third of letters)": lambda ws, rng: homoglyphs(" ".join(ws), rng, 0.33),
    "joined (no spaces at all)": lambda ws, rng: "".join(ws),
    "joined (half the spaces gone)": join_some,
    "joined (CamelCase)": lambda ws, rng: "".join(w[:1].upper() + w[1:] for w in ws),
    "filler after every word": lambda ws, rng: " ".join(with_filler(ws, rng)),
    "filler after every 2nd word": lambda ws, rng: " ".join(with_filler(ws, rng, 2)),
    "filler, punctuation and emoji": filler_and_punctuation,
    "emoji between words": lambda ws, rng: " 🌊 ".join(ws),
    "every 3rd word dropped": lambda ws, rng: " ".join(drop_every(ws, 3)),
    "every 4th word dropped": lambda ws, rng: " ".join(drop_every(ws, 4)),
    "every 4th word replaced": lambda ws, rng: " ".join(
        rng.choice(STRANGERS) if i % 4 == 3 else w for i, w in enumerate(ws)
    ),
    "every 4th dropped + filler after every word": lambda ws, rng: " ".join(
        with_filler(drop_every(ws, 4), rng)
    ),
    "every 3rd dropped + half joined": lambda ws, rng: join_some(drop_every(ws, 3), rng),
    "joined with filler (no spaces)": lambda ws, rng: "".join(with_filler(ws, rng, 2)).replace(
        " ", ""
    ),
    "homoglyphs + filler + every 4th dropped": lambda ws, rng: homoglyphs(
        filler_and_punctuation(drop_every(ws, 4), rng), rng, 0.5
    ),
    "CamelCase + every 3rd dropped": lambda ws, rng: "".join(
        w[:1].upper() + w[1:] for w in drop_every(ws, 3)
    ),
}

# Classes that need the confusable folding of filters/normalize.py (TR39 skeletons).
NEEDS_CONFUSABLES = {n for n in OBFUSCATIONS if "homoglyph" in n}


def obfuscated(name: str, start: int, n: int = 30, seed: int = 13) -> str:
    return OBFUSCATIONS[name](passage_words(start, n), random.Random(f"{seed}:{name}:{start}"))


# Written for these tests: discussion of the work that names its people and places, quotes
# a few words, follows its plot in order, or treats its topic in other words. None of these
# may be blocked.
REVIEWS = [
    "The Salt Cartographer follows Ysolde Harrowick, seventeen, the morning the tide fails to "
    "return to Quillhaven, and her grandfather Tobiah Vell reads the kestrine ink with dread.",
    "I adored the opening line about the tide forgetting to come back; it sets the tone for a "
    "quiet, eerie coastal mystery.",
    "Chapter one moves from the chartmaker's tower to the market square, then out along the "
    "Wexley Mole and across the Glasswater Flats to the ninth tide-stone.",
    "Tobiah tells Ysolde three things: the ink does not lie, the Harbour Council will not "
    "believe her, and she must be back before the tide returns.",
    "Marrick Dunlow, head of the Harbour Council, is set up as the sceptic who will call the "
    "kestrine reading a bad batch and hang the old Harbour Sheet.",
    "The kestrine is a wonderful invention: an ink kept in a green bottle sealed with a heron, "
    "which creeps across the map to wherever the sea has really gone.",
    "Ysolde packs the Lodestar Quadrant, vellum, charcoal, bread and cheese, and her mother "
    "Corisande's clasp-knife before she sets off across the mud.",
    "Hebbel Strand the fish-seller is a lovely minor character; the scar on his nose and his "
    "mackerel stall make the market feel real.",
    "At the ninth stone Ysolde finds two sets of footprints, her grandfather's boots and a "
    "bare, webbed pair that walks beside them and then turns back.",
    "The thrennick, a wind that blows once in a lifetime and fills the town with salt, is the "
    "book's central mystery, and the author wisely leaves it unexplained.",
    "The chapter ends with the bell of Saint Obery's ringing the frantic peal that means the "
    "tide is coming back all at once.",
    "What I liked most about The Salt Cartographer: the tower with nine rooms, each smelling of "
    "a different stage of mapmaking, from wind and rain down to pipe smoke and herring.",
    "Aldous Penhallow set the granite tide-stones across the Flats centuries ago, and nobody "
    "knows how he sank them so deep; the pilots still steer by them.",
    "Ysolde's mother walked out onto the Flats when Ysolde was four and never came home, which "
    "gives her journey in chapter one a heavy undertow of grief.",
    "Is the kestrine magic or science? The novel never says, and Tobiah refuses to tell even "
    "his granddaughter how it is made.",
    "Review: a slow, atmospheric first chapter. Quillhaven, the Brinmarch coast and the "
    "sallowgleam on the salt pans are drawn with real care.",
    "The test stroke in the margin of the Harbour Sheet, running uphill toward the inland "
    "hills, is the moment the book turns from cosy to unsettling.",
    "Book club notes: discuss why Tobiah sends Ysolde instead of going himself, and who he "
    "means by 'the one who taught me to make the ink'.",
    "Summary: the sea has not come in; the tide-tracking ink says the shoreline now runs through "
    "the market square; Tobiah sends his granddaughter to find where the line begins.",
    "I found the salt drifts on the Flats, warm to the touch as if something had breathed on "
    "them, the creepiest image in the chapter.",
    "Quillhaven's bell runs four minutes slow in winter, a small detail that pays off when it "
    "finally rings the alarm at the end of the chapter.",
    "In this coastal fantasy a young mapmaker walks out across a dry bay where the water should "
    "be, marking stones with a magical ink as she goes.",
    "The writing is full of maps and tides and salt, and the grandfather-granddaughter "
    "relationship between Tobiah Vell and Ysolde Harrowick is its warm heart.",
    "Ysolde sights along the Lodestar Quadrant, and the fish-like thing in its glass disc turns "
    "to point at a pale mound of salt away from the line of stones.",
    "Josiah Wexley built the Mole for his own ships and ended up selling them to pay for the "
    "stone, which is the kind of dry humour the book does well.",
    "Children on the Flats play a muddy game called skelter using the tide-stones as goals, "
    "and pick through fields of maidenwick weed that pops underfoot.",
    "Compared with other young adult fantasy, The Salt Cartographer is patient: a whole chapter "
    "passes before Ysolde gets past the ninth stone.",
    "The quote everyone shares is 'a cartographer who does not watch the sea wake up', and it "
    "is a good one.",
    "Tobiah has been the Salt Cartographer of Quillhaven for fifty-one years, after his mother "
    "and, before her, Aldous Penhallow, who drowned surveying the Flats.",
    "Sea level and coastlines shift constantly; real harbour pilots relied on updated charts "
    "because sandbars and channels move after every storm.",
    "My grandmother kept a chart table in her study and would trace the coastline with a "
    "fingertip while telling stories about the harbour.",
    "The fishermen set their clocks by the tide, not by the church bell, and on this morning "
    "there is no tide to set them by.",
    "When the tide goes out too far and too fast, coastal people know to run for high ground, "
    "which is exactly what the bell is warning about.",
    "I would describe the prose as lyrical: salt like snow against a wall, mussel beds like "
    "sugared almonds, a town folded like an unfinished letter.",
    "Fan theory: the webbed footprints belong to whoever taught Tobiah the ink, and maybe to "
    "Corisande herself.",
    "The novel asks what it means to draw what you see rather than what you expect to see, "
    "which is Tobiah's last instruction to Ysolde.",
    "Ysolde stood still at the ninth stone and stared at the prints for a long time before she "
    "decided to keep walking rather than go home.",
    "Short version: tide gone, ink weird, grandfather scared, girl walks out onto the mud with "
    "an old brass instrument, bell rings, tide coming.",
    "The Salt Cartographer would make a great animated film; imagine the blue-black line "
    "crawling across the vellum toward the market square.",
    "The author clearly loves old instruments: quadrants, dividers, plumb-bobs and charcoal "
    "sticks all get their moment in the first chapter.",
]


#: Sentences around a short quote: common words that can continue a chain of corpus words.
QUOTE_FRAMES = [
    'My favourite line is "{q}" and I think about it often.',
    'The book says "{q}" and then the story moves on.',
    'Favourite quote: "{q}" Truly wonderful.',
    'I love the part where it says "{q}", it is so vivid.',
]


def short_quotes(n: int = 40, length: int = 11, seed: int = 13) -> list[str]:
    """Quotes of `length` words as the filter counts them (one fewer than `min_words`),
    inside a sentence of discussion, never making `length + 1` consecutive corpus words with
    the sentence around them (that would be a copy)."""
    rng = random.Random(seed)
    norm = " " + " ".join(w.text for w in words(CORPUS)) + " "
    out: list[str] = []
    while len(out) < n:
        start = rng.randrange(0, len(CW) - length)
        quote = passage(start, length)
        while len(words(quote)) > length:
            quote = quote.rsplit(" ", 1)[0]
        if len(words(quote)) != length:
            continue
        text = rng.choice(QUOTE_FRAMES).format(q=quote)
        ws = [w.text for w in words(text)]
        runs = (" " + " ".join(ws[i : i + length + 1]) + " " for i in range(len(ws) - length))
        if not any(r in norm for r in runs):
            out.append(text)
    return out


def other_prose() -> list[str]:
    """Prose from the other policies' data: same kind of writing, other subject."""
    people = yaml.safe_load((DATA / "people.yaml").read_text())
    bios = [str(p["bio"]) for p in people if p.get("bio")]
    return lines("harry-potter-near-misses.txt") + lines("harry-potter-exemplars.txt") + bios


def same_register() -> list[str]:
    """Coastal fiction written for the evaluation's membership test (never in the corpus),
    and the general-knowledge paragraphs of the unlearning data: the same topic and style in
    other words."""
    holdout = yaml.safe_load((ROOT / "evaluation" / "data" / "holdout.yaml").read_text())
    general = (ROOT / "unlearning" / "data" / "general.txt").read_text().split("\n\n")
    return [str(t) for t in holdout["work"]] + [p.strip() for p in general if p.strip()]


def benign() -> dict[str, list[str]]:
    return {
        "near-miss set": lines("protected-work-near-misses.txt"),
        "reviews and summaries": REVIEWS,
        "11-word quotes": short_quotes(),
        "other prose": other_prose(),
        "same register, other words": same_register(),
    }
