"""Arms: configurations of the same stack, each reached as a black-box OpenAI endpoint.

`load_arms(path)` reads arms of existing deployments from YAML (`--stack none`);
`LocalStack` brings the arms up on this machine one engine at a time (`--stack local`).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from evaluation.client import TIMEOUT_S, Endpoint
from filters.cache import cache_dir

ROOT = Path(__file__).resolve().parent.parent
POLICIES = ROOT / "policies"


@dataclass(frozen=True)
class Arm:
    name: str
    endpoint: Endpoint | None
    kind: str = "direct"  # direct | gateway
    description: str = ""
    #: a target evaluated through its own endpoint (one adapter per request: one gateway each)
    per_target: dict[str, Endpoint] = field(default_factory=dict)
    #: where the weights behind the arm answer prompt logprobs (membership inference)
    weights: Endpoint | None = None
    weights_per_target: dict[str, Endpoint] = field(default_factory=dict)
    #: targets this arm cannot evaluate, with the reason (adapter missing, routing unavailable)
    skipped: dict[str, str] = field(default_factory=dict)
    unavailable: str | None = None
    notes: tuple[str, ...] = ()
    #: seconds it took to build what the arm serves (adapter training), per policy
    build_seconds: dict[str, float] = field(default_factory=dict)

    def endpoint_for(self, policy: str) -> Endpoint | None:
        if policy in self.skipped:
            return None
        return self.per_target.get(policy, self.endpoint)

    def weights_for(self, policy: str) -> Endpoint | None:
        if policy in self.skipped:
            return None
        return self.weights_per_target.get(policy) or self.weights or self.endpoint_for(policy)


class ArmConfigError(ValueError):
    pass


class GatewayStartError(RuntimeError):
    """An arm's gateway exited or never became ready (its log tail is in the message)."""


def _endpoint(data: Any, where: str) -> Endpoint:
    if not isinstance(data, dict) or "base_url" not in data or "model" not in data:
        raise ArmConfigError(f"{where}: needs base_url and model")
    unknown = set(data) - {"base_url", "model", "api_key"}
    if unknown:
        raise ArmConfigError(f"{where}: unknown keys {sorted(unknown)}")
    return Endpoint(str(data["base_url"]), str(data["model"]), data.get("api_key"))


def load_arms(path: Path) -> list[Arm]:
    """Arms of existing endpoints:

    arms:
      - name: suppress
        kind: gateway
        base_url: http://127.0.0.1:8000/v1
        model: lethe-target
        api_key: sk-...                       # optional
        weights: {base_url: http://127.0.0.1:8001/v1, model: lethe-target}   # optional
        targets: {elena-marquez: {base_url: ..., model: ...}}                 # optional
    """
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    rows = data.get("arms") if isinstance(data, dict) else None
    if not isinstance(rows, list) or not rows:
        raise ArmConfigError(f"{path}: expected a mapping with a non-empty list `arms`")
    arms = []
    allowed = {"name", "kind", "description", "base_url", "model", "api_key", "weights",
               "targets"}
    for i, row in enumerate(rows):
        where = f"{path}: arms[{i}]"
        if not isinstance(row, dict) or "name" not in row:
            raise ArmConfigError(f"{where}: needs a name")
        unknown = set(row) - allowed
        if unknown:
            raise ArmConfigError(f"{where}: unknown keys {sorted(unknown)}")
        kind = row.get("kind", "direct")
        if kind not in ("direct", "gateway"):
            raise ArmConfigError(f"{where}: kind must be direct or gateway, not {kind!r}")
        endpoint = _endpoint({k: row[k] for k in ("base_url", "model", "api_key") if k in row},
                             where)
        targets = {str(k): _endpoint(v, f"{where}.targets.{k}")
                   for k, v in (row.get("targets") or {}).items()}
        weights = _endpoint(row["weights"], f"{where}.weights") if row.get("weights") else None
        arms.append(Arm(str(row["name"]), endpoint, kind, str(row.get("description", "")),
                        per_target=targets, weights=weights))
    names = [a.name for a in arms]
    if len(set(names)) != len(names):
        raise ArmConfigError(f"{path}: arm names must be unique: {names}")
    return arms


