"""A test-only filter, registered as `fault` by this suite's conftest: it tests how the gateway
handles a filter that bans a token, raises, or overruns its time budget, not any real filter.
It is both kinds of filter (it checks text and patches the request), as a class may be."""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import Field

from filters.base import ALLOW, FilterOptions, FilterResult, PolicyData, RequestPatcher, TextFilter


class Fault(TextFilter, RequestPatcher):
    name = "fault"
    blocking = True

    class Options(FilterOptions):
        mode: Literal["ban", "raise", "slow"]
        #: Token the `ban` mode biases down through the request patch.
        token: int = 4242
        sleep_s: float = Field(1.0, ge=0)

    def __init__(self, options: Fault.Options) -> None:
        self.options = options

    @classmethod
    def from_policy(cls, data: PolicyData, resources: Any, options: FilterOptions) -> Fault:
        assert isinstance(options, cls.Options)
        return cls(options)

    def holdback_chars(self) -> int:
        return 16

    def check(self, text: str) -> FilterResult:
        if self.options.mode == "raise":
            raise RuntimeError("scripted filter failure")
        if self.options.mode == "slow":
            time.sleep(self.options.sleep_s)
        return ALLOW

    def patch_request(self, body: dict[str, Any]) -> None:
        if self.options.mode == "ban":
            body.setdefault("logit_bias", {})[str(self.options.token)] = -100


FILTER = Fault
