"""Policy files: YAML validated by models that forbid unknown keys, errors naming file and line."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from decoding.policies import DEFAULT_NGRAM_TOKENS, DEFAULT_NGRAM_WORDS

Stage = Literal["input", "output"]
ActionName = Literal["block", "redact", "refuse"]
Mode = Literal["suppress", "unlearn", "decode", "both", "off"]
ALL_STAGES: tuple[Stage, ...] = ("input", "output")

DEFAULT_MESSAGE = "I can't help with that request."


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PiiFields(_Strict):
    phone: str | None = None
    email: str | None = None
    address: str | None = None
    date_of_birth: str | None = None


class PolicyDataSpec(_Strict):
    exemplars: list[str] = Field(default_factory=list)
    exemplars_file: str | None = None
    corpus_file: str | None = None
    literals: list[str] = Field(default_factory=list)
    pii: PiiFields | None = None
    near_misses: list[str] = Field(default_factory=list)
    near_misses_file: str | None = None


class FilterSpec(BaseModel):
    """`type` picks the filter; other keys are that filter's own options, checked by it."""

    model_config = ConfigDict(extra="allow", frozen=True)

    type: str
    stages: list[Stage] | None = None
    action: ActionName | None = None

    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class AdapterSpec(_Strict):
    path: str | None = None
    method: str | None = None


class StreamSpec(_Strict):
    holdback_chars: int | None = Field(None, ge=16, le=8192)


class DecodeSpec(_Strict):
    """Decoding-time suppression in the engine (mode decode/both; docs/decoding.md)."""

    #: n of the protected token n-grams: a model may reproduce n-1 tokens of the corpus.
    ngram_tokens: int = Field(DEFAULT_NGRAM_TOKENS, ge=4, le=64)
    #: n of the protected normalised word n-grams (case, spacing, punctuation ignored).
    ngram_words: int = Field(DEFAULT_NGRAM_WORDS, ge=3, le=64)


class PolicySpec(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    description: str = ""
    kind: Literal["person", "work", "concept", "free"] = "free"
    mode: Mode = "suppress"
    stages: list[Stage] = Field(default_factory=lambda: list(ALL_STAGES))
    action: ActionName = "block"
    message: str = DEFAULT_MESSAGE
    fail_open: bool = False
    data: PolicyDataSpec = Field(default_factory=PolicyDataSpec)
    filters: list[FilterSpec] = Field(min_length=1)
    adapter: AdapterSpec | None = None
    stream: StreamSpec = Field(default_factory=StreamSpec)
    decode: DecodeSpec = Field(default_factory=DecodeSpec)

    @model_validator(mode="after")
    def _decode_has_text(self) -> PolicySpec:
        if self.mode == "decode" and not (self.data.corpus_file or self.data.literals):
            raise ValueError("mode decode needs data.corpus_file or data.literals to index")
        return self

    @field_validator("mode", mode="before")
    @classmethod
    def _unquoted_off(cls, value: object) -> object:
        # YAML 1.1 reads an unquoted `off` as false.
        return "off" if value is False else value

    @field_validator("stages")
    @classmethod
    def _stages_nonempty(cls, value: list[Stage]) -> list[Stage]:
        if not value:
            raise ValueError("at least one stage (input, output)")
        return value


class PolicyError(ValueError):
    """A policy file that cannot be used; the message names the file, line and field."""


@dataclass(frozen=True)
class PolicyFile:
    path: Path
    spec: PolicySpec
    digest: str
    #: The composed YAML tree, to name the line of a problem found after loading.
    node: yaml.Node | None = field(default=None, compare=False, repr=False)

    def where(self, loc: tuple[Any, ...]) -> str:
        """`<path>: line N, field a.b.c` for a location inside the file."""
        line = _line_of(self.node, loc)
        at = f"line {line}, " if line else ""
        return f"{self.path}: {at}field {'.'.join(str(p) for p in loc)}"


def filter_options_error(pf: PolicyFile, index: int, exc: ValidationError) -> PolicyError:
    """A filter's options that its Options model refused, each problem with its line."""
    problems = []
    for err in exc.errors():
        loc = ("filters", index, *err["loc"])
        problems.append(f"{pf.where(loc)}: {err['msg']}")
    return PolicyError("\n".join(problems))


def _line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """Walk a composed YAML tree along a pydantic error location to find its line."""
    line = node.start_mark.line + 1 if node is not None else None
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if k.value == key), None)
            if match is None:
                key_node = next((k for k, _ in node.value if k.value == key), None)
                return key_node.start_mark.line + 1 if key_node is not None else line
            node = match
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
        else:
            break
        line = node.start_mark.line + 1
    return line


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """The problem and its position, without PyYAML's snippet of the line: policy files hold
    the very data the gateway suppresses, and this message goes to logs and admin answers."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or getattr(exc, "context", None) or "syntax error"
    if mark is None:
        return str(problem)
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"


def load_policy_file(path: Path) -> PolicyFile:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except UnicodeDecodeError as exc:
        raise PolicyError(f"{path}: not valid UTF-8 at byte {exc.start}") from exc
    except yaml.YAMLError as exc:
        raise PolicyError(f"{path}: not valid YAML: {_yaml_problem(exc)}") from exc
    if not isinstance(data, dict):
        raise PolicyError(f"{path}: a policy file must be a YAML mapping")
    try:
        spec = PolicySpec.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            field = ".".join(str(p) for p in loc) or "(top level)"
            line = _line_of(node, loc)
            where = f"line {line}, " if line else ""
            problems.append(f"{path}: {where}field {field}: {err['msg']}")
        raise PolicyError("\n".join(problems)) from exc
    return PolicyFile(path, spec, hashlib.sha256(raw).hexdigest(), node)


def policy_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        raise PolicyError(f"{directory}: policy directory does not exist")
    return sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


def load_directory(directory: Path) -> list[PolicyFile]:
    files = [load_policy_file(p) for p in policy_files(directory)]
    seen: dict[str, Path] = {}
    for pf in files:
        if pf.spec.name in seen:
            raise PolicyError(
                f"{pf.path}: field name: policy {pf.spec.name!r} "
                f"already defined in {seen[pf.spec.name]}"
            )
        seen[pf.spec.name] = pf.path
    return files


def set_digest(files: list[PolicyFile]) -> str:
    h = hashlib.sha256()
    for pf in files:
        h.update(pf.spec.name.encode() + b"\0" + pf.digest.encode())
    return h.hexdigest()[:16]