# --- local stack ---------------------------------------------------------------------------


def adapter_dirs(policies: Sequence[str]) -> dict[tuple[str, str], Path]:
    """(policy, method) -> adapter directory, for adapters built under <cache>/adapters/."""
    root = cache_dir() / "adapters"
    found: dict[tuple[str, str], Path] = {}
    if not root.is_dir():
        return found
    for path in sorted(root.iterdir()):
        if not (path / "adapter_config.json").is_file():
            continue
        for policy in policies:
            if path.name.startswith(policy + "-"):
                found[(policy, path.name[len(policy) + 1 :])] = path
    return found


def build_seconds(adapter: Path) -> float | None:
    """Training time recorded in the adapter's manifest, whatever the key is called."""
    for name in ("manifest.json", "lethe-manifest.json", "training.json"):
        path = adapter / name
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text())
        except ValueError:
            return None
        return _find_seconds(data)
    return None


def _find_seconds(data: Any) -> float | None:
    if isinstance(data, dict):
        for key, value in data.items():
            if isinstance(value, int | float) and any(
                k in key.lower() for k in ("train_seconds", "seconds", "wall_s", "elapsed")
            ):
                return float(value)
        for value in data.values():
            found = _find_seconds(value)
            if found is not None:
                return found
    return None


def write_policies(dest: Path, modes: dict[str, str], adapters: dict[str, Path],
                   literals: dict[str, list[str]] | None = None) -> Path:
    """A copy of policies/ with each policy's `mode` set (policies not named: `off`), and
    `data.literals` added where given (what mode decode bans byte for byte)."""
    shutil.copytree(POLICIES, dest, dirs_exist_ok=True)
    for path in sorted(dest.glob("*.yaml")):
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
        name = spec["name"]
        spec["mode"] = modes.get(name, "off")
        if literals and name in literals:
            spec.setdefault("data", {})["literals"] = list(literals[name])
        if name in adapters:
            spec["adapter"] = {"path": str(adapters[name]),
                               "method": adapters[name].name[len(name) + 1 :]}
        path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return dest


class GatewayProcess:
    """`lethe serve` in a subprocess, on a policy directory of its own."""

    def __init__(self, upstream: str, policies: Path, log: Path, admin_key: str,
                 upstream_timeout_s: float = TIMEOUT_S) -> None:
        from stack.processes import Server, free_port

        self.admin_key = admin_key
        # The gateway must wait for the engine as long as the evaluation's client waits for
        # the gateway, or slow arms lose their slowest prompts (best-of-5 on LoRA) to a 504
        # that a direct arm would not see.
        timeout = str(upstream_timeout_s)
        env = dict(LETHE_ADMIN_KEY=admin_key, LETHE_RELOAD_INTERVAL_S="0",
                   LETHE_LOG_LEVEL="warning", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                   LETHE_FIRST_BYTE_TIMEOUT_S=timeout, LETHE_READ_TIMEOUT_S=timeout)
        port = free_port()
        # Supervised: a killed evaluation must not leave gateways behind.
        self.server = Server(
            "gateway",
            [sys.executable, "-m", "lethe_cli", "serve", "--upstream", upstream,
             "--policies", str(policies), "--port", str(port)],
            port=port, health_path="/readyz", log_path=log, env=env, cwd=ROOT, shutdown_s=30,
        ).start()

    @property
    def url(self) -> str:
        return self.server.url

    def wait_ready(self, timeout: float = 240) -> None:
        from stack.processes import ServerError

        try:
            self.server.wait_ready(timeout)
        except ServerError as exc:
            raise GatewayStartError(str(exc)) from None

    def policy_status(self, column: str) -> dict[str, str]:
        """One column of /admin/policies (unlearning, decoding) per policy name."""
        response = httpx.get(f"{self.url}/admin/policies", timeout=10,
                             headers={"authorization": f"Bearer {self.admin_key}"})
        response.raise_for_status()
        return {row["name"]: str(row.get(column, "")) for row in response.json()["policies"]}

    def unlearning_status(self) -> dict[str, str]:
        return self.policy_status("unlearning")

    def stop(self) -> None:
        self.server.stop(timeout=30)


