"""The shared Jinja2 environment and the validation helpers used by every renderer.

Autoescaping is off on purpose: the output is nginx, supervisord and systemd
configuration, not HTML. Each format has its own quoting rules, so every
value is validated in the input dataclass and escaped explicitly (by a
filter named after the format) where the template interpolates it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

# A path we are willing to write into any of the three formats unquoted:
# absolute, and free of whitespace, quotes, backslashes and the characters
# that are syntax in nginx ({ } ; $ #) or in shells. Deploy paths never need them.
_SAFE_PATH = re.compile(r"/[A-Za-z0-9._/@+=,:~-]*")

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_safe_path(field: str, value: str) -> None:
    """Raise ValueError naming `field` unless `value` is an absolute path of safe characters."""
    if not isinstance(value, str) or not _SAFE_PATH.fullmatch(value):
        raise ValueError(
            f"{field}: {value!r} must be an absolute path made of letters, digits and ._/@+=,:~-"
        )
    if "/../" in value + "/":
        raise ValueError(f"{field}: {value!r} must not contain '..' components")


def check_no_control(field: str, value: str) -> None:
    """Raise ValueError naming `field` if `value` holds a newline, NUL or other control char."""
    if _CONTROL.search(value):
        raise ValueError(f"{field}: {value!r} must not contain control characters or newlines")


def check_int(field: str, value: int, *, minimum: int, maximum: int | None = None) -> None:
    """Raise ValueError naming `field` unless `value` is an int in [minimum, maximum]."""
    # bool is an int subclass; True as a port or a timeout is always a mistake.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{field}: {value!r} must be an integer")
    if value < minimum or (maximum is not None and value > maximum):
        upper = "" if maximum is None else f" and <= {maximum}"
        raise ValueError(f"{field}: {value} must be >= {minimum}{upper}")


def make_environment(filters: dict[str, Callable[..., Any]]) -> Environment:
    """A strict environment over gin_deploy/render/templates with the given filters."""
    env = Environment(
        loader=PackageLoader("gin_deploy.render", "templates"),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        # Config files, not HTML: each value is validated and escaped for its format.
        autoescape=False,  # noqa: S701
    )
    env.filters.update(filters)
    return env
