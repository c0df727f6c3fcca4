"""Hot reload under load: a valid change swaps with zero failed requests; a broken file keeps the
last good set and is counted as a failed reload."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import httpx
import pytest

from tests.fakes.upstream import FakeUpstream, script
from tests.reliability.conftest import CHAT_PATH, chat, pii_policy, write_policies
from tests.servers import RunningGateway, run_gateway

OLD_PHONE = "415-555-0101"
NEW_PHONE = "415-555-0202"
ADMIN = "reload-admin"
CONCURRENCY = 16


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _reload_count(gw: RunningGateway, result: str) -> float:
    for line in httpx.get(gw.url + "/metrics").text.splitlines():
        if line.startswith(f'lethe_config_reloads_total{{result="{result}"}}'):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError("reload metric missing")


async def _load(gw: RunningGateway, stop: asyncio.Event) -> tuple[int, list[str]]:
    """Requests until `stop`; returns how many were answered and every failure seen."""
    failures: list[str] = []
    done = 0
    text = f"Numbers: {OLD_PHONE} and {NEW_PHONE}."

    async def worker(client: httpx.AsyncClient, i: int) -> None:
        nonlocal done
        while not stop.is_set():
            body = chat("hi", stream=i % 2 == 0, **script(text=text))
            try:
                response = await client.post(CHAT_PATH, json=body)
                if response.status_code != 200 or b"error" in response.content:
                    failures.append(f"{response.status_code} {response.text[:200]}")
            except httpx.HTTPError as exc:
                failures.append(repr(exc))
            done += 1

    async with httpx.AsyncClient(base_url=gw.url, timeout=10) as client:
        await asyncio.gather(*(worker(client, i) for i in range(CONCURRENCY)))
    return done, failures


def _answer(gw: RunningGateway) -> str:
    text = f"Numbers: {OLD_PHONE} and {NEW_PHONE}."
    response = httpx.post(gw.url + CHAT_PATH, json=chat("hi", **script(text=text)), timeout=10)
    return str(response.json()["choices"][0]["message"]["content"])


@pytest.mark.parametrize("trigger", ["admin", "watcher"])
async def test_valid_reload_under_load_fails_no_request(
    fake_upstream: FakeUpstream, tmp_path: Path, trigger: str
) -> None:
    policies = write_policies(tmp_path / "p", {"person.yaml": pii_policy("person", OLD_PHONE)})
    interval = 0.2 if trigger == "watcher" else 0
    with run_gateway(upstream=fake_upstream.url, policies=policies, admin_key=ADMIN,
                     reload_interval_s=interval) as gw:
        assert OLD_PHONE not in _answer(gw) and NEW_PHONE in _answer(gw)
        before = _reload_count(gw, "success")
        stop = asyncio.Event()
        load = asyncio.create_task(_load(gw, stop))
        async with httpx.AsyncClient(base_url=gw.url, timeout=10) as admin:
            for i in range(5):
                await asyncio.sleep(0.3)
                phone = NEW_PHONE if i % 2 == 0 else OLD_PHONE
                _atomic_write(policies / "person.yaml", pii_policy("person", phone))
                if trigger == "admin":
                    response = await admin.post("/admin/reload",
                                                headers={"authorization": f"Bearer {ADMIN}"})
                    assert response.status_code == 200
            await asyncio.sleep(0.5)
        stop.set()
        done, failures = await load
        assert failures == []
        assert done >= 50
        assert _reload_count(gw, "success") >= before + (5 if trigger == "admin" else 1)
        # The last write protects NEW_PHONE instead of OLD_PHONE: the new set is in force.
        answer = _answer(gw)
        assert NEW_PHONE not in answer and OLD_PHONE in answer


@pytest.mark.parametrize("broken", [
    "name: person\nfilters: [\n",
    "name: person\nfilters:\n  - type: no-such-filter\n",
    "name: person\nstages: [input]\nsurprise: 1\nfilters:\n  - type: pii\n",
], ids=["bad-yaml", "unknown-filter", "unknown-key"])
async def test_broken_file_keeps_last_good_set_under_load(
    fake_upstream: FakeUpstream, tmp_path: Path, broken: str
) -> None:
    policies = write_policies(tmp_path / "p", {"person.yaml": pii_policy("person", OLD_PHONE)})
    with run_gateway(upstream=fake_upstream.url, policies=policies, admin_key=ADMIN,
                     reload_interval_s=0.2) as gw:
        failed_before = _reload_count(gw, "failure")
        stop = asyncio.Event()
        load = asyncio.create_task(_load(gw, stop))
        await asyncio.sleep(0.3)
        _atomic_write(policies / "person.yaml", broken)
        await asyncio.sleep(0.8)
        async with httpx.AsyncClient(base_url=gw.url, timeout=10) as admin:
            response = await admin.post("/admin/reload",
                                        headers={"authorization": f"Bearer {ADMIN}"})
        stop.set()
        done, failures = await load
        assert response.status_code == 422
        assert failures == [] and done > 0
        assert _reload_count(gw, "failure") >= failed_before + 2  # the watcher's and the admin's
        assert OLD_PHONE not in _answer(gw)
        ready = httpx.get(gw.url + "/readyz").json()
        assert ready["policies"]["reload_failures"] >= 2