def decode_plan(policies: Sequence[str]) -> tuple[dict[str, str], dict[str, list[str]],
                                                 dict[str, str]]:
    """Modes, literals and skipped targets of the `decode` arm.

    Mode decode needs text to index: a corpus file (the work) or the policy's literals (the
    concept's franchise names); for a person, her own policy data (the protected PII values)
    become literals. A policy with none of these is not run in this arm."""
    modes: dict[str, str] = {}
    literals: dict[str, list[str]] = {}
    skipped: dict[str, str] = {}
    for path in sorted(POLICIES.glob("*.yaml")):
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
        name, data = spec["name"], spec.get("data") or {}
        if name not in policies:
            continue
        if data.get("corpus_file") or data.get("literals"):
            modes[name] = "decode"
        elif data.get("pii"):
            modes[name] = "decode"
            literals[name] = [str(v) for v in data["pii"].values()]
        else:
            skipped[name] = "mode decode needs a corpus or literals; this policy has neither"
    return modes, literals, skipped


def adapter_routed(status: str) -> bool:
    """Whether the gateway says the policy's adapter is loaded and serves its requests."""
    lowered = status.lower()
    return bool(lowered) and not lowered.startswith(("unavailable", "not requested", "error",
                                                     "failed"))


@dataclass
class StackPlan:
    policies: list[str]
    arms: list[str] | None = None  # names to run; None: all
    engine_port: int = 0
    #: extra environment of every engine (e.g. VLLM_CPU_OMP_THREADS_BIND for both cores)
    engine_env: dict[str, str] = field(default_factory=dict)
    #: serve the target phase from this model instead of <cache>/models/lethe-target
    target_model: Path | None = None


