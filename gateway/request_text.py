"""Every piece of text a request carries to the engine, found field by field, while a content
policy is active (gateway.protocol names each field's treatment; the input stage runs it).

- **Allow-list.** A field, message key or content part that is not listed is refused with a
  400 naming it (`param`), before any filter runs: unknown fields, `vllm_xargs`, chat
  templates and their kwargs, processor kwargs, prompt embeddings, images, audio, files. The
  request goes upstream as the client's own JSON (patched), so what is screened here is
  exactly what the engine gets.
- **Prompt text** (message content parts of every text type, `name`, `reasoning`, tool calls
  and ids, `documents` values, `prompt`, `suffix`) is screened by the input stage and
  redacted in place.
- **Steering text** (`stop`, `bad_words`, guided decoding, `structured_outputs`,
  `response_format`, tool definitions; every string leaf and key of a schema) constrains or
  cuts the output instead of being part of it, so the output stage never sees it. It is
  screened by every filter of the active policies, input and output, and any hit refuses
  the request with a 400 naming the field, never the string: redacting or naming one would
  say which candidate is protected (`stop: [ten numbers]` cut at the protected one).
- **Echo rule.** With `echo`, the prompt comes back as output. A redacted echo tells which
  candidate was protected by where `[REDACTED]` lands, so an echoed prompt is screened as
  steering text: any filter hit refuses the request (param `echo`) instead of echoing a
  redacted prompt; a token-id prompt cannot be echoed at all.
- A refusal still says "one of these is protected", as any screening gateway does; what it
  never says is which one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from filters import Span
from gateway.errors import GatewayError, content_filter_error
from gateway.protocol import (
    CHAT_FIELDS,
    COMPLETION_FIELDS,
    MESSAGE_FIELDS,
    TEXT_PART_FLAGS,
    TEXT_PART_KEYS,
    Treat,
)

REDACTED = "[REDACTED]"

#: Stop strings while policies run. OpenAI allows 4; vLLM has no bound, and each string is
#: screened and held back by vLLM's detokenizer, so a few dozen is plenty for real use.
MAX_STOP_STRINGS = 16
MAX_STOP_CHARS = 256

_SEPARATOR = "\n\n"
#: Steering fields with at most this many strings are screened string by string.
MAX_SEPARATE_STEERING = 64
#: Between strings joined for screening: a word, so no filter reads digits or words of two
#: neighbouring strings as one value (a phone number's 7-digit local form needs no digits
#: before it; a 12-word run needs 12 corpus words in a row).
_ISOLATING_SEPARATOR = "\n\nzqx\n\n"
_STREAM_OPTIONS = frozenset({"include_usage", "continuous_usage_stats"})
_TOOL_CALL_KEYS = frozenset({"id", "type", "function"})
_FUNCTION_KEYS = frozenset({"name", "arguments"})


@dataclass(frozen=True)
class Slot:
    """A place in the request body holding prompt text, redactable in place."""

    holder: Any
    key: Any
    path: str

    def get(self) -> str:
        value = self.holder[self.key]
        return value if isinstance(value, str) else ""

    def set(self, value: str) -> None:
        self.holder[self.key] = value


@dataclass(frozen=True)
class Steering:
    """The strings of one field that shape the output: screened together, never redacted."""

    param: str
    texts: tuple[str, ...]

    @property
    def joined(self) -> str:
        return _SEPARATOR.join(self.texts)

    def pieces(self) -> list[str]:
        """What to screen: each string on its own when there are few (a candidate list such as
        `stop`: a value must not hide behind its neighbours, e.g. a 7-digit local phone number
        preceded by another candidate's digits), and all of them joined (a value split over two
        strings). Past MAX_SEPARATE_STEERING strings (a large schema, a long guided_choice) the
        strings are also joined with a word between them, which keeps each value apart as
        screening it alone would, at the cost of one check instead of one per string."""
        if len(self.texts) <= 1:
            return [self.joined]
        if len(self.texts) <= MAX_SEPARATE_STEERING:
            return [*self.texts, self.joined]
        return [self.joined, _ISOLATING_SEPARATOR.join(self.texts)]

    def refusal(self) -> GatewayError:
        what = "the prompt to echo" if self.param == "echo" else f"`{self.param}`"
        return GatewayError(
            400,
            f"{what} matches the gateway's content policy; it cannot be screened by "
            "redaction, so the request is refused",
            param=self.param,
            code="content_filter",
        )


@dataclass(frozen=True)
class RequestText:
    prompt: tuple[Slot, ...]
    #: False for a token-id prompt: nothing a text filter can read.
    screenable: bool
    steering: tuple[Steering, ...]
    echo: bool

    def screened_as_steering(self) -> list[Steering]:
        """The steering fields, and the prompt too when it is echoed back."""
        groups = [s for s in self.steering if s.texts]
        if self.echo:
            groups.append(Steering("echo", tuple(s.get() for s in self.prompt)))
        return groups


def read(body: dict[str, Any], kind: str) -> RequestText:
    """The request's text by treatment; raises GatewayError for what cannot be screened."""
    reader = _Reader()
    table = CHAT_FIELDS if kind == "chat" else COMPLETION_FIELDS
    for key, value in body.items():
        treat = table.get(key)
        if treat is None:
            raise _unsupported(key)
        if value is None:
            continue
        reader.field(body, key, treat)
    echo = body.get("echo") is True
    if echo and not reader.screenable:
        raise GatewayError(
            400, "a token-id prompt cannot be screened, so it cannot be echoed",
            param="echo", code="unsupported_field",
        )
    return RequestText(tuple(reader.prompt), reader.screenable, tuple(reader.steering), echo)


