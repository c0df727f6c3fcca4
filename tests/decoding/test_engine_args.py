"""How `lethe engine`, `lethe up` and the test session start vLLM with the decoding processor."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from decoding import POLICIES_ENV, PROCESSOR
from stack.engine import Engine, add_arguments


def test_the_engine_loads_the_processor_by_default(tmp_path: Path) -> None:
    eng = Engine(tmp_path, served_model_name="m", decode_policies=tmp_path)
    cmd = eng.command()
    assert (
        cmd[cmd.index("--logits-processors") + 1]
        == PROCESSOR
        == "decoding.memfree:MemFreeProcessor"
    )
    env = eng.environment()
    assert env[POLICIES_ENV] == str(tmp_path.resolve())
    # The processor implements the V1 runner's interface.
    assert env["VLLM_USE_V2_MODEL_RUNNER"] == "0"


def test_an_engine_without_the_processor_has_neither_flag_nor_index(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.delenv(POLICIES_ENV, raising=False)
    eng = Engine(tmp_path, served_model_name="m", decoding=False, decode_policies=tmp_path)
    assert "--logits-processors" not in eng.command()
    assert POLICIES_ENV not in eng.environment()


def test_the_engine_process_can_import_the_processor_from_its_environment(tmp_path: Path) -> None:
    env = Engine(tmp_path, served_model_name="m").environment()
    probe = "import decoding.memfree as m; print(m.MemFreeProcessor.__name__)"
    done = subprocess.run(
        [sys.executable, "-c", probe],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "MemFreeProcessor"


def test_lethe_engine_flags_name_the_policy_directory_or_turn_decoding_off() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--decode-policies", "somewhere"])
    assert (args.decode_policies, args.no_decoding) == (Path("somewhere"), False)
    assert parser.parse_args(["--no-decoding"]).no_decoding is True
