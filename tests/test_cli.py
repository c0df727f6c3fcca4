"""The `lethe` command as a user meets it: help that explains, mistakes as one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def lethe(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lethe_cli", *args],
        cwd=cwd, capture_output=True, text=True, timeout=120,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0]


def test_version_prints_the_package_version() -> None:
    proc = lethe("--version")
    assert proc.returncode == 0
    assert proc.stdout.startswith("lethe ")
    assert proc.stdout.split()[1][0].isdigit()


def test_serve_help_has_a_flag_and_its_variable_for_every_setting() -> None:
    proc = lethe("serve", "--help")
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())
    secrets = {"api_keys", "admin_key", "audit_key", "upstream_api_key"}
    for name in Settings.model_fields:
        if name in secrets:
            # Secrets never go on a command line (visible in `ps`); the epilog says where.
            assert f"--{name.replace('_', '-')} " not in text
            assert f"LETHE_{name.upper()}" in text
            continue
        assert f"--{name.replace('_', '-')}" in text
        assert f"env LETHE_{name.upper()}" in text
    assert "--workers" not in text


def test_every_setting_has_help_text_in_its_comment() -> None:
    from gateway.cli import setting_docs

    docs = setting_docs()
    assert [name for name in Settings.model_fields if not docs.get(name)] == []


def test_settings_with_fixed_values_list_their_choices() -> None:
    text = " ".join(lethe("serve", "--help").stdout.split())
    assert "--engine-decode {auto,off}" in text


def test_unlearning_train_help_names_every_method() -> None:
    from unlearning.methods import names

    proc = lethe("unlearning", "train", "--help")
    assert proc.returncode == 0
    for method in names():
        assert method in proc.stdout


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (("unlearning", "train", "--policy", "elena-marquez", "--method", "nope"),
         ("invalid choice", "nope")),
        (("unlearning", "train", "--policy", "nobody", "--method", "ga"),
         ("unknown policy", "nobody", "elena-marquez")),
        (("unlearning", "train", "--policy", "elena-marquez", "--method", "ga",
          "--target", "/nonexistent/model"), ("no target model", "make target")),
        (("unlearning", "train", "--policy", "elena-marquez", "--method", "ga",
          "--options", "{not json"), ("--options",)),
        (("serve", "--port", "99999"), ("port",)),
        (("serve", "--bogus"), ("unrecognized arguments", "--bogus")),
        (("policies", "check", "/nonexistent/dir"), ("does not exist",)),
        (("nonsense",), ("invalid choice",)),
    ],
    ids=["unknown-method", "unknown-policy", "missing-target-model", "bad-options-json",
         "bad-setting", "unknown-flag", "missing-policy-dir", "unknown-command"],
)
def test_user_mistakes_give_one_line_and_a_nonzero_exit(
    args: tuple[str, ...], needles: tuple[str, ...]
) -> None:
    assert_one_line_error(lethe(*args), *needles)


PII_POLICY = """name: {name}
kind: person
action: redact
data:
  pii:
    phone: 415-555-0100
filters:
  - type: pii
"""


def test_policies_check_reports_every_bad_file_with_lines(tmp_path: Path) -> None:
    (tmp_path / "a-good.yaml").write_text(PII_POLICY.format(name="good"))
    (tmp_path / "b-bad-type.yaml").write_text(
        PII_POLICY.format(name="bad-type") + "    partial_min_chars: many\n"
    )
    (tmp_path / "c-bad-field.yaml").write_text(
        PII_POLICY.format(name="bad-field").replace("action: redact", "action: explode")
    )
    proc = lethe("policies", "check", str(tmp_path))
    assert proc.returncode == 1
    assert "ok  good" in proc.stdout
    assert "1 policies valid, 2 invalid" in proc.stdout
    assert "b-bad-type.yaml: line 9, field filters.0.partial_min_chars" in proc.stderr
    assert "c-bad-field.yaml: line 3, field action" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_policies_check_fails_on_an_empty_directory_unless_allowed(tmp_path: Path) -> None:
    assert lethe("policies", "check", str(tmp_path)).returncode == 1
    assert lethe("policies", "check", "--allow-empty", str(tmp_path)).returncode == 0


def test_policies_check_passes_the_shipped_policies() -> None:
    proc = lethe("policies", "check", str(ROOT / "policies"))
    assert proc.returncode == 0, proc.stderr
    assert "invalid" in proc.stdout and ", 0 invalid" in proc.stdout
