"""API keys (hashed, constant-time), tenants that can only add policies, the admin key."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.auth import KeyStore
from tests.fakes.upstream import FakeUpstream, script
from tests.reliability.conftest import CHAT_PATH, chat, pii_policy, write_policies
from tests.servers import RunningGateway, run_gateway

GLOBAL_PHONE = "415-555-0199"
ALPHA_PHONE = "212-555-0175"
KEYS = "key-alpha-1f9c:alpha,key-beta-77d0:beta"
ADMIN = "admin-key-5b21"


def _auth(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def tenant_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_policies(tmp_path_factory.mktemp("tenants") / "policies", {
        "global-person.yaml": pii_policy("global-person", GLOBAL_PHONE),
        "tenants/alpha/alpha-person.yaml": pii_policy("alpha-person", ALPHA_PHONE),
    })


@pytest.fixture(scope="module")
def keyed(fake_upstream: FakeUpstream, tenant_dir: Path) -> Iterator[RunningGateway]:
    with run_gateway(upstream=fake_upstream.url, policies=tenant_dir, api_keys=KEYS,
                     admin_key=ADMIN) as gw:
        yield gw


def _answer(gw: RunningGateway, key: str, text: str) -> str:
    response = httpx.post(gw.url + CHAT_PATH, headers=_auth(key),
                          json=chat("hello", **script(text=text)), timeout=10)
    assert response.status_code == 200, response.text
    return str(response.json()["choices"][0]["message"]["content"])


@pytest.mark.parametrize(
    "headers",
    [{}, _auth("wrong-key"), {"authorization": "Basic a2V5LWFscGhhLTFmOWM="},
     {"authorization": "Bearer"}, _auth(ADMIN), _auth("key-alpha-1f9cx")],
    ids=["missing", "wrong", "basic-scheme", "empty-bearer", "admin-key-is-not-an-api-key",
         "key-with-suffix"],
)
def test_completion_without_a_valid_key_is_a_401_envelope(
    keyed: RunningGateway, headers: dict[str, str]
) -> None:
    response = httpx.post(keyed.url + CHAT_PATH, headers=headers, json=chat("hi"), timeout=10)
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}


def test_models_need_a_key_and_probes_do_not(keyed: RunningGateway) -> None:
    assert httpx.get(keyed.url + "/v1/models").status_code == 401
    assert httpx.get(keyed.url + "/v1/models", headers=_auth("key-beta-77d0")).status_code == 200
    assert httpx.get(keyed.url + "/healthz").status_code == 200
    assert httpx.get(keyed.url + "/readyz").status_code == 200


def test_keys_are_held_only_as_sha256_digests(keyed: RunningGateway) -> None:
    store = keyed.runtime.keys
    held = repr(vars(store))
    for plain in ("key-alpha-1f9c", "key-beta-77d0", ADMIN):
        assert plain not in held
        assert hashlib.sha256(plain.encode()).digest() in (*store._keys, store._admin)


def test_each_tenant_gets_global_policies_plus_its_own(keyed: RunningGateway) -> None:
    text = f"Call {GLOBAL_PHONE} or {ALPHA_PHONE}."
    alpha = _answer(keyed, "key-alpha-1f9c", text)
    beta = _answer(keyed, "key-beta-77d0", text)
    assert GLOBAL_PHONE not in alpha and ALPHA_PHONE not in alpha
    assert GLOBAL_PHONE not in beta and ALPHA_PHONE in beta


@pytest.mark.parametrize("tenant_text", [
    pii_policy("global-person", "999-555-0100"),
    pii_policy("global-person", GLOBAL_PHONE, extra='mode: "off"\n'),
], ids=["same-name-other-data", "same-name-mode-off"])
def test_tenant_cannot_replace_a_global_policy_at_start_up(
    fake_upstream: FakeUpstream, tmp_path: Path, tenant_text: str
) -> None:
    policies = write_policies(tmp_path / "p", {
        "global-person.yaml": pii_policy("global-person", GLOBAL_PHONE),
        "tenants/alpha/lift.yaml": tenant_text,
    })
    with pytest.raises(RuntimeError, match="gateway failed to start"), run_gateway(
        upstream=fake_upstream.url, policies=policies
    ):
        pass
    # The same tenant policy under its own name is fine: the clash was the reason.
    (policies / "tenants/alpha/lift.yaml").write_text(tenant_text.replace("global-person", "own"))
    with run_gateway(upstream=fake_upstream.url, policies=policies) as gw:
        assert gw.runtime.policies.loaded


@pytest.mark.parametrize("tenant_text", [
    pii_policy("global-person", "999-555-0100"),
    pii_policy("global-person", GLOBAL_PHONE, extra='mode: "off"\n'),
], ids=["same-name-other-data", "same-name-mode-off"])
def test_tenant_override_added_by_reload_is_rejected_and_the_old_set_kept(
    fake_upstream: FakeUpstream, tmp_path: Path, tenant_text: str
) -> None:
    policies = write_policies(tmp_path / "p", {
        "global-person.yaml": pii_policy("global-person", GLOBAL_PHONE),
    })
    with run_gateway(upstream=fake_upstream.url, policies=policies, api_keys=KEYS,
                     admin_key=ADMIN) as gw:
        write_policies(policies, {"tenants/alpha/lift.yaml": tenant_text})
        response = httpx.post(gw.url + "/admin/reload", headers=_auth(ADMIN), timeout=10)
        assert response.status_code == 422
        assert "cannot replace global" in response.json()["error"]["message"]
        assert GLOBAL_PHONE not in _answer(gw, "key-alpha-1f9c", f"It is {GLOBAL_PHONE}.")


@pytest.mark.parametrize("method, path", [("GET", "/admin/policies"), ("POST", "/admin/reload")])
@pytest.mark.parametrize(
    "key, status",
    [(None, 401), ("key-alpha-1f9c", 401), ("not-a-key", 401), (ADMIN, 200)],
    ids=["no-key", "tenant-key", "unknown-key", "admin-key"],
)
def test_admin_endpoints_need_the_admin_key(
    keyed: RunningGateway, method: str, path: str, key: str | None, status: int
) -> None:
    headers = _auth(key) if key else {}
    response = httpx.request(method, keyed.url + path, headers=headers, timeout=10)
    assert response.status_code == status
    if status == 401:
        assert response.json()["error"]["type"] == "authentication_error"


def test_admin_endpoints_are_off_without_an_admin_key(fake_gateway: RunningGateway) -> None:
    response = httpx.get(fake_gateway.url + "/admin/policies", headers=_auth("anything"))
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "admin_disabled"


def test_admin_policy_listing_names_tenants(keyed: RunningGateway) -> None:
    rows = httpx.get(keyed.url + "/admin/policies", headers=_auth(ADMIN)).json()["policies"]
    assert {(r["tenant"], r["name"]) for r in rows} == {
        ("*", "global-person"), ("alpha", "alpha-person")
    }


def test_keys_come_from_files_including_prehashed_entries(
    fake_upstream: FakeUpstream, tmp_path: Path
) -> None:
    hashed = hashlib.sha256(b"file-key-two").hexdigest()
    keys_file = tmp_path / "keys"
    keys_file.write_text(f"# mounted secret\nfile-key-one:alpha\nsha256:{hashed}:beta\n")
    admin_file = tmp_path / "admin"
    admin_file.write_text("file-admin\n")
    with run_gateway(upstream=fake_upstream.url, api_keys_file=keys_file,
                     admin_key_file=admin_file) as gw:
        assert gw.runtime.keys.authenticate("Bearer file-key-one").tenant == "alpha"
        assert gw.runtime.keys.authenticate("Bearer file-key-two").tenant == "beta"
        ok = httpx.post(gw.url + CHAT_PATH, headers=_auth("file-key-two"), json=chat("hi"))
        assert ok.status_code == 200
        assert httpx.post(gw.url + CHAT_PATH, json=chat("hi")).status_code == 401
        assert httpx.get(gw.url + "/admin/policies", headers=_auth("file-admin")).status_code == 200


def test_keys_come_from_environment(
    fake_upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LETHE_API_KEYS", "env-key:gamma")
    monkeypatch.setenv("LETHE_ADMIN_KEY", "env-admin")
    with run_gateway(upstream=fake_upstream.url) as gw:
        assert httpx.post(gw.url + CHAT_PATH, headers=_auth("env-key"),
                          json=chat("hi")).status_code == 200
        assert httpx.post(gw.url + CHAT_PATH, json=chat("hi")).status_code == 401
        assert httpx.get(gw.url + "/admin/policies", headers=_auth("env-admin")).status_code == 200


def test_policy_files_cannot_carry_keys(fake_upstream: FakeUpstream, tmp_path: Path) -> None:
    policies = write_policies(tmp_path / "p", {
        "sneaky.yaml": pii_policy("sneaky", GLOBAL_PHONE, extra="api_keys: planted:alpha\n"),
    })
    with pytest.raises(RuntimeError, match="gateway failed to start"), run_gateway(
        upstream=fake_upstream.url, policies=policies
    ):
        pass


@pytest.mark.parametrize("entry", ["sha256:zz:alpha", "sha256:abcd:alpha", ":alpha"],
                         ids=["bad-hex", "short-digest", "empty-key"])
def test_malformed_key_entries_fail_loudly(entry: str) -> None:
    with pytest.raises(ValueError):
        KeyStore.from_sources(api_keys=entry)
