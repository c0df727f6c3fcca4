"""From policy files to enforceable policies: each policy's data read from disk, its filters
built and bound to their stages and action, a directory's global and tenant sets."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

import filters
from filters import Filter, PolicyData, TextFilter
from gateway.policy.models import (
    PolicyError,
    PolicyFile,
    PolicySpec,
    filter_options_error,
    load_directory,
    load_policy_file,
    policy_files,
    set_digest,
)

TENANTS_DIR = "tenants"


@dataclass(frozen=True)
class BoundFilter:
    type: str
    filter: Filter
    stages: frozenset[str]
    action: str


@dataclass(frozen=True)
class LoadedPolicy:
    spec: PolicySpec
    path: Path
    filters: tuple[BoundFilter, ...]


@dataclass(frozen=True)
class PolicySet:
    policies: tuple[LoadedPolicy, ...]
    digest: str

    @property
    def names(self) -> list[str]:
        return [p.spec.name for p in self.policies]


@dataclass(frozen=True)
class PolicyTree:
    """A policy directory: the global set, and each tenant's set that only adds to it."""

    global_set: PolicySet
    tenants: dict[str, PolicySet]

    def all_policies(self) -> list[tuple[str, LoadedPolicy]]:
        """(tenant or "*", policy) for every policy."""
        rows = [("*", p) for p in self.global_set.policies]
        rows += [(t, p) for t, s in self.tenants.items() for p in s.policies]
        return rows


EMPTY = PolicyTree(PolicySet((), "empty"), {})


def _read_lines(base: Path, name: str | None) -> list[str]:
    if not name:
        return []
    path = (base / name).resolve()
    try:
        return [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    except OSError as exc:
        raise PolicyError(f"{base}: data file {name}: {exc.strerror}") from exc


def policy_data(pf: PolicyFile) -> PolicyData:
    spec, base = pf.spec, pf.path.parent
    corpus = ""
    if spec.data.corpus_file:
        try:
            corpus = (base / spec.data.corpus_file).read_text(encoding="utf-8")
        except OSError as exc:
            raise PolicyError(
                f"{pf.path}: field data.corpus_file: {spec.data.corpus_file}: {exc.strerror}"
            ) from exc
    pii = spec.data.pii.model_dump(exclude_none=True) if spec.data.pii else None
    return PolicyData(
        name=spec.name,
        exemplars=tuple(spec.data.exemplars + _read_lines(base, spec.data.exemplars_file)),
        corpus=corpus,
        literals=tuple(spec.data.literals),
        pii=pii,
        near_misses=tuple(spec.data.near_misses + _read_lines(base, spec.data.near_misses_file)),
        base_dir=base,
    )


def build_policy_set(
    files: list[PolicyFile], resources: Any, *, max_holdback_chars: int
) -> PolicySet:
    loaded = []
    for pf in files:
        data = policy_data(pf)
        bound = []
        for i, fs in enumerate(pf.spec.filters):
            where = f"{pf.path}: field filters.{i}"
            try:
                cls = filters.get(fs.type)
            except KeyError as exc:
                raise PolicyError(f"{where}.type: {exc.args[0]}") from exc
            try:
                options = cls.Options.model_validate(fs.options())
            except ValidationError as exc:
                raise filter_options_error(pf, i, exc) from exc
            try:
                flt = cls.from_policy(data, resources, options)
            except PolicyError:
                raise
            except Exception as exc:
                raise PolicyError(f"{where} ({fs.type}): cannot build: {exc}") from exc
            holdback = pf.spec.stream.holdback_chars or max_holdback_chars
            if isinstance(flt, TextFilter) and flt.holdback_chars() > holdback:
                raise PolicyError(
                    f"{where} ({fs.type}): needs {flt.holdback_chars()} characters of hold-back, "
                    f"more than the {holdback} allowed"
                )
            stages = frozenset(fs.stages or pf.spec.stages) & frozenset(pf.spec.stages)
            bound.append(BoundFilter(fs.type, flt, stages, fs.action or pf.spec.action))
        loaded.append(LoadedPolicy(pf.spec, pf.path, tuple(bound)))
    return PolicySet(tuple(loaded), set_digest(files))


def load_tree(directory: Path, resources: Any, *, max_holdback_chars: int) -> PolicyTree:
    """`directory`'s policies, and those of each `tenants/<tenant>/` below it."""
    global_set = build_policy_set(
        load_directory(directory), resources, max_holdback_chars=max_holdback_chars
    )
    tenants: dict[str, PolicySet] = {}
    tenant_root = directory / TENANTS_DIR
    if tenant_root.is_dir():
        for tenant_dir in sorted(p for p in tenant_root.iterdir() if p.is_dir()):
            tenant_set = build_policy_set(
                load_directory(tenant_dir), resources, max_holdback_chars=max_holdback_chars
            )
            clash = set(tenant_set.names) & set(global_set.names)
            if clash:
                raise PolicyError(
                    f"{tenant_dir}: tenant policies cannot replace global ones: "
                    f"{', '.join(sorted(clash))}"
                )
            tenants[tenant_dir.name] = tenant_set
    return PolicyTree(global_set, tenants)


def check_command(directory: str, *, allow_empty: bool = False) -> int:
    """`lethe policies check DIR`: validate every file and build its filters as the gateway
    would, reporting every bad file (not only the first); exit 1 if any is bad, or if the
    directory holds no policy file at all (a typo in a path must not pass) unless allowed."""
    from gateway.runtime_resources import resources_from_settings
    from gateway.settings import Settings

    settings = Settings()
    try:
        paths = policy_files(Path(directory))
    except PolicyError as exc:
        print(exc, file=sys.stderr)
        return 1
    if not paths:
        print(f"{directory}: no policy files (*.yaml, *.yml)", file=sys.stderr)
        return 0 if allow_empty else 1
    resources = resources_from_settings(settings)
    seen: dict[str, Path] = {}
    good, bad = 0, 0
    for path in paths:
        try:
            pf = load_policy_file(path)
            if pf.spec.name in seen:
                raise PolicyError(
                    f"{pf.where(('name',))}: policy {pf.spec.name!r} already defined in "
                    f"{seen[pf.spec.name]}"
                )
            seen[pf.spec.name] = path
            policy = build_policy_set(
                [pf], resources, max_holdback_chars=settings.max_holdback_chars
            ).policies[0]
        except PolicyError as exc:
            print(exc, file=sys.stderr)
            bad += 1
            continue
        good += 1
        filters = ", ".join(b.type for b in policy.filters)
        print(f"ok  {policy.spec.name:<20} mode={policy.spec.mode:<8} filters: {filters}")
    print(f"{good} policies valid, {bad} invalid")
    return 1 if bad else 0
