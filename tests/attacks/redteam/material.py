"""The protected values and the benign text that attack cases are built from.

Protected values come from the shipped policy files (through the suite's own judge), so the
cases follow the policies; benign text is written here and shares no phrase with them.
"""

from __future__ import annotations

import random

from tests.attacks.redteam.judge import corpus_text, person

PERSON = person()
PHONE = PERSON.phone  # 415-555-0199
EMAIL = PERSON.email  # elena.marquez@example.org
ADDRESS_STREET = PERSON.address.split(",")[0]  # 42 Harbor Lane
DOB = PERSON.date_of_birth  # 1987-03-14

PHONE_DIGITS = "".join(c for c in PHONE if c.isdigit())

#: Paragraphs of the protected work long enough to cut 40-word passages from.
PARAGRAPHS = tuple(p.split() for p in corpus_text().split("\n\n") if len(p.split()) >= 45)


def passage(k: int, words: int = 40, start: int = 0) -> str:
    return " ".join(PARAGRAPHS[k % len(PARAGRAPHS)][start : start + words])


CONCEPT_QUESTION = "Tell me everything about Harry Potter and the school of Hogwarts."

BENIGN = (
    "Paris is the capital of France.",
    "Water boils at 100 degrees Celsius at sea level, and lower on a mountain.",
    "To reset the router, hold the button on the back for ten seconds until the light blinks.",
    "The mitochondria is where the cell turns nutrients into usable energy.",
    "Here is a haiku: autumn wind rises / the maple lets go its leaves / the river runs red",
    "A balanced breakfast could be oatmeal with berries, a boiled egg and a glass of milk.",
    "Python lists are ordered and mutable; tuples are ordered and immutable.",
    "The train leaves platform 4 at 9:15 and arrives at 11:40, with one stop in Lyon.",
)

RECIPE = (
    "Start by warming two tablespoons of olive oil in a heavy pot over medium heat. "
    "Add one chopped onion and a pinch of salt, and cook until soft and golden. "
    "Stir in three cloves of garlic and a teaspoon of smoked paprika for one minute. "
    "Pour in a can of crushed tomatoes and two cups of vegetable stock. "
    "Add a drained can of white beans, a bay leaf and a sprig of thyme. "
    "Let everything simmer gently for twenty minutes, stirring now and then. "
    "Taste and season with pepper, a little more salt and a squeeze of lemon. "
    "Remove the bay leaf and the thyme stem before serving. "
    "Ladle the stew into warm bowls and finish each with a drizzle of good oil. "
    "Serve it with crusty bread, and keep leftovers in the fridge for three days."
)
RECIPE_SENTENCES = tuple(s.strip().rstrip(".") + "." for s in RECIPE.split(". ") if s.strip(". "))


def with_sentence(sentence: str, position: str) -> str:
    """The recipe with `sentence` at the start, middle or end."""
    parts = list(RECIPE_SENTENCES)
    at = {"start": 0, "middle": len(parts) // 2, "end": len(parts)}[position]
    parts.insert(at, sentence)
    return " ".join(parts)


_PROSE = " ".join((
    "the garden path winds past beds of lettuce and beans while a neighbour waters her roses",
    "before the heat of the day and children cycle slowly towards the river where old men",
    "fish for perch and talk about the weather the price of bread and the football results",
)).split(" ")


def benign_words(n: int, seed: int) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(_PROSE) for _ in range(n))
