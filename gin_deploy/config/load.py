"""Reading the running stack's config: the only code that touches the SDK's config map.

Secrets: values that must be secret (an SSH private key, a kubeconfig, a registry
password) may only come from config stored encrypted - nested secrets set with
`pulumi config set --secret --path 'targets[2].privateKey'` - or from a file path on
the deploying machine; a plain value is an error. App secrets are named in
`app.secretEnv` and read from their own secret config keys.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime import config as pulumi_config

from gin_deploy.config.schema import NAMESPACE
from gin_deploy.config.stack import RawValue, StackConfig, parse_stack_config


def _decode(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def read_raw_config(namespace: str = NAMESPACE) -> dict[str, RawValue]:
    """Every key of the namespace with its decoded value and whether it is secret.

    Reads the engine-provided config directly so that keys we do not know (typos)
    can be reported, and secret-ness is known per top-level key.
    """
    raw: dict[str, RawValue] = {}
    prefix = f"{namespace}:"
    # The SDK offers per-key reads only; the key set is the engine-provided map
    # (set_all_config) plus the PULUMI_CONFIG environment fallback.
    keys = set(pulumi_config.CONFIG.get()) | set(pulumi_config.get_config_env())
    for full_key in sorted(keys):
        if full_key.startswith(prefix):
            text = pulumi_config.get_config(full_key)
            raw[full_key[len(prefix):]] = RawValue(
                _decode(text) if isinstance(text, str) else text,
                pulumi_config.is_config_secret(full_key),
            )
    return raw


def load_stack_config() -> StackConfig:
    """The validated config of the running stack; raises ConfigError."""
    return parse_stack_config(
        read_raw_config(),
        project=pulumi.get_project(),
        stack=pulumi.get_stack(),
        project_dir=Path.cwd(),
    )
