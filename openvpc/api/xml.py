"""EC2 XML responses: an action's output (a dict following its output shape) and error bodies.

Element names come from botocore's EC2 model; every text is escaped by one function, and
characters XML 1.0 cannot carry are replaced, so no input can make a response ill-formed.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime

from botocore.model import Shape, StructureShape

from openvpc.api import model
from openvpc.api.errors import ApiError, http_status

_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>\n'
# Characters XML 1.0 cannot carry (the parser refuses them in requests, too).
NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_TAG = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,127}")


def namespace() -> str:
    """The namespace EC2 puts on every success response (with the trailing slash AWS sends)."""
    return f"http://ec2.amazonaws.com/doc/{model.api_version()}/"


def render_response(action: str, output: Mapping[str, object] | None, request_id: str) -> bytes:
    """The XML body of a successful `action`.

    `output` follows the action's output shape; actions without one answer
    `<return>true</return>` and take None or {}. Raises ValueError on a member the shape
    lacks or a value of the wrong type: that is a bug in the caller, never the client's doing.
    """
    out: list[str] = [_DECLARATION]
    root = f"{action}Response"
    out.append(f'<{_tag(root)} xmlns="{_escape(namespace())}">')
    _element(out, "requestId", _escape(request_id))
    shape = model.output_shape(action)
    if shape is None:
        if output:
            raise ValueError(f"{action} has no output shape; got {sorted(output)}")
        _element(out, "return", "true")
    else:
        _members(out, output or {}, shape, root)
    out.append(f"</{root}>")
    return "".join(out).encode("utf-8")


def render_error(code: str, message: str, request_id: str) -> tuple[int, bytes]:
    """The HTTP status and XML body of an EC2 error (note `RequestID`, not `requestId`)."""
    out: list[str] = [_DECLARATION, "<Response><Errors><Error>"]
    _element(out, "Code", _escape(code))
    _element(out, "Message", _escape(message))
    out.append("</Error></Errors>")
    _element(out, "RequestID", _escape(request_id))
    out.append("</Response>")
    return http_status(code), "".join(out).encode("utf-8")


def render_api_error(error: ApiError, request_id: str) -> tuple[int, bytes]:
    """render_error for an ApiError."""
    return render_error(error.code, error.message, request_id)


def xml_name(member: Shape, member_name: str) -> str:
    """The element name of an output member: its locationName, else its member name.

    botocore reads members that have no locationName under their member name as-is, so that is
    what clients understand (81 members of the model, none of them in the VPC actions).
    """
    return str(member.serialization.get("name") or member_name)


def _members(out: list[str], value: object, shape: StructureShape, path: str) -> None:
    if not isinstance(value, Mapping):
        raise ValueError(f"{path}: expected a mapping for {shape.name}, got {type(value).__name__}")
    for name, item in value.items():
        member = shape.members.get(name) if isinstance(name, str) else None
        if member is None:
            raise ValueError(f"{path}: {shape.name} has no member {name!r}")
        if item is not None:  # None is "absent", as in botocore's own dicts
            tag = xml_name(member, name)
            out.append(f"<{_tag(tag)}>")
            _value(out, item, member, f"{path}.{name}")
            out.append(f"</{tag}>")


def _value(out: list[str], value: object, shape: Shape, path: str) -> None:
    """Append the content of one element holding `value` of type `shape`."""
    kind = shape.type_name
    if isinstance(shape, StructureShape):
        _members(out, value, shape, path)
    elif kind == "list":
        if not isinstance(value, list | tuple):
            raise ValueError(f"{path}: expected a list, got {type(value).__name__}")
        member: Shape = shape.member  # type: ignore[attr-defined]
        item_tag = _tag(str(member.serialization.get("name") or "item"))
        for i, item in enumerate(value):
            if item is None:
                raise ValueError(f"{path}[{i}]: None in a list")
            out.append(f"<{item_tag}>")
            _value(out, item, member, f"{path}[{i}]")
            out.append(f"</{item_tag}>")
    else:
        out.append(_escape(_scalar(value, kind, path)))


def _scalar(value: object, kind: str, path: str) -> str:
    """The text of a scalar, checked against the type the model gives it."""
    if kind == "string" and isinstance(value, str):
        return value
    if kind == "boolean" and isinstance(value, bool):
        return "true" if value else "false"
    if kind in ("integer", "long") and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if (
        kind in ("float", "double")
        and isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
    ):
        return repr(float(value))
    if kind == "timestamp" and isinstance(value, datetime) and value.utcoffset() is not None:
        return _timestamp(value)
    if kind == "blob" and isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    raise ValueError(f"{path}: {type(value).__name__} is not a valid {kind}")


def _timestamp(value: datetime) -> str:
    """ISO 8601 in UTC with Z: milliseconds as EC2 sends them, microseconds when they matter."""
    utc = value.astimezone(UTC)
    base = utc.strftime("%Y-%m-%dT%H:%M:%S")
    if utc.microsecond % 1000:
        return f"{base}.{utc.microsecond:06d}Z"
    return f"{base}.{utc.microsecond // 1000:03d}Z"


def _element(out: list[str], tag: str, escaped_text: str) -> None:
    out.append(f"<{tag}>{escaped_text}</{tag}>")


def _tag(name: str) -> str:
    """A tag name from the model, checked anyway: no text from a request ever becomes a tag."""
    if not _TAG.fullmatch(name):
        raise ValueError(f"not an XML name: {name!r}")
    return name


def _escape(text: str) -> str:
    """Escape character data; \\r as a reference (parsers would turn a raw one into \\n)."""
    text = NOT_XML.sub("\ufffd", text)
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace("\r", "&#13;")
        .replace('"', "&quot;")
    )
