"""Gateway settings: CLI flags or env vars with the LETHE_ prefix; unknown keys fail loudly."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LETHE_", extra="forbid", frozen=True)

    #: Base URL of the vLLM OpenAI server the gateway fronts.
    upstream: str = "http://127.0.0.1:8001"
    #: Directory of policy YAML files (hot-reloaded); none: no policy, pure pass-through.
    policies: Path | None = None
    #: Address the gateway listens on.
    host: str = "127.0.0.1"
    #: Port the gateway listens on.
    port: int = Field(8000, ge=0, le=65535)

    #: Model names clients may ask for; empty means "whatever the upstream lists".
    served_models: tuple[str, ...] = ()

    #: Longest wait to open a connection to the upstream.
    connect_timeout_s: float = Field(5.0, gt=0)
    #: Longest wait for the upstream's status line and headers.
    first_byte_timeout_s: float = Field(60.0, gt=0)
    #: Longest wait for a whole (non-streamed) upstream answer's body.
    read_timeout_s: float = Field(60.0, gt=0)
    #: Upstream connections open at once (the pool's size).
    max_upstream_connections: int = Field(256, ge=1)
    #: Longest wait for a free upstream connection before answering 503 (pool exhausted).
    upstream_pool_timeout_s: float = Field(5.0, gt=0)
    #: Longest silence between two `data:` events of a completion stream; SSE comments and
    #: blank lines do not count as activity. Whole answers: `read_timeout_s` bounds the body.
    upstream_idle_timeout_s: float = Field(60.0, gt=0)
    #: Idle upstream connections are dropped after this; keep it below the upstream's own
    #: keep-alive (vLLM's uvicorn: 5 s), since a POST is never retried on a stale one.
    upstream_keepalive_s: float = Field(4.0, gt=0)
    #: A client's whole request body must arrive within this (slowloris: answered 408) ...
    body_read_timeout_s: float = Field(30.0, gt=0)
    #: ... and with no gap between two of its chunks longer than this.
    body_idle_timeout_s: float = Field(10.0, gt=0)

    #: Largest request body, counted on the bytes read (413 beyond).
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    #: Most chat messages in one request.
    max_messages: int = Field(1024, ge=1)
    #: Deepest JSON nesting in a request body.
    max_json_depth: int = Field(32, ge=4)

    #: Largest stretch of output held back while filters decide, in characters as the
    #: filters see them (folded words and single spaces: padding does not count). A stream
    #: whose filters need more ends with `content_filter`; held text is never released
    #: unchecked.
    max_holdback_chars: int = Field(1024, ge=64)
    #: The same cap in raw characters (padding included): bounds a stream's held memory.
    max_holdback_raw_chars: int = Field(16384, ge=1024)
    #: Threads of the shared filter pool (model work runs there, off the event loop).
    filter_threads: int = Field(2, ge=1)
    #: Time one filter check (or stream scan) may spend running its own work.
    filter_timeout_s: float = Field(5.0, gt=0)
    #: Time one filter check may spend waiting for its turns in the shared filter pool.
    filter_queue_timeout_s: float = Field(30.0, gt=0)

    #: How often policy files are checked for changes (0: no hot reload).
    reload_interval_s: float = Field(2.0, ge=0)
    #: On SIGTERM, how long streams in flight may take to finish.
    drain_seconds: float = Field(30.0, ge=0)

    #: Model and adapter cache (default ~/.cache/lethe).
    cache_dir: Path | None = None
    #: The embedding model directory (default: the bundle's MiniLM in the cache).
    embedding_model_dir: Path | None = None
    #: The served model's tokenizer, for token bans (default: the bundled SmolLM2's).
    tokenizer_dir: Path | None = None

    #: File of client API keys (`key:tenant` lines or `sha256:<hex>:tenant`), re-read on change.
    api_keys_file: Path | None = None
    #: File holding the admin key for /admin/* (none: admin endpoints off).
    admin_key_file: Path | None = None
    #: "key:tenant,key2:tenant2"; a file is the safer place (Kubernetes secret).
    api_keys: str | None = None
    #: The admin key itself; the file is the safer place.
    admin_key: str | None = None

    #: Where audit lines go: a file path, or `-` for the log.
    audit_log: str = "-"
    #: HMAC key for the span hashes in audit lines; random per process when unset.
    audit_key: str | None = None
    #: Log level: debug, info, warning, error.
    log_level: str = "info"

    #: Decoding-time suppression in the engine (policy mode decode/both): `auto` probes the
    #: engine for Lethe's logits processor; `off` never relies on it (their filters run).
    engine_decode: Literal["auto", "off"] = "auto"

    #: Bearer token sent on every call to the engine (vLLM's --api-key); the file is the
    #: safer place (a mounted Secret).
    upstream_api_key: str | None = None
    #: File holding that bearer token.
    upstream_api_key_file: Path | None = None
    #: Serve /metrics on this port only, not on the serving port (0: on the serving port).
    metrics_port: int = Field(0, ge=0, le=65535)

    #: `require`: when a policy bans tokens, the tokenizer must encode probe texts to the
    #: engine's token ids (/tokenize) or the gateway refuses to start; `off`: no check.
    tokenizer_check: Literal["require", "off"] = "require"

    #: The adapter store as this gateway sees it (relative `adapter.path`s resolve here) ...
    adapter_dir: Path | None = None
    #: ... and the same store as the engines see it: the path sent to /v1/load_lora_adapter.
    engine_adapter_dir: str | None = None
    #: Every engine replica, for loading adapters into each: base URLs, or one URL whose host
    #: name resolves to one A record per replica (a headless Service). Empty: the upstream.
    engine_endpoints: tuple[str, ...] = ()
    #: A headless Service's host name whose A records are the engine replicas.
    engine_discovery: str | None = None
    #: How often every engine replica is checked: for the adapters (re-loaded after a
    #: restart), and for the tokenizer while the engine has not answered yet.
    adapter_sync_interval_s: float = Field(10.0, gt=0)
    #: Unload a policy's adapter from the engines when a reload removes the policy. Never
    #: at start-up, and never because another gateway lacks the policy.
    adapter_unload_on_removal: bool = True
