"""CreateTags, DeleteTags and DescribeTags over every taggable resource of the caller."""

from __future__ import annotations

from typing import Any

from openvpc.api.common import paginate, select
from openvpc.api.context import Call, tag_pairs
from openvpc.api.errors import ApiError
from openvpc.api.registry import action
from openvpc.service.tags import resource_type

MAX_RESOURCES = 1000  # ids in one CreateTags or DeleteTags


def _resources(call: Call) -> list[str]:
    ids = call.ids("Resources")
    if not ids:
        raise ApiError("MissingParameter", "The request must contain the parameter resourceIdSet")
    if len(ids) > MAX_RESOURCES:
        raise ApiError("InvalidParameterValue", f"At most {MAX_RESOURCES} resources per call.")
    return ids


@action("CreateTags")
def create_tags(call: Call) -> None:
    raw = call.param("Tags")
    pairs = tag_pairs(raw if isinstance(raw, list) else [])
    if not pairs:
        raise ApiError("MissingParameter", "The request must contain the parameter tagSet")
    call.service.create_tags(call.tenant, _resources(call), pairs)


@action("DeleteTags")
def delete_tags(call: Call) -> None:
    raw = call.param("Tags")
    wanted: list[tuple[str, str | None]] = []
    for tag in raw if isinstance(raw, list) else []:
        if isinstance(tag, dict) and isinstance(tag.get("Key"), str):
            value = tag.get("Value")
            wanted.append((str(tag["Key"]), None if value is None else str(value)))
    call.service.delete_tags(call.tenant, _resources(call), wanted)


@action("DescribeTags", mutating=False)
def describe_tags(call: Call) -> dict[str, Any]:
    rows = [
        (rid, resource_type(rid), key, value)
        for rid, pairs in call.service.all_tags(call.tenant).items()
        for key, value in pairs
    ]
    fields = {
        "resource-id": lambda r: r[0],
        "resource-type": lambda r: r[1],
        "key": lambda r: r[2],
        "value": lambda r: r[3],
    }
    found = select(call, rows, fields, id_of=_row_key)
    page, token = paginate(call, found, _row_key)
    return {
        "Tags": [
            {"ResourceId": r[0], "ResourceType": r[1], "Key": r[2], "Value": r[3]} for r in page
        ],
        "NextToken": token,
    }


def _row_key(row: tuple[str, str, str, str]) -> str:
    return f"{row[0]}\0{row[2]}"
