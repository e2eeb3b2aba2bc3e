"""JSON files our processes keep (state files): atomic root-only writes, bounded reads.

A crash leaves the old file or the new one, never half of one; a damaged or hostile file
(too large, too deeply nested, not UTF-8, not JSON) is a `JsonFileError`, never a crash.
"""

import json
import os
from pathlib import Path
from typing import Any

MAX_BYTES = 64 * 1024 * 1024
MAX_DEPTH = 32  # our documents nest a handful of levels; json's recursion would fail past ~1000
PRIVATE = 0o600


class JsonFileError(ValueError):
    """The file could not be read as a bounded JSON document; the message says why."""


def write_atomic(path: Path, data: Any, mode: int = PRIVATE, indent: int | None = None) -> None:
    """Write `data` as JSON to `path` through a temporary file and a rename, then fsync."""
    text = json.dumps(data, indent=indent, separators=None if indent else (",", ":"))
    write_text_atomic(path, text, mode)


def write_text_atomic(path: Path, text: str, mode: int = PRIVATE) -> None:
    """Write `text` to `path` (mode `mode`) through a temporary file and a rename, then fsync."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "w") as f:
            os.fchmod(f.fileno(), mode)  # O_CREAT's mode only applies to a new file
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself survives a power cut
    finally:
        os.close(dir_fd)


def read_bounded(path: Path, max_bytes: int = MAX_BYTES, max_depth: int = MAX_DEPTH) -> Any:
    """The JSON document in `path`. Raises FileNotFoundError if there is none, and
    JsonFileError if it is larger than `max_bytes`, nested deeper than `max_depth`, or not
    UTF-8 JSON."""
    with open(path, "rb") as f:
        raw = f.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise JsonFileError(f"{path} is larger than {max_bytes} bytes")
    try:
        text = raw.decode()
    except UnicodeDecodeError as exc:
        raise JsonFileError(f"{path} is not UTF-8: {exc}") from None
    return loads_bounded(text, max_depth, str(path))


def loads_bounded(text: str, max_depth: int = MAX_DEPTH, what: str = "document") -> Any:
    """`json.loads` after a linear check that nothing nests deeper than `max_depth`."""
    depth = deepest(text)
    if depth > max_depth:
        raise JsonFileError(f"{what} nests {depth} levels deep (at most {max_depth})")
    try:
        return json.loads(text)
    except ValueError as exc:
        raise JsonFileError(f"{what} is not valid JSON: {exc}") from None


def deepest(text: str, start: int = 0) -> int:
    """How deeply arrays and objects nest in the JSON value at `start` of `text` (brackets
    inside strings ignored); one pass that ends where that value's brackets close."""
    depth = deepest_seen = 0
    in_string = escaped = False
    for i in range(start, len(text)):
        ch = text[i]
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > deepest_seen:
                deepest_seen = depth
        elif ch in "]}":
            depth -= 1
            if depth <= 0:
                break
    return deepest_seen
