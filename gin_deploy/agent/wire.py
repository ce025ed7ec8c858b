"""JSON <-> frozen dataclasses, driven by the dataclasses themselves.

One definition of a message serves both ends of a process boundary: `dump` turns an
instance into plain JSON values, `load` turns JSON values back into the same instance or
reports every problem at once, each with its field path (`instances[1].port ...`): unknown
keys, missing required ones, wrong types, failed checks.

A field's JSON key is its name in camelCase. Its type annotation says what it holds: str,
int, float, bool, Literal[...], Optional[X], tuple[X, ...], dict[str, X], another such
dataclass, or a Union of dataclasses told apart by a Literal field (a tag). `meta()` in a
field's metadata may add a `check` (value -> problem or None, run once the type is right)
and `omit_default` (the key is left out while the value is the default: optional extras).
A class may define `problems()` -> [(key, problem)] for rules across its fields.

Hints are resolved with typing.get_type_hints, on the hosts' Python too (3.9+): modules
of messages spell unions as Optional[...] / Union[...], since `X | Y` needs 3.10.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable
from typing import Any, Literal, TypeVar

T = TypeVar("T")

_BAD: Any = object()  # a value that failed; its problem is already recorded


class WireError(ValueError):
    """Every problem of one message, each starting with its field path."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def meta(check: Callable[[Any], str | None] | None = None, *,
         omit_default: bool = False) -> dict[str, Any]:
    """Metadata for `dataclasses.field(metadata=...)`."""
    return {"check": check, "omit_default": omit_default}


def camel(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(part[:1].upper() + part[1:] for part in rest)


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def dump(value: Any) -> Any:
    """Plain JSON values (dicts, lists, str, numbers, bool, None) for `value`."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {}
        for f in dataclasses.fields(value):
            v = getattr(value, f.name)
            if f.metadata.get("omit_default") and v == _default(f):
                continue
            out[camel(f.name)] = dump(v)
        return out
    if isinstance(value, (tuple, list)):
        return [dump(v) for v in value]
    if isinstance(value, dict):
        return {k: dump(v) for k, v in value.items()}
    return value


def load(cls: type[T], data: Any) -> T:
    """`data` (parsed JSON) as a `cls`; WireError lists every problem."""
    problems: list[str] = []
    value = _load(cls, data, "", problems)
    if problems:
        raise WireError(problems)
    result: T = value
    return result


def _at(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _name(path: str) -> str:
    return path or "payload"


_hints_cache: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _hints_cache:
        _hints_cache[cls] = typing.get_type_hints(cls)
    return _hints_cache[cls]


def _load(tp: Any, data: Any, path: str, problems: list[str]) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if data is None:
        if origin is typing.Union and type(None) in args:
            return None
        problems.append(f"{_name(path)} must not be null")
        return _BAD
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _load_object(tp, data, path, problems)
    if origin is typing.Union:
        members = [a for a in args if a is not type(None)]
        if len(members) == 1:
            return _load(members[0], data, path, problems)
        return _load_tagged(members, data, path, problems)
    if origin is Literal:
        if isinstance(data, str) and data in args:
            return data
        problems.append(f"{_name(path)} must be one of {', '.join(args)} (got {data!r})")
        return _BAD
    if origin is tuple:
        if not isinstance(data, list):
            problems.append(f"{_name(path)} must be a list (got {data!r})")
            return _BAD
        items = [_load(args[0], v, f"{path}[{i}]", problems) for i, v in enumerate(data)]
        return _BAD if any(i is _BAD for i in items) else tuple(items)
    if origin is dict:
        if not isinstance(data, dict):
            problems.append(f"{_name(path)} must be an object (got {data!r})")
            return _BAD
        values = {k: _load(args[1], v, _at(path, k), problems) for k, v in data.items()}
        return _BAD if any(v is _BAD for v in values.values()) else values
    kinds: dict[Any, tuple[type, ...]] = {str: (str,), bool: (bool,), int: (int,),
                                          float: (int, float)}
    if tp not in kinds:
        raise TypeError(f"wire cannot load a {tp!r} ({_name(path)})")
    if isinstance(data, kinds[tp]) and (tp is bool or not isinstance(data, bool)):
        return data
    what = {str: "a string", bool: "true or false", int: "an integer", float: "a number"}[tp]
    problems.append(f"{_name(path)} must be {what} (got {data!r})")
    return _BAD


def _load_object(cls: type, data: Any, path: str, problems: list[str]) -> Any:
    if not isinstance(data, dict):
        problems.append(f"{_name(path)} must be a JSON object (got {data!r})")
        return _BAD
    hints = _hints(cls)
    fields = {camel(f.name): f for f in dataclasses.fields(cls) if f.init}
    before = len(problems)
    for key in data:
        if key not in fields:
            problems.append(f"{_at(path, key)} is not a known field "
                            f"(known: {', '.join(sorted(fields))})")
    kwargs: dict[str, Any] = {}
    for key, f in fields.items():
        where = _at(path, key)
        if key not in data:
            if _default(f) is dataclasses.MISSING:
                problems.append(f"{where} is required")
            continue
        value = _load(hints[f.name], data[key], where, problems)
        check = f.metadata.get("check")
        if value is not _BAD and value is not None and check is not None:
            problem = check(value)
            if problem:
                problems.append(f"{where} {problem}")
                value = _BAD
        kwargs[f.name] = value
    if len(problems) > before:
        return _BAD
    obj = cls(**kwargs)
    for key, problem in getattr(obj, "problems", list)():
        problems.append(f"{_at(path, key) if key else _name(path)} {problem}")
    return obj


def _tag(cls: type) -> tuple[str, str]:
    """(key, value) of the Literal field that tells `cls` apart in a Union."""
    for f in dataclasses.fields(cls):
        tp = _hints(cls)[f.name]
        if typing.get_origin(tp) is Literal and len(typing.get_args(tp)) == 1:
            return camel(f.name), typing.get_args(tp)[0]
    raise TypeError(f"{cls.__name__} has no Literal tag field to tell it apart in a Union")


def _load_tagged(members: list[Any], data: Any, path: str, problems: list[str]) -> Any:
    tags = {_tag(m)[1]: m for m in members}
    key = _tag(members[0])[0]
    if not isinstance(data, dict):
        problems.append(f"{_name(path)} must be a JSON object (got {data!r})")
        return _BAD
    if key not in data:
        problems.append(f"{_at(path, key)} is required")
        return _BAD
    if data[key] not in tags:
        problems.append(f"{_at(path, key)} must be one of {', '.join(tags)} "
                        f"(got {data[key]!r})")
        return _BAD
    return _load_object(tags[data[key]], data, path, problems)
