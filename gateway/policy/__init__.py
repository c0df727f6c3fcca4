"""Policies: the YAML models (models), from files to enforceable policies (loading), and the
live, hot-reloaded set (store). Enforcing them on a request is gateway.enforcement's job."""

from gateway.policy.models import (
    ALL_STAGES,
    DEFAULT_MESSAGE,
    ActionName,
    AdapterSpec,
    DecodeSpec,
    FilterSpec,
    Mode,
    PiiFields,
    PolicyDataSpec,
    PolicyError,
    PolicyFile,
    PolicySpec,
    Stage,
    StreamSpec,
    load_directory,
    load_policy_file,
    policy_files,
    set_digest,
)

__all__ = [
    "ALL_STAGES",
    "DEFAULT_MESSAGE",
    "ActionName",
    "AdapterSpec",
    "DecodeSpec",
    "FilterSpec",
    "Mode",
    "PiiFields",
    "PolicyDataSpec",
    "PolicyError",
    "PolicyFile",
    "PolicySpec",
    "Stage",
    "StreamSpec",
    "load_directory",
    "load_policy_file",
    "policy_files",
    "set_digest",
]