def unscreenable_prompt() -> GatewayError:
    return content_filter_error(
        "Token-id prompts cannot be screened by the gateway's content policy; send text."
    )


class _Reader:
    def __init__(self) -> None:
        self.prompt: list[Slot] = []
        self.steering: list[Steering] = []
        self.screenable = True

    def field(self, body: dict[str, Any], key: str, treat: Treat) -> None:
        value = body[key]
        if treat is Treat.PASS:
            return
        if treat is Treat.PROMPT:
            self._add(body, key, key)
        elif treat is Treat.STEER:
            if key == "stop":
                _bound_stop(value)
            self.steering.append(Steering(key, tuple(_strings(value))))
        elif treat is Treat.MESSAGES:
            for i, message in enumerate(value):
                self._message(message, f"messages.{i}")
        elif treat is Treat.COMPLETION_PROMPT:
            self._completion_prompt(body)
        elif treat is Treat.DOCUMENTS:
            self._documents(value)
        elif treat is Treat.STREAM_OPTIONS:
            if not isinstance(value, dict):
                raise _invalid("stream_options", "must be an object")
            extra = next((k for k in value if k not in _STREAM_OPTIONS), None)
            if extra is not None:
                raise _unsupported(f"stream_options.{extra}")

    # -- prompt text -----------------------------------------------------------------------
    def _text(self, value: Any, path: str) -> None:
        if not isinstance(value, str):
            raise _invalid(path, "must be a string")

    def _add(self, holder: Any, key: Any, path: str) -> None:
        value = holder[key]
        if value is None:
            return
        self._text(value, path)
        self.prompt.append(Slot(holder, key, path))

    def _message(self, message: Any, path: str) -> None:
        if not isinstance(message, dict):
            raise _invalid(path, "must be an object")
        for key, value in message.items():
            where = f"{path}.{key}"
            if key not in MESSAGE_FIELDS:
                raise _unsupported(where)
            if value is None or key == "role":
                continue
            if key == "content" and isinstance(value, list):
                for j, part in enumerate(value):
                    self._part(part, f"{where}.{j}")
            elif key == "tool_calls":
                if not isinstance(value, list):
                    raise _invalid(where, "must be a list")
                for j, call in enumerate(value):
                    self._tool_call(call, f"{where}.{j}")
            elif key == "function_call":
                self._function(value, where)
            else:
                self._add(message, key, where)

    def _part(self, part: Any, path: str) -> None:
        if not isinstance(part, dict):
            raise _invalid(path, "must be an object")
        kind = part.get("type")
        text_key = TEXT_PART_KEYS.get(kind) if isinstance(kind, str) else None
        if text_key is None:
            raise GatewayError(
                400,
                f"content parts of type {str(kind)[:40]!r} are not accepted while content "
                "policies are active: only text can be screened",
                param=f"{path}.type",
                code="unsupported_field",
            )
        extra = next((k for k in part if k not in {"type", text_key} | TEXT_PART_FLAGS), None)
        if extra is not None:
            raise _unsupported(f"{path}.{extra}")
        if text_key not in part:
            raise _invalid(f"{path}.{text_key}", "is required")
        self._add(part, text_key, f"{path}.{text_key}")

    def _tool_call(self, call: Any, path: str) -> None:
        if not isinstance(call, dict):
            raise _invalid(path, "must be an object")
        extra = next((k for k in call if k not in _TOOL_CALL_KEYS), None)
        if extra is not None:
            raise _unsupported(f"{path}.{extra}")
        if call.get("type", "function") != "function":
            raise _invalid(f"{path}.type", "must be 'function'")
        if "id" in call:
            self._add(call, "id", f"{path}.id")
        if call.get("function") is not None:
            self._function(call["function"], f"{path}.function")

    def _function(self, fn: Any, path: str) -> None:
        if not isinstance(fn, dict):
            raise _invalid(path, "must be an object")
        extra = next((k for k in fn if k not in _FUNCTION_KEYS), None)
        if extra is not None:
            raise _unsupported(f"{path}.{extra}")
        for key in ("name", "arguments"):
            if key in fn:
                self._add(fn, key, f"{path}.{key}")

    def _completion_prompt(self, body: dict[str, Any]) -> None:
        prompt = body["prompt"]
        if isinstance(prompt, str):
            self.prompt.append(Slot(body, "prompt", "prompt"))
        elif isinstance(prompt, list) and all(isinstance(p, str) for p in prompt):
            self.prompt.extend(Slot(prompt, i, f"prompt.{i}") for i in range(len(prompt)))
        else:
            self.screenable = False

    def _documents(self, documents: Any) -> None:
        if not isinstance(documents, list):
            raise _invalid("documents", "must be a list")
        keys: list[str] = []
        for i, document in enumerate(documents):
            if not isinstance(document, dict):
                raise _invalid(f"documents.{i}", "must be an object")
            for key in document:
                keys.append(str(key))
                self._add(document, key, f"documents.{i}.{key}")
        # Templates render the keys too; a key cannot be redacted in place.
        self.steering.append(Steering("documents", tuple(keys)))


