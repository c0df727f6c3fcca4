"""Child processes that die with their owner: a supervisor for process groups, the checks on
a group, and free loopback ports. Every server Lethe starts (vLLM, a gateway under
evaluation or benchmark) goes through here."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

SHUTDOWN_S = 20


# vLLM runs under a tiny supervisor that leads the process group. The kernel sends the
# supervisor SIGTERM when the process that started it dies (PR_SET_PDEATHSIG = 1: a killed
# test run, a crashed CLI); it then stops the whole group, so no vLLM process outlives its
# owner. vLLM's own SIGTERM handling during start-up leaves its engine-core processes behind.
# A `-c` program rather than preexec_fn, which is unsafe in a process with threads.
_SUPERVISOR = """
import ctypes, os, signal, subprocess, sys, time
ctypes.CDLL(None).prctl(1, int(signal.SIGTERM))
if os.getppid() != int(sys.argv[1]):
    sys.exit(1)
child = subprocess.Popen(sys.argv[3:])
terminating = []
signal.signal(signal.SIGTERM, lambda *_: terminating.append(True))
while child.poll() is None and not terminating:
    time.sleep(0.2)
if terminating:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    os.killpg(0, signal.SIGTERM)
    deadline = time.monotonic() + float(sys.argv[2])
    while child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(0, signal.SIGKILL)
sys.exit(child.returncode)
"""


#: The supervisor relies on PR_SET_PDEATHSIG.
SUPERVISION = sys.platform.startswith("linux")


def supervised(cmd: Sequence[str], shutdown_s: float = SHUTDOWN_S) -> list[str]:
    """`cmd` wrapped so that it and its process group die with this process (Linux only:
    elsewhere `cmd` unchanged). Start it with `start_new_session=True`."""
    if not SUPERVISION:
        return list(cmd)
    return [sys.executable, "-c", _SUPERVISOR, str(os.getpid()), str(shutdown_s), *cmd]


def signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def group_alive(pgid: int) -> bool:
    """Whether any non-zombie process is left in the process group."""
    import psutil

    for proc in psutil.process_iter(["status"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                return True
        except (ProcessLookupError, psutil.Error):
            continue
    return False


def group_rss_bytes(pgid: int) -> int:
    """Resident memory summed over the process group (shared pages counted per process)."""
    import psutil

    total = 0
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid:
                total += proc.memory_info().rss
        except (ProcessLookupError, psutil.Error):
            continue
    return total


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (another process may take it before it is bound)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def stop_group(proc: subprocess.Popen[bytes], *, supervised: bool, timeout: float) -> None:
    """SIGTERM the process group that `proc` leads, SIGKILL what is left after `timeout`."""
    pgid = proc.pid
    if supervised and proc.poll() is None:
        # One SIGTERM, forwarded once by the supervisor: a second one makes uvicorn skip its
        # graceful shutdown.
        with contextlib.suppress(ProcessLookupError):
            os.kill(pgid, signal.SIGTERM)
    else:
        signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while group_alive(pgid) and time.monotonic() < deadline:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=0.2)
    if group_alive(pgid):
        signal_group(pgid, signal.SIGKILL)
        kill_deadline = time.monotonic() + 10
        while group_alive(pgid) and time.monotonic() < kill_deadline:
            time.sleep(0.1)
    proc.wait()


def python_module(module: str, *args: str, python: str | None = None) -> list[str]:
    return [python or sys.executable, "-m", module, *args]


class ServerError(RuntimeError):
    """A server exited or was not ready in time; the message carries the tail of its log."""


class Server:
    """A child process serving HTTP on 127.0.0.1:`port`, in its own supervised process group
    (it dies with this process), its output in `log_path`; ready when `health_path` answers
    200. Its memory and CPU are the server's own, not the supervisor's."""

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        *,
        port: int,
        health_path: str,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        shutdown_s: float = SHUTDOWN_S,
    ) -> None:
        self.name = name
        self.command = list(command)
        self.port = port
        self.health_path = health_path
        self.log_path = log_path
        self.env = {**os.environ, **(env or {})}
        self.cwd = cwd
        self.shutdown_s = shutdown_s
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Server:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                supervised(self.command, self.shutdown_s), stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=self.cwd,
                start_new_session=True,
            )
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The server's own process id (under the supervisor, the supervisor's child)."""
        if self.proc is None or not SUPERVISION:
            return self.proc.pid if self.proc else None
        import psutil

        children = psutil.Process(self.proc.pid).children()
        return children[0].pid if children else None

    def wait_ready(self, timeout: float) -> float:
        """Seconds until `health_path` answered 200; ServerError if it exits or times out."""
        import httpx

        assert self.proc is not None
        started = time.monotonic()
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() - started < timeout:
                if self.proc.poll() is not None:
                    code = self.proc.returncode
                    raise ServerError(f"{self.name} exited ({code}):\n{self.tail()}")
                try:
                    if client.get(self.url + self.health_path).status_code == 200:
                        return time.monotonic() - started
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
        raise ServerError(f"{self.name} not ready after {timeout:.0f} s:\n{self.tail()}")

    def _processes(self) -> list[Any]:
        import psutil

        assert self.proc is not None
        root = psutil.Process(self.proc.pid)
        # Under the supervisor the server is its child: the supervisor is not counted.
        return root.children(recursive=True) if SUPERVISION else [root, *root.children(True)]

    def rss_bytes(self) -> int:
        """Resident memory of the server process and its children."""
        import psutil

        total = 0
        for proc in self._processes():
            with contextlib.suppress(psutil.Error):
                total += proc.memory_info().rss
        return int(total)

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process and its children so far."""
        import psutil

        total = 0.0
        for proc in self._processes():
            with contextlib.suppress(psutil.Error):
                total += sum(proc.cpu_times()[:2])
        return float(total)

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None:
            return
        stop_group(self.proc, supervised=SUPERVISION, timeout=timeout)
        self.proc = None
