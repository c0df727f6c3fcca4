"""API keys mapped to tenants, and the admin key. Keys are kept only as SHA-256 digests.

Key files (mounted Secrets) are re-read when they change, so a rotation needs no restart:
at most once a second a request stats them, and a changed file is parsed again. A change that
leaves no key or does not parse is refused and the keys in force stay (logged).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from gateway.errors import GatewayError

log = logging.getLogger("lethe")

#: Longest a rotated key file goes unnoticed; the check is one stat() per file.
RELOAD_CHECK_S = 1.0


class AuthConfigError(ValueError):
    """The key configuration cannot be used (an empty or missing keys file): refuse to start."""


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def _parse_pairs(text: str, source: str) -> dict[bytes, str]:
    """Lines or commas of `key:tenant` (or `sha256:<hex>:tenant` for pre-hashed keys)."""
    keys: dict[bytes, str] = {}
    for raw in text.replace(",", "\n").splitlines():
        item = raw.strip()
        if not item or item.startswith("#"):
            continue
        if item.startswith("sha256:"):
            hexdigest, _, tenant = item[len("sha256:") :].partition(":")
            try:
                raw_digest = bytes.fromhex(hexdigest)
            except ValueError as exc:
                raise ValueError(f"{source}: bad sha256 digest entry") from exc
            if len(raw_digest) != hashlib.sha256().digest_size:
                # A truncated digest would never match: a key silently locked out.
                raise ValueError(f"{source}: sha256 digest entry must be 64 hex characters")
            keys[raw_digest] = tenant.strip() or "default"
            continue
        key, _, tenant = item.partition(":")
        if not key:
            raise ValueError(f"{source}: empty API key entry")
        keys[digest(key)] = tenant.strip() or "default"
    return keys


@dataclass(frozen=True)
class Principal:
    tenant: str
    admin: bool = False


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)  # follows kubelet's ..data symlink to the current file
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


@dataclass(frozen=True)
class _Sources:
    """Where keys come from, for re-reading: the files, and the settings' keys already
    digested (plain keys are never held)."""

    env_keys: dict[bytes, str]
    api_keys_file: Path | None
    env_admin: bytes | None
    admin_key_file: Path | None


class KeyStore:
    """No keys configured at all means an open gateway (local development), said once at
    start-up. A configured keys file must hold at least one key: an empty one refuses to start
    (run open by not configuring the file, chart: auth.enabled=false)."""

    def __init__(
        self, keys: dict[bytes, str], admin: bytes | None, sources: _Sources | None = None
    ) -> None:
        self._keys = keys
        self._admin = admin
        self._sources = sources
        self._signatures: tuple[object, ...] = self._current_signatures()
        self._next_check = time.monotonic() + RELOAD_CHECK_S

    @classmethod
    def from_sources(
        cls,
        *,
        api_keys: str | None = None,
        api_keys_file: Path | None = None,
        admin_key: str | None = None,
        admin_key_file: Path | None = None,
    ) -> KeyStore:
        env_keys = _parse_pairs(api_keys, "LETHE_API_KEYS") if api_keys else {}
        env_admin = digest(admin_key) if admin_key else None
        sources = _Sources(env_keys, api_keys_file, env_admin, admin_key_file)
        keys = _read_keys(sources)
        admin = _read_admin(sources, at_start=True)
        return cls(keys, admin, sources)

    @property
    def open(self) -> bool:
        return not self._keys

    def _current_signatures(self) -> tuple[object, ...]:
        s = self._sources
        if s is None:
            return ()
        files = (s.api_keys_file, s.admin_key_file)
        return tuple(_signature(f) if f is not None else None for f in files)

    def refresh(self) -> None:
        """Re-read changed key files (at most once per RELOAD_CHECK_S)."""
        now = time.monotonic()
        if self._sources is None or now < self._next_check:
            return
        self._next_check = now + RELOAD_CHECK_S
        current = self._current_signatures()
        if current == self._signatures:
            return
        self._signatures = current
        try:
            keys = _read_keys(self._sources)
        except (AuthConfigError, ValueError, OSError) as exc:
            log.error("API keys not reloaded, the keys in force stay: %s", exc)
        else:
            if keys != self._keys:
                log.info("API keys reloaded: %d keys", len(keys))
            self._keys = keys
        admin = _read_admin(self._sources, at_start=False)
        if (admin is None) != (self._admin is None):
            log.warning("admin endpoints %s", "enabled" if admin else "disabled (no admin key)")
        self._admin = admin

    def authenticate(self, authorization: str | None) -> Principal:
        self.refresh()
        if self.open:
            return Principal("default")
        key = _bearer(authorization)
        wanted = digest(key) if key else b""
        tenant = None
        # Compare against every key so timing does not tell which prefix matched.
        for candidate, name in self._keys.items():
            if hmac.compare_digest(candidate, wanted):
                tenant = name
        if tenant is None:
            raise GatewayError(401, "invalid or missing API key", type="authentication_error",
                               code="invalid_api_key")
        return Principal(tenant)

    def authenticate_admin(self, authorization: str | None) -> Principal:
        self.refresh()
        key = _bearer(authorization)
        if self._admin is None:
            raise GatewayError(403, "admin endpoints are disabled (no admin key configured)",
                               type="permission_error", code="admin_disabled")
        if not key or not hmac.compare_digest(digest(key), self._admin):
            raise GatewayError(401, "invalid or missing admin key", type="authentication_error",
                               code="invalid_api_key")
        return Principal("admin", admin=True)


def _read_keys(sources: _Sources) -> dict[bytes, str]:
    keys: dict[bytes, str] = dict(sources.env_keys)
    path = sources.api_keys_file
    if path is not None:
        try:
            text = path.read_text()
        except OSError as exc:
            raise AuthConfigError(
                f"API keys file {path} cannot be read ({exc.strerror or exc}); mount the Secret "
                "there, or unset LETHE_API_KEYS_FILE to run without keys"
            ) from exc
        from_file = _parse_pairs(text, str(path))
        if not from_file:
            raise AuthConfigError(
                f"API keys file {path} holds no key: the gateway would accept every client. "
                "Add `key:tenant` lines, or unset LETHE_API_KEYS_FILE (chart: "
                "auth.enabled=false) to run without keys on purpose"
            )
        keys.update(from_file)
    return keys


def _read_admin(sources: _Sources, at_start: bool) -> bytes | None:
    path = sources.admin_key_file
    if path is not None:
        try:
            from_file = path.read_text().strip()
        except OSError:
            # A Secret without the admin key: admin endpoints off, the gateway still serves.
            if at_start:
                log.warning("admin key file %s is missing: admin endpoints disabled", path)
        else:
            if from_file:
                return digest(from_file)
    return sources.env_admin


def _bearer(authorization: str | None) -> str:
    if not authorization:
        return ""
    scheme, _, value = authorization.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""
