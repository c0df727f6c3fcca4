"""Child processes that die with their owner: a supervisor for process groups, the checks on
a group, and free loopback ports. Every server Lethe starts (vLLM, a gateway under
evaluation or benchmark) goes through here."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
from collections.abc import Sequence

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