class LocalStack:
    """Brings arms up on this machine: one vLLM engine at a time, gateways in front of it.

    Phases: the base model (arm `base`); the memorized target (`target`, `suppress`, `decode`,
    and per unlearning method `unlearn-<m>`, `both-<m>`); the retain-only oracle (`oracle`).
    """

    def __init__(self, plan: StackPlan, logs: Path) -> None:
        self.plan = plan
        self.logs = logs
        self.admin_key = "eval-" + os.urandom(8).hex()
        self.adapters = adapter_dirs(plan.policies)
        self.methods = sorted({m for _, m in self.adapters})
        self.models = {"base": None,
                       "target": plan.target_model or cache_dir() / "models" / "lethe-target",
                       "oracle": cache_dir() / "models" / "lethe-oracle"}
        self.tmp = tempfile.TemporaryDirectory(prefix="lethe-eval-stack-")

    def arm_names(self) -> list[str]:
        names = ["base", "target", "suppress", "decode"]
        names += [f"{mode}-{m}" for m in self.methods for mode in ("unlearn", "both")]
        names.append("oracle")
        return [n for n in names if self.plan.arms is None or n in self.plan.arms]

    def _wanted(self, name: str) -> bool:
        return self.plan.arms is None or name in self.plan.arms

    def arms(self) -> Iterator[Arm]:
        """Yields each arm live; what it needs is stopped when the caller asks for the next."""
        from stack.engine import resolve_model

        if self._wanted("base"):
            yield from self._phase(resolve_model("base"), "smollm2-135m-instruct", ["base"])
        target_arms = [n for n in self.arm_names() if n not in ("base", "oracle")]
        target_dir = self.models["target"]
        assert target_dir is not None
        if target_arms:
            if (target_dir / "config.json").is_file():
                yield from self._phase(target_dir, "lethe-target", target_arms)
            else:
                for name in target_arms:
                    yield Arm(name, None, unavailable=f"no target model at {target_dir} "
                              "(run `lethe unlearning memorize`)")
        oracle_dir = self.models["oracle"]
        assert oracle_dir is not None
        if self._wanted("oracle"):
            if (oracle_dir / "config.json").is_file():
                yield from self._phase(oracle_dir, "lethe-oracle", ["oracle"])
            else:
                yield Arm("oracle", None, unavailable=f"no oracle model at {oracle_dir}")

    def _phase(self, model_dir: Path, served: str, names: list[str]) -> Iterator[Arm]:
        from stack.engine import Engine
        from stack.processes import free_port

        decode_dir = None
        if "decode" in names:
            # The engine indexes these at start-up; requests naming no policy (every other
            # arm of the phase) pass through its processor untouched.
            modes, literals, _ = decode_plan(self.plan.policies)
            decode_dir = write_policies(Path(self.tmp.name) / "decode", modes, {}, literals)
        engine = Engine(model_dir, served_model_name=served,
                        port=self.plan.engine_port or free_port(),
                        log_path=self.logs / f"vllm-{served}.log", env=self.plan.engine_env,
                        decode_policies=decode_dir)
        engine.start()
        try:
            engine.wait_healthy(timeout=600)
            direct = Endpoint(engine.base_url + "/v1", served)
            for name in names:
                try:
                    yield from self._arm(name, engine.base_url, direct)
                except GatewayStartError as exc:
                    # one arm's broken gateway must not end the run of the others
                    last = str(exc).strip().splitlines()[-1:] or [""]
                    yield Arm(name, None, "gateway",
                              unavailable=f"its gateway did not start: {last[0][:240]}")
        finally:
            engine.stop()

    def _arm(self, name: str, upstream: str, direct: Endpoint) -> Iterator[Arm]:
        if name in ("base", "target", "oracle"):
            yield Arm(name, direct, "direct", weights=direct,
                      description=f"{direct.model} served by vLLM, no gateway")
            return
        if name == "decode":
            yield from self._decode_arm(upstream, direct)
            return
        if name == "suppress":
            modes = {p: "suppress" for p in self.plan.policies}
            with self._gateways({"all": modes}, name, upstream) as gws:
                yield Arm(name, Endpoint(gws["all"].url + "/v1", direct.model), "gateway",
                          weights=direct,
                          description="target behind the gateway, every policy in mode suppress")
            return
        mode, method = name.split("-", 1)
        yield from self._unlearn_arm(name, mode, method, upstream, direct)

    def _decode_arm(self, upstream: str, direct: Endpoint) -> Iterator[Arm]:
        modes, literals, skipped = decode_plan(self.plan.policies)
        if not modes:
            yield Arm("decode", None, "gateway", unavailable="no policy can run in mode decode",
                      skipped=skipped)
            return
        with self._gateways({"all": modes}, "decode", upstream, literals=literals) as gws:
            gw = gws["all"]
            status = gw.policy_status("decoding")
            per_target: dict[str, Endpoint] = {}
            for policy in modes:
                if status.get(policy, "").startswith("enforced by the engine"):
                    per_target[policy] = Endpoint(gw.url + "/v1", direct.model)
                else:
                    # the gateway fell back to the policy's filters: that is the suppress
                    # arm again, not decoding, so it is not counted as decode
                    skipped[policy] = f"decoding not enforced: {status.get(policy, 'unknown')}"
            yield Arm("decode", None, "gateway",
                      "target behind the gateway, policies in mode decode (MemFree in vLLM)",
                      per_target=per_target, weights=direct, skipped=skipped,
                      unavailable=None if per_target else "; ".join(skipped.values()))

    def _unlearn_arm(self, name: str, mode: str, method: str, upstream: str,
                     direct: Endpoint) -> Iterator[Arm]:
        skipped: dict[str, str] = {}
        configs: dict[str, dict[str, str]] = {}
        for policy in self.plan.policies:
            if (policy, method) not in self.adapters:
                skipped[policy] = f"no {method} adapter for {policy}"
                continue
            other = "suppress" if mode == "both" else "off"
            configs[policy] = {p: (mode if p == policy else other) for p in self.plan.policies}
        weights = self._load_adapters(direct, method)
        seconds = {p: s for p in configs
                   if (s := build_seconds(self.adapters[(p, method)])) is not None}
        if not configs:
            yield Arm(name, None, "gateway", unavailable=f"no {method} adapters", skipped=skipped)
            return
        with self._gateways(configs, name, upstream, method) as gws:
            per_target: dict[str, Endpoint] = {}
            notes: list[str] = []
            for policy, gw in gws.items():
                status = gw.unlearning_status().get(policy, "")
                if adapter_routed(status):
                    per_target[policy] = Endpoint(gw.url + "/v1", direct.model)
                elif mode == "unlearn" and policy in weights:
                    # The gateway could not route to the adapter: measure the adapter itself,
                    # served by vLLM directly, and say so.
                    per_target[policy] = weights[policy]
                    notes.append(f"{policy}: gateway reported '{status}'; the adapter was "
                                 "evaluated directly on vLLM")
                else:
                    skipped[policy] = f"gateway unlearn routing unavailable: {status}"
            description = (f"target + {method} adapter via the gateway in mode {mode}"
                           + (", other policies suppressed" if mode == "both" else ""))
            yield Arm(name, None, "gateway", description, per_target=per_target,
                      weights_per_target={p: w for p, w in weights.items() if p in per_target},
                      skipped={p: r for p, r in skipped.items() if p not in per_target},
                      notes=tuple(notes), build_seconds=seconds,
                      unavailable=None if per_target else "; ".join(skipped.values()))

    def _load_adapters(self, direct: Endpoint, method: str) -> dict[str, Endpoint]:
        """Adapters loaded into vLLM under eval names, for prompt logprobs of those weights."""
        loaded: dict[str, Endpoint] = {}
        for (policy, m), path in self.adapters.items():
            if m != method:
                continue
            lora = f"eval-{policy}-{method}"
            response = httpx.post(f"{direct.root}/v1/load_lora_adapter", timeout=120,
                                  json={"lora_name": lora, "lora_path": str(path)})
            if response.status_code == 200 or "already" in response.text:
                loaded[policy] = Endpoint(direct.base_url, lora)
        return loaded

    class _GatewaySet:
        def __init__(self, stack: LocalStack, configs: dict[str, dict[str, str]], name: str,
                     upstream: str, method: str | None,
                     literals: dict[str, list[str]] | None = None) -> None:
            self.stack, self.configs, self.name = stack, configs, name
            self.upstream, self.method, self.literals = upstream, method, literals
            self.procs: dict[str, GatewayProcess] = {}
            self.tmp = tempfile.TemporaryDirectory(prefix=f"lethe-eval-{name}-")

        def __enter__(self) -> dict[str, GatewayProcess]:
            try:
                for key, modes in self.configs.items():
                    adapters = ({p: d for (p, m), d in self.stack.adapters.items()
                                 if m == self.method} if self.method else {})
                    policies = write_policies(Path(self.tmp.name) / key, modes, adapters,
                                              self.literals)
                    self.procs[key] = GatewayProcess(
                        self.upstream, policies, self.stack.logs / f"gateway-{self.name}-{key}.log",
                        self.stack.admin_key)
                for proc in self.procs.values():
                    proc.wait_ready()
            except BaseException:
                self.__exit__()
                raise
            return self.procs

        def __exit__(self, *exc: object) -> None:
            for proc in self.procs.values():
                proc.stop()
            self.tmp.cleanup()

    def _gateways(self, configs: dict[str, dict[str, str]], name: str, upstream: str,
                  method: str | None = None, literals: dict[str, list[str]] | None = None
                  ) -> LocalStack._GatewaySet:
        return LocalStack._GatewaySet(self, configs, name, upstream, method, literals)
