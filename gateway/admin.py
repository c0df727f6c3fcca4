"""Admin endpoints, behind the admin key: policies, reload, adapters."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.adapters import AdapterError
from gateway.errors import GatewayError, json_response

router = APIRouter(prefix="/admin", include_in_schema=False)


def _admin(request: Request) -> None:
    request.app.state.runtime.keys.authenticate_admin(request.headers.get("authorization"))


@router.get("/policies")
async def list_policies(request: Request) -> Response:
    _admin(request)
    runtime = request.app.state.runtime
    store = runtime.policies
    rows = []
    for tenant, policy in store.all_policies():
        spec = policy.spec
        rows.append(
            {
                "name": spec.name,
                "tenant": tenant,
                "kind": spec.kind,
                "mode": spec.mode,
                "stages": spec.stages,
                "action": spec.action,
                "filters": [b.type for b in policy.filters],
                "unlearning": runtime.adapter_manager.status(spec),
                "decoding": runtime.decoding.status(spec.name),
            }
        )
    return json_response(
        {
            "set": store.global_set.digest,
            "policies": rows,
            "reload_failures": store.reload_failures,
            "last_error": store.last_error,
        }
    )


@router.post("/reload")
async def reload(request: Request) -> Response:
    _admin(request)
    ok, detail = await request.app.state.runtime.policies.reload()
    if not ok:
        raise GatewayError(
            422, f"reload failed, previous policy set kept: {detail}", code="invalid_policy"
        )
    return json_response({"reloaded": True, "set": detail})


@router.get("/adapters")
async def list_adapters(request: Request) -> Response:
    _admin(request)
    registry = request.app.state.runtime.adapters
    return json_response({"adapters": [a.as_dict() for a in registry.list()]})


async def _policy_and_path(request: Request) -> tuple[str, Any]:
    body = await request.json()
    policy = body.get("policy") if isinstance(body, dict) else None
    if not isinstance(policy, str) or not policy:
        raise GatewayError(400, "body must name a `policy`", param="policy", code="invalid_value")
    path = body.get("path")
    if path is not None and not isinstance(path, str):
        raise GatewayError(400, "`path` must be a string", param="path", code="invalid_value")
    return policy, path


@router.post("/adapters/load")
async def load_adapter(request: Request) -> Response:
    """Load (or reload) a policy's adapter; `path` defaults to the policy's configured one."""
    _admin(request)
    runtime = request.app.state.runtime
    policy_name, path = await _policy_and_path(request)
    policy = next(
        (p for _, p in runtime.policies.all_policies() if p.spec.name == policy_name), None
    )
    if policy is None:
        raise GatewayError(404, f"no policy named {policy_name!r}", param="policy", code=404)
    target = Path(path) if path else runtime.adapter_manager.path_for(policy)
    if not await runtime.adapter_manager.ensure(policy_name, target):
        record = runtime.adapters.get(policy_name)
        raise GatewayError(
            502,
            f"adapter not loaded (filters stay on): {record.error if record else 'unknown'}",
            type="upstream_error",
            code="adapter_load_failed",
        )
    return json_response(runtime.adapters.get(policy_name).as_dict())


@router.post("/adapters/unload")
async def unload_adapter(request: Request) -> Response:
    _admin(request)
    runtime = request.app.state.runtime
    policy_name, _ = await _policy_and_path(request)
    record = runtime.adapters.get(policy_name)
    if record is None or record.state != "loaded":
        raise GatewayError(404, f"no adapter loaded for {policy_name!r}", code=404)
    try:
        await runtime.adapters.unload(record.name)
    except AdapterError as exc:
        raise GatewayError(
            502, str(exc), type="upstream_error", code="adapter_unload_failed"
        ) from exc
    return json_response(runtime.adapters.get(policy_name).as_dict())
