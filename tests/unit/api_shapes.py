"""Test helpers for the EC2 API: hypothesis strategies built from botocore's shapes, and
botocore's own serializer turning params into the form body a real client sends."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from botocore.awsrequest import create_request_object, prepare_request_dict
from botocore.model import Shape, StructureShape
from botocore.serialize import create_serializer
from hypothesis import strategies as st

from openvpc.api import model

MAX_DEPTH = 4

# Every character XML 1.0 can carry (the parser refuses the others, the renderer replaces them).
_TEXT = st.text(
    alphabet=st.characters(exclude_categories=("Cs", "Cc"), exclude_characters="\ufffe\uffff")
    | st.sampled_from("\t\n\r"),
    max_size=12,
)


def wire_body(action: str, params: dict[str, Any], validate: bool = True) -> str:
    """The urlencoded body botocore sends for `action` with `params` (its EC2 serializer)."""
    serializer = create_serializer("ec2", include_validation=validate)
    request = serializer.serialize_to_request(params, model.operation(action))
    prepare_request_dict(request, endpoint_url="https://ec2.test")
    body = create_request_object(request).prepare().body
    assert isinstance(body, str | bytes)
    return body.decode("ascii") if isinstance(body, bytes) else body


def values_for(shape: Shape, depth: int = 0) -> st.SearchStrategy[Any] | None:
    """Values of `shape` (None when none can be made within MAX_DEPTH).

    Lists and nested structures are never empty: the EC2 serializer sends nothing for them,
    so they could not come back.
    """
    kind = shape.type_name
    if isinstance(shape, StructureShape):
        members: dict[str, st.SearchStrategy[Any]] = {}
        for name, member in shape.members.items():
            required = name in shape.required_members
            if depth >= MAX_DEPTH and not required:
                continue
            strategy = values_for(member, depth + 1)
            if strategy is None:
                if required:
                    return None
                continue
            members[name] = strategy
        required_part = {n: s for n, s in members.items() if n in shape.required_members}
        optional_part = {n: s for n, s in members.items() if n not in shape.required_members}
        if depth > 0 and not members:
            return None
        dicts = st.fixed_dictionaries(required_part, optional=optional_part)
        return dicts if depth == 0 else dicts.filter(bool)
    if kind == "list":
        item = values_for(shape.member, depth + 1)  # type: ignore[attr-defined]
        return None if item is None else st.lists(item, min_size=1, max_size=3)
    if kind == "string":
        return _TEXT
    if kind == "integer":
        return st.integers(-(2**31), 2**31 - 1)
    if kind == "long":
        return st.integers(-(2**63), 2**63 - 1)
    if kind == "boolean":
        return st.booleans()
    if kind in ("float", "double"):
        return st.floats(allow_nan=False, allow_infinity=False)
    if kind == "timestamp":
        return st.datetimes(
            min_value=datetime(1970, 1, 1), max_value=datetime(9999, 12, 31), timezones=st.just(UTC)
        )
    if kind == "blob":
        return st.binary(max_size=12)
    return None
