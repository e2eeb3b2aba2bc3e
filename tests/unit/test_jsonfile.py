"""State-file JSON: atomic private writes, and reads that refuse what is too big, too deep,
not UTF-8 or not JSON with a JsonFileError (never a RecursionError or a crash)."""

import json
import os
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from openvpc.jsonfile import JsonFileError, deepest, read_bounded, write_atomic

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


def test_write_is_private_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text("{}")
    os.chmod(path, 0o644)
    write_atomic(path, {"a": [1, 2]})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_bounded(path) == {"a": [1, 2]}
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


@given(json_values)
def test_depth_matches_the_document(value: object) -> None:
    def depth(v: object) -> int:
        if isinstance(v, list):
            return 1 + max(map(depth, v), default=0)
        if isinstance(v, dict):
            return 1 + max(map(depth, v.values()), default=0)
        return 0

    assert deepest(json.dumps(value)) == depth(value)


def test_brackets_inside_strings_do_not_count() -> None:
    assert deepest(json.dumps({"k": '[[[{{{\\"[['})) == 1


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"[" * 500 + b"]" * 500, "nests"),
        (b'{"a": [1, 2', "not valid JSON"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b"x" * 2048, "larger than"),
    ],
)
def test_bad_files_are_refused_with_a_reason(tmp_path: Path, content: bytes, why: str) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(content)
    with pytest.raises(JsonFileError, match=why):
        read_bounded(path, max_bytes=1024)


def test_missing_file_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_bounded(tmp_path / "none.json")
