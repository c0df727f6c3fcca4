"""Request fields a client could use to get around suppression, and what the gateway does.

- `logit_bias`: keys are made canonical token ids (vLLM reads "+123", "0123" and " 123" all as
  token 123, so an alias placed after an operator ban would win); operator entries from the
  policies' request patch always override the client's on the same token.
- `allowed_token_ids`: a -100 bias is not a hard ban when every other token is masked, so
  tokens the operator biased down are removed from the client's allow-list.
- While output policies run, nothing that carries model output besides the checked text gets
  out: logprobs, prompt logprobs and token ids are not asked for upstream, and responses keep
  only an allow-list of fields (gateway.response_shape). Tool calls carry
  model text the output stage does not check, so tools are refused while output policies run.

The request allow-list, the prompt and its echo: the input stage's (gateway.request_text).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from gateway.errors import GatewayError

_TOKEN_ID = re.compile(r"^\s*\+?\d{1,9}\s*$")

#: Request fields that make vLLM return model output outside the checked text.
OUTPUT_CHANNELS = ("logprobs", "top_logprobs", "prompt_logprobs", "logprob_token_ids",
                   "return_token_ids", "return_tokens_as_token_ids")
TOOL_FIELDS = ("tools", "tool_choice", "functions", "function_call")


def _bad(message: str, param: str) -> GatewayError:
    return GatewayError(400, message, param=param, code="invalid_value")


def canonical_logit_bias(bias: Any) -> dict[str, float]:
    """`{token id: bias}` with canonical decimal keys; aliases of one token keep the lowest."""
    if bias is None:
        return {}
    if not isinstance(bias, dict):
        raise _bad("logit_bias must map token ids to numbers", "logit_bias")
    out: dict[str, float] = {}
    for raw_key, value in bias.items():
        key = raw_key
        if isinstance(raw_key, int) and not isinstance(raw_key, bool):
            key = str(raw_key)
        if not isinstance(key, str) or not _TOKEN_ID.match(key):
            raise _bad(f"logit_bias keys must be token ids, got {key[:32]!r}", "logit_bias")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _bad("logit_bias values must be numbers", "logit_bias")
        token = str(int(key))
        out[token] = min(float(value), out.get(token, float("inf")))
    return out


def patch_request(
    body: dict[str, Any], patch: Callable[[dict[str, Any]], None], output_active: bool
) -> None:
    """Run the policies' request patch so that no client field can undo or route around it."""
    client_bias = canonical_logit_bias(body.pop("logit_bias", None))
    patch(body)
    operator_bias = canonical_logit_bias(body.pop("logit_bias", None))
    merged = {**client_bias, **operator_bias}
    if merged:
        body["logit_bias"] = merged
    lowered = {int(t) for t, v in operator_bias.items() if v < 0}
    allowed = body.get("allowed_token_ids")
    if lowered and isinstance(allowed, list):
        kept = [t for t in allowed if t not in lowered]
        if not kept:
            raise GatewayError(400, "allowed_token_ids only lists tokens the content policy bans",
                               param="allowed_token_ids", code="content_filter")
        body["allowed_token_ids"] = kept
    if output_active:
        refuse_tools(body)
        for name in OUTPUT_CHANNELS:
            body.pop(name, None)


def refuse_tools(body: dict[str, Any]) -> None:
    used = next((name for name in TOOL_FIELDS if body.get(name) not in (None, [], "none")), None)
    if used is not None:
        raise GatewayError(
            400, "tool calls are not available while output content policies are active: "
            "their arguments would bypass the output check", param=used, code="unsupported",
        )
