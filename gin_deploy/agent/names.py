"""Names the agent accepts, defined once: config validation and renderers import them."""

from __future__ import annotations

import re

# An environment variable name as a POSIX shell, systemd and supervisord all accept it.
ENV_NAME_PATTERN = "[A-Za-z_][A-Za-z0-9_]*"
ENV_NAME = re.compile(ENV_NAME_PATTERN)


def is_env_name(name: object) -> bool:
    return isinstance(name, str) and ENV_NAME.fullmatch(name) is not None
