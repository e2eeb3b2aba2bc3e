"""EC2 Query protocol requests: (key, value) pairs -> (action, version, typed params).

Names and types come from botocore's EC2 model (api.model); every request is treated as hostile:
counts, sizes and list indexes are bounded before anything is built from them.
"""

from __future__ import annotations

import base64
import binascii
import functools
import math
import re
import urllib.parse
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta, timezone
from typing import NamedTuple, TypeAlias, Union

from botocore.model import Shape, StructureShape

from openvpc.api import model
from openvpc.api.errors import ApiError, shown
from openvpc.api.xml import NOT_XML

Value: TypeAlias = Union[  # noqa: UP007 (a recursive alias needs the Union form)
    str, int, float, bool, bytes, datetime, list["Value"], dict[str, "Value"]
]
Params: TypeAlias = dict[str, Value]

MAX_PARAMS = 1000  # (key, value) pairs in one request, Action and Version included
MAX_KEY_CHARS = 256  # the longest EC2 wire name is far shorter
MAX_VALUE_CHARS = 64 * 1024  # room for base64 user data (16 KiB raw) and policy documents
MAX_LIST_INDEX = 1000  # the largest N accepted in Name.N
MAX_BODY_BYTES = 1024 * 1024  # a form body or query string, before decoding

# Presigned-URL auth parameters travel with the action's own; the SigV4 layer consumes them.
_AUTH_PREFIX = "X-Amz-"
_INT_RANGE = {"integer": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}
_INTEGER = re.compile(r"-?[0-9]{1,20}")
_FLOAT = re.compile(r"-?(?:[0-9]{1,40}(?:\.[0-9]{0,40})?|\.[0-9]{1,40})(?:[eE][+-]?[0-9]{1,4})?")
_TIMESTAMP = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,9}))?"
    r"(Z|[+-][0-9]{2}:[0-9]{2})?"
)
_DIGITS = re.compile(r"[0-9]+")
_INDEX = re.compile(r"[1-9][0-9]{0,5}")


class QueryRequest(NamedTuple):
    """A parsed request: the action, the Version given (None if absent) and typed params."""

    action: str
    version: str | None
    params: Params


# A node of the tree built from dotted keys: member name or list index -> subtree or raw value.
_Tree: TypeAlias = dict[str | int, Union["_Tree", str]]


def decode_form(data: bytes | str) -> list[tuple[str, str]]:
    """Decode a form body or query string into pairs, bounded in size and field count."""
    if len(data) > MAX_BODY_BYTES:
        raise ApiError("InvalidParameter", f"The request is larger than {MAX_BODY_BYTES} bytes")
    try:
        text = data.decode("ascii") if isinstance(data, bytes) else data
        return urllib.parse.parse_qsl(
            text,
            keep_blank_values=True,
            encoding="utf-8",
            errors="strict",
            max_num_fields=MAX_PARAMS,
        )
    except UnicodeError as e:
        raise ApiError("InvalidParameterValue", "The request is not valid UTF-8 form data") from e
    except ValueError as e:  # parse_qsl's answer to more than max_num_fields
        raise ApiError(
            "InvalidParameter", f"The request has more than {MAX_PARAMS} parameters"
        ) from e


def parse_query(pairs: Iterable[tuple[str, str]]) -> QueryRequest:
    """Parse decoded pairs into (action, version, params) following the action's input shape.

    Raises ApiError: MissingAction, InvalidAction, NoSuchVersion, UnknownParameter,
    MissingParameter, InvalidParameterValue, or InvalidParameter (repeated keys, bad indexes,
    too many parameters).
    """
    action: str | None = None
    version: str | None = None
    rest: list[tuple[str, str]] = []
    for count, (key, value) in enumerate(pairs, 1):
        if count > MAX_PARAMS:
            raise ApiError("InvalidParameter", f"The request has more than {MAX_PARAMS} parameters")
        if len(key) > MAX_KEY_CHARS:
            raise ApiError("UnknownParameter", f"The parameter {shown(key)} is not recognized")
        if len(value) > MAX_VALUE_CHARS:
            raise ApiError(
                "InvalidParameterValue",
                f"Value for parameter {key} is longer than {MAX_VALUE_CHARS} characters",
            )
        if key == "Action":
            if action is not None:
                raise _repeated(key)
            action = value
        elif key == "Version":
            if version is not None:
                raise _repeated(key)
            version = value
        elif not key.startswith(_AUTH_PREFIX):
            rest.append((key, value))
    if not action:
        raise ApiError("MissingAction", "The request must contain the parameter Action")
    if action not in model.operation_names():
        raise ApiError(
            "InvalidAction", f"The action {shown(action)} is not valid for this web service."
        )
    if version is not None and version != model.api_version():
        raise ApiError(
            "NoSuchVersion",
            f"The requested version ({shown(version)}) of service AmazonEC2 does not exist",
        )
    shape = model.input_shape(action)
    if shape is None:
        if rest:
            raise _unknown(rest[0][0])
        return QueryRequest(action, version, {})
    tree: _Tree = {}
    for key, value in rest:
        _insert(tree, shape, key, value)
    params = _structure(tree, shape, "")
    return QueryRequest(action, version, params)


def wire_name(member: Shape, member_name: str) -> str:
    """The EC2 query name of a member: queryName, else capitalised locationName, else its name."""
    query_name = member.serialization.get("queryName")
    if query_name:
        return str(query_name)
    name = str(member.serialization.get("name") or member_name)
    return name[:1].upper() + name[1:]


