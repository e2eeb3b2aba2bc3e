"""The lab's state file: records persist as added, and teardown undoes them in a safe order."""

import json
from pathlib import Path

import pytest

from openvpc.lab.state import StateError, StateFile, latest_processes, teardown_order


def test_records_are_on_disk_as_soon_as_added(tmp_path: Path) -> None:
    state = StateFile.create(tmp_path / "state.json", {"name": "t"})
    state.add("netns", name="ov-t-n-a")
    # another process (a later `down`) reads the file itself, not this object
    on_disk = json.loads((tmp_path / "state.json").read_text())
    assert on_disk == [{"kind": "meta", "name": "t"}, {"kind": "netns", "name": "ov-t-n-a"}]
    assert StateFile(tmp_path / "state.json").meta()["name"] == "t"


def test_missing_and_corrupt_state_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="no lab state"):
        StateFile(tmp_path / "state.json").records()
    (tmp_path / "state.json").write_text("[{")
    with pytest.raises(StateError, match="not valid JSON"):
        StateFile(tmp_path / "state.json").records()
    (tmp_path / "state.json").write_text('{"kind": "meta"}')
    with pytest.raises(StateError, match="list of records"):
        StateFile(tmp_path / "state.json").records()


def test_teardown_stops_processes_first_and_removes_directories_last() -> None:
    records: list[dict[str, object]] = [
        {"kind": "meta"},
        {"kind": "dir", "path": "/s"},
        {"kind": "netns", "name": "n1"},
        {"kind": "link", "ns": "n1", "ifname": "br0"},
        {"kind": "file", "path": "/s/db"},
        {"kind": "process", "role": "controller", "node": "", "pid": 1, "start": 1},
        {"kind": "netns", "name": "n2"},
        {"kind": "dir", "path": "/s/sub"},
        {"kind": "process", "role": "agent", "node": "a", "pid": 2, "start": 2},
        {"kind": "vm", "name": "r1"},
    ]
    steps = teardown_order(records)
    assert [s["kind"] for s in steps] == [
        "process",
        "process",
        "link",
        "netns",
        "netns",
        "file",
        "dir",
        "dir",
    ]
    assert [s.get("pid") for s in steps[:2]] == [2, 1]  # newest first
    assert [s["path"] for s in steps if s["kind"] == "dir"] == ["/s/sub", "/s"]


def test_latest_process_per_role_and_node_wins() -> None:
    records = [
        {"kind": "process", "role": "agent", "node": "a", "pid": 10, "start": 1},
        {"kind": "process", "role": "agent", "node": "b", "pid": 11, "start": 1},
        {"kind": "process", "role": "agent", "node": "a", "pid": 12, "start": 5},
        {"kind": "process", "role": "controller", "node": "", "pid": 13, "start": 1},
    ]
    latest = latest_processes(records)
    assert latest[("agent", "a")]["pid"] == 12
    assert latest[("agent", "b")]["pid"] == 11
    assert latest[("controller", "")]["pid"] == 13