def _strings(value: Any) -> list[str]:
    """Every string leaf and every object key under `value`, depth first."""
    out: list[str] = []
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            out.append(node)
        elif isinstance(node, dict):
            for key, child in node.items():
                out.append(str(key))
                stack.append(child)
        elif isinstance(node, list):
            stack.extend(reversed(node))
    return out


def _bound_stop(stop: Any) -> None:
    strings = [stop] if isinstance(stop, str) else stop
    if not isinstance(strings, list) or not all(isinstance(s, str) for s in strings):
        raise _invalid("stop", "must be a string or a list of strings")
    if len(strings) > MAX_STOP_STRINGS:
        raise _invalid(
            "stop", f"at most {MAX_STOP_STRINGS} stop strings while content policies are active"
        )
    if any(len(s) > MAX_STOP_CHARS for s in strings):
        raise _invalid(
            "stop", f"stop strings are limited to {MAX_STOP_CHARS} characters while content "
            "policies are active",
        )


def _unsupported(param: str) -> GatewayError:
    return GatewayError(
        400,
        f"`{param}` is not accepted while content policies are active: the gateway cannot "
        "screen what it would carry to the model",
        param=param,
        code="unsupported_field",
    )


def _invalid(param: str, what: str) -> GatewayError:
    return GatewayError(400, f"invalid request: {param}: {what}", param=param,
                        code="invalid_value")


# -- joining and redacting prompt slots ------------------------------------------------------
def join(texts: list[str]) -> tuple[str, list[int]]:
    """The texts as one, for filters that see context across parts; and where each starts."""
    starts, pos = [], 0
    for text in texts:
        starts.append(pos)
        pos += len(text) + len(_SEPARATOR)
    return _SEPARATOR.join(texts), starts


def redact(slots: tuple[Slot, ...] | list[Slot], starts: list[int], spans: list[Span]) -> None:
    """Replace the spans (offsets into `join`'s text) in the slots they fall in."""
    for slot, start in zip(slots, starts, strict=True):
        text = slot.get()
        local = [
            (max(s.start - start, 0), min(s.end - start, len(text)))
            for s in spans
            if s.end > start and s.start < start + len(text)
        ]
        if local:
            slot.set(_redacted(text, local))


def _redacted(text: str, spans: list[tuple[int, int]]) -> str:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    out, pos = [], 0
    for start, end in merged:
        out += [text[pos:start], REDACTED]
        pos = end
    out.append(text[pos:])
    return "".join(out)