@functools.cache
def _wire_members(shape_name: str) -> dict[str, str]:
    """Wire name -> member name for one input structure (cached by the model's unique name)."""
    shape = model.service_model().shape_for(shape_name)
    assert isinstance(shape, StructureShape)
    return {wire_name(m, n): n for n, m in shape.members.items()}


def _insert(tree: _Tree, top: StructureShape, key: str, value: str) -> None:
    """Place one dotted key in the tree, checking each segment against the shapes it walks."""
    node = tree
    shape: Shape = top
    segments = key.split(".")
    for i, segment in enumerate(segments):
        slot: str | int
        if isinstance(shape, StructureShape):
            member = _wire_members(shape.name).get(segment)
            if member is None:
                raise _unknown(key)
            slot, shape = member, shape.members[member]
        elif shape.type_name == "list":
            slot, shape = _index(segment, key), shape.member  # type: ignore[attr-defined]
        else:  # a scalar (or a map, which EC2 inputs never use) cannot have sub-keys
            raise _unknown(key)
        if i == len(segments) - 1:
            # Only scalars take values; the query protocol's "List=" (empty list) is tolerated.
            if shape.type_name in ("structure", "map") or (
                shape.type_name == "list" and value != ""
            ):
                raise _unknown(key)
            if slot in node:
                raise _repeated(key)
            node[slot] = value
        else:
            child = node.setdefault(slot, {})
            if not isinstance(child, dict):
                raise _repeated(key)
            node = child


def _index(segment: str, key: str) -> int:
    """A 1-based list index, bounded so that no index can make us allocate anything."""
    if not _DIGITS.fullmatch(segment):
        raise _unknown(key)
    if not _INDEX.fullmatch(segment) or int(segment) > MAX_LIST_INDEX:
        raise ApiError(
            "InvalidParameter",
            f"The list index in {shown(key)} is not between 1 and {MAX_LIST_INDEX}",
        )
    return int(segment)


def _structure(tree: _Tree, shape: StructureShape, path: str) -> Params:
    out: Params = {}
    for member, raw in tree.items():
        assert isinstance(member, str)
        member_shape = shape.members[member]
        out[member] = _value(raw, member_shape, _join(path, wire_name(member_shape, member)))
    for required in shape.required_members:
        if required not in out:
            name = _join(path, wire_name(shape.members[required], required))
            raise ApiError("MissingParameter", f"The request must contain the parameter {name}")
    return out


def _value(raw: _Tree | str, shape: Shape, path: str) -> Value:
    """Convert a subtree or raw string to the type `shape` names."""
    kind = shape.type_name
    if isinstance(raw, dict):
        if isinstance(shape, StructureShape):
            return _structure(raw, shape, path)
        member = shape.member  # type: ignore[attr-defined]
        # Lists are ordered by index; gaps are tolerated as other EC2 servers do.
        return [_value(raw[i], member, f"{path}.{i}") for i in sorted(raw, key=int)]
    if kind == "list":  # "Name=" with an empty value
        return []
    if NOT_XML.search(raw):  # refused, so that every stored string can be rendered
        raise _invalid(raw, path, "It contains characters that are not allowed.")
    if kind == "string":
        return raw
    if kind in _INT_RANGE:
        low, high = _INT_RANGE[kind]
        if not _INTEGER.fullmatch(raw) or not low <= int(raw) <= high:
            raise _invalid(raw, path, "Expected an integer.")
        return int(raw)
    if kind == "boolean":
        if raw.lower() not in ("true", "false"):
            raise _invalid(raw, path, "Expected true or false.")
        return raw.lower() == "true"
    if kind in ("float", "double"):
        number = float(raw) if _FLOAT.fullmatch(raw) else math.nan
        if not math.isfinite(number):
            raise _invalid(raw, path, "Expected a number.")
        return number
    if kind == "timestamp":
        return _timestamp(raw, path)
    if kind == "blob":
        try:
            return base64.b64decode(raw, validate=True)
        except binascii.Error as e:
            raise _invalid(raw, path, "Expected base64.") from e
    raise _unknown(path)  # a type EC2 inputs never use


def _timestamp(raw: str, path: str) -> datetime:
    """An ISO 8601 timestamp as an aware UTC datetime (no offset means UTC)."""
    match = _TIMESTAMP.fullmatch(raw)
    if match is None:
        raise _invalid(raw, path, "Expected an ISO 8601 timestamp.")
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    tz = UTC
    if offset and offset != "Z":
        sign = -1 if offset[0] == "-" else 1
        tz = timezone(sign * timedelta(hours=int(offset[1:3]), minutes=int(offset[4:6])))
    try:
        when = datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            int(second),
            int((fraction or "0").ljust(6, "0")[:6]),
            tzinfo=tz,
        )
        return when.astimezone(UTC)
    except (ValueError, OverflowError) as e:
        raise _invalid(raw, path, "Expected an ISO 8601 timestamp.") from e


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _unknown(key: str) -> ApiError:
    return ApiError("UnknownParameter", f"The parameter {shown(key)} is not recognized")


def _repeated(key: str) -> ApiError:
    return ApiError("InvalidParameter", f"The parameter {shown(key)} is given more than once")


def _invalid(raw: str, path: str, expected: str) -> ApiError:
    return ApiError(
        "InvalidParameterValue", f"Value ({shown(raw)}) for parameter {path} is invalid. {expected}"
    )
