"""Admin endpoints, behind the admin key: policies, reload, adapters."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

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
                "unlearning": runtime.unlearning_status(spec),
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
