"""`down` with a damaged state file: the whole records before the damage are recovered, the
file is private and bounded, and the sweep's choice of what is the lab's is exact."""

import json
import os
import stat
from pathlib import Path

import pytest

from openvpc.lab.state import MAX_STATE_BYTES, StateError, StateFile, salvage
from openvpc.lab.sweep import lab_owns, names_path

RECORDS: list[dict[str, object]] = [
    {"kind": "meta", "name": "t", "state_dir": "/run/openvpc/t"},
    {"kind": "netns", "name": "ov-t-u-sw"},
    {"kind": "link", "ns": "ov-t-u-sw", "ifname": "br0"},
    {"kind": "process", "role": "controller", "node": "", "pid": 7, "start": 9, "argv": ["x"]},
    {"kind": "netns", "name": "ov-t-v-r1"},
]


def written(tmp_path: Path) -> StateFile:
    return StateFile.create(tmp_path / "state.json", RECORDS[0], *RECORDS[1:])


def test_the_state_file_is_private(tmp_path: Path) -> None:
    state = written(tmp_path)
    assert stat.S_IMODE(os.stat(state.path).st_mode) == 0o600
    state.add("file", path="/x")
    assert stat.S_IMODE(os.stat(state.path).st_mode) == 0o600
    assert state.records()[-1] == {"kind": "file", "path": "/x"}


@pytest.mark.parametrize("cut", [1, 7, 40, 0.5, 0.8, -3, -1])
def test_a_cut_file_keeps_every_whole_record_before_the_cut(tmp_path: Path, cut: float) -> None:
    state = written(tmp_path)
    text = state.path.read_text()
    end = int(len(text) * cut) if isinstance(cut, float) else cut % len(text)
    state.path.write_text(text[:end])
    records, problem = state.salvaged()
    assert problem is not None and "not valid JSON" in problem
    # exactly the records that ended before the cut
    assert records == [r for r in RECORDS if _end_of(text, r) <= end]
    with pytest.raises(StateError):
        state.records()


def _end_of(text: str, record: dict[str, object]) -> int:
    rendered = json.dumps([record], indent=1)[2:-2]  # the record as it sits in the list
    return text.index(rendered) + len(rendered)


def test_garbage_after_good_records_and_records_without_a_kind(tmp_path: Path) -> None:
    text = '[\n {"kind": "meta"},\n {"no": "kind"},\n 17,\n {"kind": "netns", "name": "a"}\x00\x01'
    assert salvage(text) == [{"kind": "meta"}]  # stops at 17: not an object
    text = '[\n {"kind": "meta"},\n {"no": "kind"},\n {"kind": "netns", "name": "a"} ]]]'
    assert salvage(text) == [{"kind": "meta"}, {"kind": "netns", "name": "a"}]
    assert salvage("\x00garbage") == []
    assert salvage("") == []


def test_a_deeply_nested_record_ends_the_salvage_without_recursing(tmp_path: Path) -> None:
    deep = '{"kind": "x", "v": ' + "[" * 100_000 + "]" * 100_000 + "}"
    text = f'[\n {{"kind": "meta"}},\n {deep},\n {{"kind": "netns", "name": "a"}}\n]'
    assert salvage(text) == [{"kind": "meta"}]
    (tmp_path / "state.json").write_text(text)
    records, problem = StateFile(tmp_path / "state.json").salvaged()
    assert records == [{"kind": "meta"}] and problem is not None and "nests" in problem


def test_missing_and_oversized_files_salvage_nothing(tmp_path: Path) -> None:
    state = StateFile(tmp_path / "state.json")
    assert state.salvaged() == ([], f"no lab state at {state.path}")
    with open(state.path, "wb") as f:
        f.truncate(MAX_STATE_BYTES + 1)
    records, problem = state.salvaged()
    assert records == [] and problem is not None and "larger than" in problem


def test_non_utf8_bytes_inside_a_record_do_not_hide_the_others(tmp_path: Path) -> None:
    state = written(tmp_path)
    raw = state.path.read_bytes().replace(b"ov-t-v-r1", b"ov-t-v-\xff1")
    state.path.write_bytes(raw)
    records, _ = state.salvaged()
    assert [r["kind"] for r in records] == [str(r["kind"]) for r in RECORDS]


def test_the_sweep_takes_only_the_labs_own_names() -> None:
    assert lab_owns("ov-t-n-node1", "t", [])
    assert not lab_owns("ov-t2-n-node1", "t", ["t2"])  # another lab's prefix
    assert not lab_owns("ov-tx-n-a", "t", [])
    assert not lab_owns("xov-t-n-a", "t", [])
    # lab "a" must not take lab "a-n"'s namespaces, though both prefixes match
    assert not lab_owns("ov-a-n-n-x", "a", ["a-n"])
    assert lab_owns("ov-a-n-n-x", "a-n", ["a"])
    assert lab_owns("ov-a-n-x", "a", ["b"])


def test_a_command_line_names_the_state_dir_as_an_argument_or_inside_one() -> None:
    sdir = "/run/openvpc/t"
    assert names_path(["openvpc", "controller", "--db", "/run/openvpc/t/openvpc.db"], sdir)
    assert names_path(["openvpc", "agent", "--controller", "unix:/run/openvpc/t/sb.sock"], sdir)
    assert names_path(["rm", "-r", "/run/openvpc/t"], sdir)
    assert not names_path(["openvpc", "--db", "/run/openvpc/t2/openvpc.db"], sdir)
    assert not names_path(["openvpc", "down", "t"], sdir)
