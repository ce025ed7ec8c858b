"""A small declarative schema for the stack config: parse, check, document.

Each config object is a frozen dataclass whose fields carry a `Spec` in their
metadata (the config key, a one-line doc, allowed values, a range). `parse`
turns raw JSON-ish values into those dataclasses and collects *every* problem
with its full key path instead of stopping at the first one, which is what lets
`pulumi preview` print one complete message before any resource exists. The
same specs generate the config reference in the README, so docs cannot drift.

A section's cross-field rules sit on its class as a hook, `check(path, problems,
ctx)`, which `parse_object` calls once every field of that object parsed: a rule
never sees a default that stands in for a rejected value, so it never reports a
consequence of another problem. Defaults that depend on other fields of the same
object are resolved in the class's `__post_init__` (with `fill`), once, so what
leaves parsing holds concrete values only.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar, Union, get_args, get_origin

import pulumi

NAMESPACE = "gin-deploy"

T = TypeVar("T")

# A check returns a problem description (without the path) or None.
Check = Callable[[Any], str | None]


@dataclass(frozen=True)
class Spec:
    key: str
    doc: str
    choices: tuple[Any, ...] = ()
    min: int | None = None
    max: int | None = None
    check: Check | None = None
    required: bool = False


def spec_field(
    key: str,
    doc: str,
    default: Any = dataclasses.MISSING,
    *,
    default_factory: Callable[[], Any] | Any = dataclasses.MISSING,
    choices: tuple[Any, ...] = (),
    min: int | None = None,
    max: int | None = None,
    check: Check | None = None,
) -> Any:
    """A dataclass field described for config parsing and documentation."""
    required = default is dataclasses.MISSING and default_factory is dataclasses.MISSING
    meta = {"spec": Spec(key, doc, choices, min, max, check, required)}
    if default_factory is not dataclasses.MISSING:
        return field(default_factory=default_factory, metadata=meta)
    if required:
        return field(metadata=meta)
    return field(default=default, metadata=meta)


class ConfigError(pulumi.RunError):
    """Invalid stack config; the message lists every problem by key path."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(
            f"invalid stack config ({len(problems)} problem{'s' if len(problems) != 1 else ''}); "
            f"nothing was deployed:\n{lines}"
        )


class Problems:
    """Collects config problems as `path: message` lines."""

    def __init__(self) -> None:
        self.items: list[str] = []
        # Paths of objects with a rejected field (their rules did not run).
        self.incomplete: set[str] = set()

    def add(self, path: str, message: str) -> None:
        self.items.append(f"{path}: {message}")

    def __bool__(self) -> bool:
        return bool(self.items)

    def __len__(self) -> int:
        return len(self.items)


@dataclass(frozen=True)
class ParseContext:
    """What a section's rules may know beyond its own values."""

    # Relative files in the config (app.source, tls.acme.caBundle) are under it.
    project_dir: Path
    # The top-level key being parsed is stored encrypted (secret config).
    secret: bool = False


class Checked(Protocol):
    def check(self, path: str, problems: Problems, ctx: ParseContext) -> None: ...


def require_secret(ctx: ParseContext, path: str, key: str, problems: Problems) -> None:
    """`key` under `path` holds a secret: its top-level config key must be encrypted."""
    if not ctx.secret:
        problems.add(f"{path}.{key}", "must be a secret, not plain text: set it with "
                     f"`pulumi config set --secret --path '{path.split(':', 1)[1]}.{key}'`"
                     " (or use the *Path variant pointing at a file)")


def fill(obj: object, **defaults: Any) -> None:
    """In `__post_init__` of a frozen config class: set each field still None to its
    resolved default. Call once per dependency step (a default may use an earlier one)."""
    for name, value in defaults.items():
        if getattr(obj, name) is None:
            object.__setattr__(obj, name, value)


def specs(cls: type) -> Iterator[tuple[dataclasses.Field[Any], Spec]]:
    for f in dataclasses.fields(cls):
        spec = f.metadata.get("spec")
        if spec is not None:
            yield f, spec


def _describe(tp: Any) -> str:
    origin = get_origin(tp)
    if tp is str:
        return "a string"
    if tp is bool:
        return "true or false"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if origin is tuple:
        return "a list"
    if origin in (dict, Mapping) or tp is dict:
        return "a map"
    if dataclasses.is_dataclass(tp):
        return "an object"
    return "a value"


def _optional_inner(tp: Any) -> Any | None:
    """For `X | None`, return X; otherwise None."""
    if get_origin(tp) in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(get_args(tp)) == 2:
            return args[0]
    return None


