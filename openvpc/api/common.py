"""What many actions share: Filters with EC2's wildcards, id lists, MaxResults/NextToken pages
bound to the caller and the question, and tag sets."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from openvpc.api.context import Call
from openvpc.api.errors import ApiError, shown

T = TypeVar("T")
# what a filter reads from an item: one value, several, or None when it has none
Getter = Callable[[Any], "str | bool | int | Iterable[str] | None"]

MAX_FILTERS = 50
MAX_FILTER_VALUES = 200
_TOKEN_KEY = secrets.token_bytes(32)  # page tokens are good for the life of the process


def tag_list(tags: Sequence[tuple[str, str]] | None) -> list[dict[str, str]] | None:
    """A TagList as the output shapes hold it; None (absent) when there are none."""
    return [{"Key": k, "Value": v} for k, v in tags] if tags else None


def select(
    call: Call,
    items: Iterable[T],
    fields: Mapping[str, Getter],
    *,
    id_of: Callable[[T], str],
    ids_param: str | None = None,
    not_found: Callable[[str], Exception] | None = None,
    tags: Mapping[str, Sequence[tuple[str, str]]] | None = None,
) -> list[T]:
    """Items matching the request's id list (`ids_param`; an unknown id raises `not_found`)
    and every filter (ANDed; a filter's values ORed, with * and ? wildcards). Filter names are
    those of `fields` plus tag:<key>, tag-key and tag-value when `tags` (id -> tags) is given;
    any other name is refused as EC2 does."""
    found = list(items)
    if ids_param is not None:
        wanted = call.ids(ids_param)
        if wanted:
            by_id = {id_of(i): i for i in found}
            for rid in wanted:
                if rid not in by_id:
                    assert not_found is not None
                    raise not_found(rid)
            found = [by_id[rid] for rid in dict.fromkeys(wanted)]
    for name, patterns in _filters(call):
        getter = _getter(name, fields, tags, id_of)
        found = [i for i in found if _matches(getter(i), patterns)]
    return found


def _filters(call: Call) -> list[tuple[str, list[re.Pattern[str]]]]:
    raw = call.params.get("Filters")
    parsed: list[tuple[str, list[str]]] = []
    for f in raw if isinstance(raw, list) else []:
        assert isinstance(f, dict)
        name, values = f.get("Name"), f.get("Values")
        if not isinstance(name, str) or not name:
            raise ApiError("InvalidParameterValue", "The filter 'null' is invalid")
        parsed.append((name, [str(v) for v in values] if isinstance(values, list) else []))
    if len(parsed) > MAX_FILTERS or sum(len(v) for _, v in parsed) > MAX_FILTER_VALUES:
        raise ApiError(
            "FilterLimitExceeded",
            f"The request uses too many filters or filter values (at most {MAX_FILTERS} "
            f"and {MAX_FILTER_VALUES}).",
        )
    return [(name, [_wildcard(v) for v in values]) for name, values in parsed]


def _getter(
    name: str,
    fields: Mapping[str, Getter],
    tags: Mapping[str, Sequence[tuple[str, str]]] | None,
    id_of: Callable[[Any], str],
) -> Getter:
    if name in fields:
        return fields[name]
    if tags is not None:
        if name.startswith("tag:"):
            key = name[4:]
            return lambda i: [v for k, v in tags.get(id_of(i), ()) if k == key]
        if name == "tag-key":
            return lambda i: [k for k, _ in tags.get(id_of(i), ())]
        if name == "tag-value":
            return lambda i: [v for _, v in tags.get(id_of(i), ())]
    raise ApiError("InvalidParameterValue", f"The filter '{shown(name)}' is invalid")


def _matches(
    value: str | bool | int | Iterable[str] | None, patterns: list[re.Pattern[str]]
) -> bool:
    if value is None:
        return False
    if isinstance(value, bool):
        values: Iterable[str] = ["true" if value else "false"]
    elif isinstance(value, int | str):
        values = [str(value)]
    else:
        values = value
    return any(p.fullmatch(v) for v in values for p in patterns)


def _wildcard(text: str) -> re.Pattern[str]:
    """EC2 filter values: * any run, ? one character, a backslash takes the next literally."""
    out: list[str] = []
    escaped = False
    for ch in text[:1024]:
        if escaped:
            out.append(re.escape(ch))
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out), re.DOTALL)


def paginate(
    call: Call,
    items: Sequence[T],
    id_of: Callable[[T], str],
    bounds: tuple[int, int] = (5, 1000),
) -> tuple[list[T], str | None]:
    """One page of `items` (sorted by id) after the request's NextToken, at most MaxResults
    long, and the token of the next page (None on the last). A token only works for the
    tenant, action and filters it was made for."""
    limit = call.params.get("MaxResults")
    token = call.params.get("NextToken")
    ordered = sorted(items, key=id_of)
    if isinstance(token, str) and token:
        after = _open_token(call, token)
        ordered = [i for i in ordered if id_of(i) > after]
    if limit is None:
        return ordered, None
    lo, hi = bounds
    if not isinstance(limit, int) or not lo <= limit <= hi:
        raise ApiError(
            "InvalidParameterValue",
            f"Value ( {shown(str(limit))} ) for parameter maxResults is invalid. "
            f"Expecting a value between {lo} and {hi}.",
        )
    page = ordered[:limit]
    if len(ordered) <= limit:
        return page, None
    return page, _make_token(call, id_of(page[-1]))


def _question(call: Call) -> bytes:
    rest = {k: v for k, v in call.params.items() if k not in ("NextToken", "MaxResults")}
    text = json.dumps([call.tenant, call.action, repr(sorted(rest.items()))])
    return hashlib.sha256(text.encode()).digest()


def _make_token(call: Call, after: str) -> str:
    body = after.encode()
    mac = hmac.new(_TOKEN_KEY, _question(call) + body, hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(mac + body).decode()


def _open_token(call: Call, token: str) -> str:
    try:
        raw = base64.urlsafe_b64decode(token.encode())
    except (binascii.Error, ValueError):
        raw = b""
    mac, body = raw[:16], raw[16:]
    good = hmac.new(_TOKEN_KEY, _question(call) + body, hashlib.sha256).digest()[:16]
    if len(raw) <= 16 or not hmac.compare_digest(mac, good):
        raise ApiError("InvalidNextToken", "The token provided is invalid or has expired.")
    return body.decode("utf-8", "replace")
