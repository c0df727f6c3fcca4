"""API keys mapped to tenants, and the admin key. Keys are kept only as SHA-256 digests."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from pathlib import Path

from gateway.errors import GatewayError


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


class KeyStore:
    """No keys configured means an open gateway (local development), said once at start-up."""

    def __init__(self, keys: dict[bytes, str], admin: bytes | None) -> None:
        self._keys = keys
        self._admin = admin

    @classmethod
    def from_sources(
        cls,
        *,
        api_keys: str | None = None,
        api_keys_file: Path | None = None,
        admin_key: str | None = None,
        admin_key_file: Path | None = None,
    ) -> KeyStore:
        keys: dict[bytes, str] = {}
        if api_keys:
            keys.update(_parse_pairs(api_keys, "LETHE_API_KEYS"))
        if api_keys_file is not None:
            keys.update(_parse_pairs(api_keys_file.read_text(), str(api_keys_file)))
        admin = None
        if admin_key_file is not None:
            admin_key = admin_key_file.read_text().strip()
        if admin_key:
            admin = digest(admin_key)
        return cls(keys, admin)

    @property
    def open(self) -> bool:
        return not self._keys

    def authenticate(self, authorization: str | None) -> Principal:
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
        key = _bearer(authorization)
        if self._admin is None:
            raise GatewayError(403, "admin endpoints are disabled (no admin key configured)",
                               type="permission_error", code="admin_disabled")
        if not key or not hmac.compare_digest(digest(key), self._admin):
            raise GatewayError(401, "invalid or missing admin key", type="authentication_error",
                               code="invalid_api_key")
        return Principal("admin", admin=True)


def _bearer(authorization: str | None) -> str:
    if not authorization:
        return ""
    scheme, _, value = authorization.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""