def parse_value(tp: Any, raw: Any, path: str, problems: Problems, ctx: ParseContext) -> Any:
    """Parse `raw` as type `tp`; on a problem record it and return None."""
    inner = _optional_inner(tp)
    if inner is not None:
        return None if raw is None else parse_value(inner, raw, path, problems, ctx)
    origin = get_origin(tp)
    if tp is bool:
        # Pulumi stores `config set x true` as the string "true".
        if isinstance(raw, bool):
            return raw
        if raw in ("true", "false"):
            return raw == "true"
    elif tp is int:
        if isinstance(raw, int) and not isinstance(raw, bool):
            return raw
        if isinstance(raw, float) and raw.is_integer():
            return int(raw)
        if isinstance(raw, str) and raw.strip().lstrip("-").isdigit():
            return int(raw)
    elif tp is float:
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            return float(raw)
        if isinstance(raw, str):
            try:
                return float(raw)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(raw, str):
            return raw
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            return str(raw)
    elif origin is tuple:
        (item_tp, _ellipsis) = get_args(tp)
        if isinstance(raw, list):
            items = [parse_value(item_tp, v, f"{path}[{i}]", problems, ctx)
                     for i, v in enumerate(raw)]
            return tuple(items)
    elif origin is dict:
        _k, val_tp = get_args(tp)
        if isinstance(raw, dict):
            return {
                str(k): parse_value(val_tp, v, f"{path}.{k}", problems, ctx)
                for k, v in raw.items()
            }
    elif dataclasses.is_dataclass(tp):
        if isinstance(raw, dict):
            return parse_object(typing.cast(type, tp), raw, path, problems, ctx)
    else:  # pragma: no cover - a schema bug, not a user error
        raise TypeError(f"unsupported schema type {tp!r} at {path}")
    problems.add(path, f"must be {_describe(tp)}, got {_show(raw)}")
    return None


def _show(raw: Any) -> str:
    text = repr(raw)
    return text if len(text) <= 60 else text[:57] + "..."


def parse_object(cls: type[T], raw: Mapping[str, Any], path: str, problems: Problems,
                 ctx: ParseContext) -> T:
    """Parse a mapping into dataclass `cls`, reporting unknown and missing keys, then
    run the class's `check` hook if every field parsed.

    On problems the returned object is built from defaults where values were bad;
    callers must check `problems` before using it.
    """
    start = len(problems)
    hints = typing.get_type_hints(cls)
    known = {spec.key: (f, spec) for f, spec in specs(cls)}
    values: dict[str, Any] = {}
    for key in raw:
        if key not in known:
            allowed = ", ".join(sorted(known))
            problems.add(f"{path}.{key}", f"unknown key (allowed: {allowed})")
    for key, (f, spec) in known.items():
        sub = f"{path}.{key}"
        if key not in raw or raw[key] is None:
            if spec.required:
                problems.add(sub, f"is required ({spec.doc})")
            continue
        before = len(problems)
        value = parse_value(hints[f.name], raw[key], sub, problems, ctx)
        if len(problems) == before:
            _check(spec, value, sub, problems)
        if len(problems) == before:
            values[f.name] = value
    obj = _build(cls, values)
    if len(problems) > start:
        problems.incomplete.add(path)
    elif hasattr(obj, "check"):
        typing.cast(Checked, obj).check(path, problems, ctx)
    return obj


def _check(spec: Spec, value: Any, path: str, problems: Problems) -> None:
    if spec.choices and value not in spec.choices:
        allowed = " | ".join(str(c) for c in spec.choices)
        problems.add(path, f"must be one of {allowed}, got {_show(value)}")
        return
    if isinstance(value, int) and not isinstance(value, bool):
        if spec.min is not None and value < spec.min:
            problems.add(path, f"must be >= {spec.min}, got {value}")
            return
        if spec.max is not None and value > spec.max:
            problems.add(path, f"must be <= {spec.max}, got {value}")
            return
    if spec.check is not None:
        message = spec.check(value)
        if message:
            problems.add(path, message)


def _build(cls: type[T], values: dict[str, Any]) -> T:
    """Construct `cls`, filling required-but-invalid fields with placeholders."""
    kwargs = dict(values)
    for f, spec in specs(cls):
        if spec.required and f.name not in kwargs:
            kwargs[f.name] = None  # only reached when a problem was already recorded
    return cls(**kwargs)


def reference_rows(cls: type, prefix: str) -> Iterator[tuple[str, str, str]]:
    """(key path, default, doc) rows for the config reference, depth first."""
    hints = typing.get_type_hints(cls)
    for f, spec in specs(cls):
        tp = hints[f.name]
        inner = _optional_inner(tp) or tp
        key = f"{prefix}.{spec.key}"
        if f.default is not dataclasses.MISSING:
            default = _format_default(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            default = _format_default(f.default_factory())
        else:
            default = "required"
        doc = spec.doc
        if spec.choices:
            doc += " One of: " + ", ".join(f"`{c}`" for c in spec.choices) + "."
        items = get_args(inner)[0] if get_origin(inner) is tuple else None
        if dataclasses.is_dataclass(inner):
            yield key, "" if default.startswith("{") or default == "-" else default, doc
            yield from reference_rows(typing.cast(type, inner), key)
        elif items is not None and dataclasses.is_dataclass(items):
            # A list of objects: its items' keys follow as `key[].field`.
            yield key, default, doc
            yield from reference_rows(typing.cast(type, items), f"{key}[]")
        else:
            yield key, default, doc


def _format_default(value: Any) -> str:
    if value is None:
        return "-"
    if dataclasses.is_dataclass(value):
        return "{…}"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, tuple | list):
        return "`[" + ", ".join(str(v) for v in value) + "]`"
    if isinstance(value, dict):
        return "`{}`" if not value else f"`{value}`"
    return f"`{value}`"
