"""JSON-ready dicts to and from frozen dataclasses, driven by their type hints.

Used on the southbound stream and the vRouter control channel, so a config can be written,
compared and golden-tested as plain text.
"""

import dataclasses
import functools
import types
import typing
from enum import Enum
from typing import Any, TypeVar, get_args, get_origin, get_type_hints

T = TypeVar("T")


def to_dict(obj: Any) -> Any:
    """A dataclass (or tuple/list/enum/scalar of them) as JSON-ready data."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {name: to_dict(getattr(obj, name)) for name in _document_fields(type(obj))}
    if isinstance(obj, tuple | list):
        return [to_dict(x) for x in obj]
    if isinstance(obj, Enum):
        return obj.value
    return obj


def from_dict(cls: type[T], data: Any) -> T:
    """Rebuild `cls` from `to_dict` output; raises ValueError on a shape that does not fit."""
    return typing.cast(T, _decode(cls, data))


def _decode(tp: Any, data: Any) -> Any:
    origin = get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        args = get_args(tp)
        if data is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _decode(arg, data)
            except (ValueError, TypeError) as e:
                errors.append(str(e))
        raise ValueError(f"no member of {tp} fits {data!r}: {errors}")
    if origin is tuple:
        args = get_args(tp)
        if not isinstance(data, list | tuple):
            raise ValueError(f"expected a list for {tp}, got {data!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_decode(args[0], x) for x in data)
        if len(args) != len(data):
            raise ValueError(f"expected {len(args)} items for {tp}, got {len(data)}")
        return tuple(_decode(a, x) for a, x in zip(args, data, strict=True))
    if origin is typing.Literal:
        if data not in get_args(tp):
            raise ValueError(f"{data!r} is not one of {get_args(tp)}")
        return data
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(data, dict):
            raise ValueError(f"expected an object for {tp.__name__}, got {data!r}")
        kwargs = {}
        for name, hint, required in _fields(tp):
            if name in data:
                kwargs[name] = _decode(hint, data[name])
            elif required:
                raise ValueError(f"{tp.__name__}: missing field {name!r}")
        return tp(**kwargs)
    if isinstance(tp, type) and issubclass(tp, Enum):
        return tp(data)
    if tp is float and isinstance(data, int) and not isinstance(data, bool):
        return float(data)
    if tp in (int, str, bool, float):
        if not isinstance(data, tp) or (tp is int and isinstance(data, bool)):
            raise ValueError(f"expected {tp.__name__}, got {data!r}")
        return data
    raise TypeError(f"cannot decode into {tp!r}")


@functools.cache
def _document_fields(tp: type) -> tuple[str, ...]:
    """The names a document holds: a field outside __init__ is derived from the others."""
    return tuple(f.name for f in dataclasses.fields(tp) if f.init)


@functools.cache
def _fields(tp: type) -> tuple[tuple[str, Any, bool], ...]:
    """(name, type hint, required) per field; resolving hints is costly, classes are few."""
    hints = get_type_hints(tp)
    return tuple(
        (
            f.name,
            hints[f.name],
            f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING,
        )
        for f in dataclasses.fields(tp)
        if f.init
    )
