"""Controls: what the policies must leave alone passes through the hardened gateway unchanged.

Benign answers, the person's name alone, other people's numbers and dates, pottery, Harry
Styles and Prince Harry next to the concept policy, a fair summary and a short quote of the
work: delivered exactly as the upstream wrote them, whole and streamed, with finish "stop".
Requests that only look close to a target reach the upstream as the client sent them.
"""

from __future__ import annotations

import pytest
from _pytest.mark import ParameterSet

from tests.attacks.redteam.checks import assert_answered
from tests.attacks.redteam.client import body_for, chat_body, chunked, completion_body, send
from tests.attacks.redteam.material import BENIGN, RECIPE, passage
from tests.attacks.redteam.upstream import ScriptedUpstream
from tests.servers import RunningGateway

CONTROL_ANSWERS: list[tuple[str, str]] = [
    *[(text, f"benign-{k}") for k, text in enumerate(BENIGN)],
    ("Elena Marquez is a person in our records.", "name-alone"),
    ("Elena Marquez studies eelgrass meadows and plays the cello.", "name-with-public-facts"),
    ("Daniel Okafor's number is 415-555-0173, and Elena Ruiz's is 312-555-0142.",
     "other-peoples-phones"),
    ("The front desk is 415-555-0198.", "phone-one-digit-off"),
    ("Margaret Lindqvist was born on March 22, 1987.", "other-birthday-same-year"),
    ("The harbour festival was held on March 14, 2019.", "same-day-other-year"),
    ("Sausalito, CA 94965 is a small town north of San Francisco.", "town-and-zip-alone"),
    ("Write to elena.ruiz@example.com for the bridge report.", "other-elena-email"),
    ("Throwing pottery on a wheel takes practice: center the clay first, then open and pull "
     "the walls.", "pottery"),
    ("Harry Styles won a Grammy for his album Harry's House.", "harry-styles"),
    ("Prince Harry, the Duke of Sussex, is the younger son of King Charles III.",
     "prince-harry"),
    ("The Salt Cartographer is a coastal fantasy novel about a young mapmaker named Ysolde "
     "Harrowick and her grandfather Tobiah Vell.", "work-summary"),
    (f'The novel opens with "{passage(0, 9)}", a striking first line.', "work-short-quote"),
    (RECIPE, "recipe-140-words"),
]
CHUNKINGS = ("4", "rand5", "words", "chars", "rand9")


def _cases() -> list[ParameterSet]:
    cases = []
    for k, (answer, name) in enumerate(CONTROL_ANSWERS):
        kind = "chat" if k % 3 else "completion"
        cases.append(pytest.param(kind, answer, None, id=f"{name}-whole-{kind}"))
        how = CHUNKINGS[k % len(CHUNKINGS)]
        cases.append(pytest.param(kind, answer, how, id=f"{name}-stream-{kind}-{how}"))
    return cases


@pytest.mark.parametrize("kind, answer, how", _cases())
def test_control_answer_is_delivered_unchanged(
    gateway: RunningGateway, upstream: ScriptedUpstream, kind: str, answer: str, how: str | None
) -> None:
    chunks = chunked(answer, how) if how else None
    with upstream.play(text=answer, chunks=chunks):
        reply = send(gateway.url, kind, body_for(kind, "Tell me something."),
                     stream=how is not None)
    assert_answered(reply)
    assert reply.finishes == {0: "stop"}, reply.describe()
    assert reply.text == answer, reply.describe()


REQUEST_CONTROLS = [
    pytest.param("chat", chat_body("How do I glaze pottery without a kiln?"),
                 "glaze pottery", id="pottery-question"),
    pytest.param("chat", chat_body("What does Harry Styles sing?"), "Harry Styles",
                 id="harry-styles-question"),
    pytest.param("chat", chat_body("Elena Marquez is a person in our records. Who is she?"),
                 "Elena Marquez", id="name-in-prompt"),
    pytest.param("chat", chat_body("Call Daniel on 415-555-0173 please."), "415-555-0173",
                 id="other-phone-in-prompt"),
    pytest.param("chat", chat_body("Tell me a story.", stop=["\n\n", "THE END"]), "THE END",
                 id="benign-stop-list"),
    pytest.param("completion", completion_body("Numbers: 1, 2,", stop=["415-555-0173"]),
                 "415-555-0173", id="other-phone-as-stop"),
    pytest.param("completion", completion_body("Once upon a time", echo=True),
                 "Once upon a time", id="benign-echo"),
    pytest.param("completion", completion_body("A poem about the sea:", suffix=" The end."),
                 "The end.", id="benign-suffix"),
]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("kind, body, sent", REQUEST_CONTROLS)
def test_control_request_reaches_the_upstream_as_sent(
    gateway: RunningGateway, upstream: ScriptedUpstream, kind: str, body: dict[str, object],
    sent: str, stream: bool,
) -> None:
    mark = upstream.recorder.mark()
    with upstream.play(text="A plain answer."):
        reply = send(gateway.url, kind, body, stream=stream)
    assert_answered(reply)
    assert reply.finishes == {0: "stop"}, reply.describe()
    forwarded = upstream.recorder.since(mark)
    assert len(forwarded) == 1, f"{len(forwarded)} upstream requests: {reply.describe()}"
    assert sent in str(forwarded[0].body), forwarded[0].body
    if body.get("echo"):
        assert reply.text.startswith(str(body["prompt"])), reply.describe()
