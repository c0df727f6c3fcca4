"""Long benign prompts for benchmarks and coverage tests, deterministic and offline.

Retrieval-augmented prompts carry documentation and prose. The text here is the Python
reference manual's topics that ship with the interpreter (`pydoc_data.topics`: about 65,000
words of technical English with code and grammar) interleaved with general-interest paragraphs
written for this file; a seed picks and orders the paragraphs, so every request of a
benchmark gets its own text and filters are measured on windows they have not seen.
"""

from __future__ import annotations

import random
import re
from functools import lru_cache

GENERAL = (
    "The farmers' market opens at seven on Saturdays, and by eight the best tomatoes are gone. "
    "Regulars bring their own baskets, chat with the growers about the weather and the soil, "
    "and leave with bread, cheese, a bunch of flowers and more vegetables than they planned.",
    "To keep a sourdough starter healthy, feed it equal weights of flour and water every day "
    "it lives on the counter, or once a week if it sleeps in the fridge. A starter that smells "
    "of nail varnish is hungry; one that doubles within six hours is ready to bake with.",
    "Our quarterly report shows revenue up four percent on the same period last year, driven "
    "by subscriptions in the northern region. Operating costs rose with the new warehouse lease, "
    "and the board expects margins to recover once the second distribution centre is running.",
    "The hiking trail climbs steadily through beech woods for the first three kilometres, then "
    "opens onto a ridge with views over two valleys. Bring water and a warm layer: the wind on "
    "the ridge is strong even in summer, and the only shelter is the stone hut near the summit.",
    "When you replace a bicycle chain, count the links of the old one or size the new one around "
    "the largest chainring and sprocket. A worn chain wears the cassette too, so measure chain "
    "stretch every thousand kilometres with a simple gauge and replace it before it reaches one "
    "percent.",
    "The city council approved the new cycle lanes after a long public consultation. Shop owners "
    "worried about deliveries and parking, while parents asked for safer routes to the schools; "
    "the final plan keeps loading bays on side streets and adds crossings near every school gate.",
    "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen. It happens in "
    "the chloroplasts, where chlorophyll absorbs mostly red and blue light and reflects green, "
    "which is why leaves look green until the pigment breaks down in autumn.",
    "Please find attached the minutes of Tuesday's meeting. Action items: Priya will update the "
    "onboarding checklist, Marco will book the training room for the first week of next month, "
    "and everyone should send their holiday plans to the team calendar by Friday.",
    "A good cup of filter coffee starts with fresh beans ground just before brewing, water just "
    "off the boil, and about sixty grams of coffee per litre. Rinse the paper filter first so "
    "the coffee does not taste of paper, and pour slowly in circles to wet all the grounds.",
    "The museum's new wing displays textiles from four centuries: woven tapestries, printed "
    "cottons from the old mills along the river, and a room of quilts made by local families. "
    "Guided tours run every afternoon, and the café on the top floor overlooks the harbour.",
)


@lru_cache(maxsize=1)
def paragraphs() -> tuple[str, ...]:
    """Paragraphs of 20 to 200 words: the manual's topics cut at blank lines, and GENERAL."""
    from pydoc_data.topics import topics

    out: list[str] = []
    for name in sorted(topics):
        for block in re.split(r"\n\s*\n", topics[name]):
            text = " ".join(block.split())
            n = len(text.split())
            if n < 20:
                continue
            while n > 200:  # long blocks in pieces of ~150 words
                ws = text.split()
                out.append(" ".join(ws[:150]))
                text = " ".join(ws[150:])
                n = len(ws) - 150
            out.append(text)
    # General prose every fifth paragraph or so, so the register varies along a prompt.
    mixed: list[str] = []
    for i, p in enumerate(out):
        mixed.append(p)
        if i % 5 == 4:
            mixed.append(GENERAL[(i // 5) % len(GENERAL)])
    return tuple(mixed)


def benign_text(n_words: int, seed: int = 0) -> str:
    """About `n_words` words (whole paragraphs, the last one cut) of benign text."""
    rng = random.Random(f"benign:{seed}")
    pool = paragraphs()
    start = rng.randrange(len(pool))
    out: list[str] = []
    count = 0
    k = start
    while count < n_words:
        ws = pool[k % len(pool)].split()
        take = ws[: n_words - count]
        out.append(" ".join(take))
        count += len(take)
        k += 1 + rng.randrange(3)
    return "\n\n".join(out)


def benign_prompt(n_words: int, seed: int = 0) -> str:
    """A retrieval-augmented question: context of about `n_words` words, then the question."""
    question = "Using the context above, answer briefly: what is the main point of it?"
    return benign_text(n_words - len(question.split()), seed) + "\n\n" + question
