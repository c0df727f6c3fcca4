"""Key files as Kubernetes mounts them: rotated in place (kubelet swaps a `..data` symlink),
a Secret without the admin key, an empty keys file."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.auth import RELOAD_CHECK_S, AuthConfigError, KeyStore
from tests.fakes.upstream import FakeUpstream, script
from tests.servers import RunningGateway, run_gateway

CHAT = "/v1/chat/completions"


class SecretMount:
    """A directory laid out like a mounted Secret: files are symlinks into `..data`, and an
    update writes a fresh timestamped directory and swaps the `..data` link atomically."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.generation = 0

    def write(self, files: dict[str, str]) -> None:
        self.generation += 1
        target = self.root / f"..{self.generation}"
        target.mkdir()
        for name, content in files.items():
            (target / name).write_text(content)
        tmp_link = self.root / "..data_tmp"
        tmp_link.symlink_to(target.name)
        os.replace(tmp_link, self.root / "..data")
        for name in files:
            link = self.root / name
            if not link.is_symlink():
                link.symlink_to(f"..data/{name}")
        for stale in [p for p in self.root.iterdir() if p.is_symlink() and p.name != "..data"]:
            if stale.name not in files:
                stale.unlink()

    def path(self, name: str) -> Path:
        return self.root / name


def _chat(gw: RunningGateway, key: str) -> int:
    body = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]}
    body.update(script(text="hello"))
    headers = {"authorization": f"Bearer {key}"}
    return httpx.post(gw.url + CHAT, json=body, headers=headers, timeout=10).status_code


def _admin(gw: RunningGateway, key: str) -> int:
    headers = {"authorization": f"Bearer {key}"}
    return httpx.get(gw.url + "/admin/policies", headers=headers, timeout=10).status_code


def _eventually(check: object, expected: object, timeout: float = 5 * RELOAD_CHECK_S) -> None:
    deadline = time.monotonic() + timeout
    while True:
        got = check()  # type: ignore[operator]
        if got == expected or time.monotonic() > deadline:
            assert got == expected
            return
        time.sleep(0.1)


@pytest.fixture
def mount(tmp_path: Path) -> SecretMount:
    root = tmp_path / "secret"
    root.mkdir()
    return SecretMount(root)


@pytest.fixture
def keyed_gateway(fake_upstream: FakeUpstream, mount: SecretMount) -> Iterator[RunningGateway]:
    mount.write({"api-keys": "old-key:team-a\n", "admin-key": "old-admin\n"})
    with run_gateway(
        upstream=fake_upstream.url,
        api_keys_file=mount.path("api-keys"),
        admin_key_file=mount.path("admin-key"),
    ) as gw:
        yield gw


def test_rotated_keys_apply_without_a_restart(
    keyed_gateway: RunningGateway, mount: SecretMount
) -> None:
    assert _chat(keyed_gateway, "old-key") == 200
    assert _chat(keyed_gateway, "new-key") == 401
    mount.write({"api-keys": "new-key:team-a\n", "admin-key": "new-admin\n"})
    _eventually(lambda: _chat(keyed_gateway, "new-key"), 200)
    assert _chat(keyed_gateway, "old-key") == 401
    _eventually(lambda: _admin(keyed_gateway, "new-admin"), 200)
    assert _admin(keyed_gateway, "old-admin") == 401


@pytest.mark.parametrize(
    "broken",
    ["", "# every key removed\n\n", "sha256:zz:team-a\n"],
    ids=["empty", "comments-only", "unparsable"],
)
def test_a_rotation_to_an_unusable_keys_file_keeps_the_keys_in_force(
    keyed_gateway: RunningGateway, mount: SecretMount, broken: str
) -> None:
    mount.write({"api-keys": broken, "admin-key": "old-admin\n"})
    time.sleep(3 * RELOAD_CHECK_S)
    assert _chat(keyed_gateway, "old-key") == 200
    assert _chat(keyed_gateway, "anything") == 401, "an emptied keys file must not open the gateway"


def test_a_secret_without_admin_key_starts_with_admin_routes_off(
    fake_upstream: FakeUpstream, mount: SecretMount
) -> None:
    mount.write({"api-keys": "k1:team-a\n"})
    with run_gateway(
        upstream=fake_upstream.url,
        api_keys_file=mount.path("api-keys"),
        admin_key_file=mount.path("admin-key"),
    ) as gw:
        assert _chat(gw, "k1") == 200
        assert _admin(gw, "k1") == 403
        # The operator adds the admin key to the Secret later: no restart needed.
        mount.write({"api-keys": "k1:team-a\n", "admin-key": "late-admin\n"})
        _eventually(lambda: _admin(gw, "late-admin"), 200)


@pytest.mark.parametrize(
    ("content", "complaint"),
    [
        ("", "holds no key"),
        ("# no keys yet\n", "holds no key"),
        (None, "cannot be read"),
    ],
    ids=["empty", "comments-only", "missing"],
)
def test_an_unusable_keys_file_refuses_to_start(
    fake_upstream: FakeUpstream, tmp_path: Path, content: str | None, complaint: str
) -> None:
    keys = tmp_path / "api-keys"
    if content is not None:
        keys.write_text(content)
    with pytest.raises(AuthConfigError, match=complaint):
        KeyStore.from_sources(api_keys_file=keys)
    with pytest.raises(RuntimeError, match="gateway failed to start"), run_gateway(
        upstream=fake_upstream.url, api_keys_file=keys
    ):
        pass


def test_no_keys_configured_at_all_is_still_an_open_development_gateway(
    fake_gateway: RunningGateway,
) -> None:
    assert fake_gateway.runtime.keys.open
    assert _chat(fake_gateway, "whatever") == 200
