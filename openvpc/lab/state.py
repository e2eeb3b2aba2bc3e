"""The lab's state file: every namespace, interface, file, directory and process `up` created,
recorded as it is created, so that `down` (even after a crash) removes exactly those.

Records are JSON objects with a "kind"; the file (root-only) is rewritten atomically under a
lock each time one is added. `salvage` (pure) recovers the whole records of a damaged file, and
`teardown_order` (pure) says in which order `down` undoes them.
"""

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from openvpc.jsonfile import MAX_DEPTH, JsonFileError, deepest, loads_bounded, write_atomic

Record = dict[str, Any]
# what `down` undoes, in this order: stop what runs, then remove devices, namespaces, files
UNDO_ORDER = ("process", "link", "netns", "file", "dir")
MAX_STATE_BYTES = 16 * 1024 * 1024  # a lab of thousands of VMs records a few megabytes


class StateError(Exception):
    """The state file is missing or unreadable."""


class StateFile:
    """The append-only record of one lab, persisted at `path`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock_path = path.with_suffix(".lock")

    @classmethod
    def create(cls, path: Path, meta: Record, *first: Record) -> "StateFile":
        """A new state file holding the meta record and `first` records in one write."""
        state = cls(path)
        state._write([{"kind": "meta", **meta}, *first])
        return state

    def exists(self) -> bool:
        return self.path.exists()

    @contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _read_text(self) -> str:
        """The file's text, read with a bound; UTF-8 damage is replaced (salvage reads on)."""
        try:
            with open(self.path, "rb") as f:
                raw = f.read(MAX_STATE_BYTES + 1)
        except FileNotFoundError:
            raise StateError(f"no lab state at {self.path}") from None
        if len(raw) > MAX_STATE_BYTES:
            raise StateError(f"{self.path} is larger than {MAX_STATE_BYTES} bytes")
        return raw.decode(errors="replace")

    def records(self) -> list[Record]:
        """Every record; a damaged file is a StateError (`down` uses `salvaged` instead)."""
        text = self._read_text()
        try:
            data = loads_bounded(text, MAX_DEPTH, str(self.path))
        except JsonFileError as exc:
            raise StateError(str(exc)) from None
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise StateError(f"{self.path} is not a list of records")
        return data

    def salvaged(self) -> tuple[list[Record], str | None]:
        """The records `down` can still undo, and what was wrong with the file (None: nothing).
        A missing file gives no records; a damaged one every whole record before the damage."""
        try:
            return self.records(), None
        except StateError as exc:
            problem = str(exc)
        try:
            text = self._read_text()
        except StateError:
            return [], problem
        return salvage(text), problem

    def add(self, kind: str, **fields: Any) -> Record:
        record: Record = {"kind": kind, **fields}
        with self._locked():
            self._write([*self.records(), record])
        return record

    def _write(self, records: list[Record]) -> None:
        # indent=1 puts each record on lines of its own: a cut file keeps the whole ones before
        write_atomic(self.path, records, indent=1)

    def meta(self) -> Record:
        for record in self.records():
            if record["kind"] == "meta":
                return record
        raise StateError(f"{self.path} has no meta record")

    def remove_files(self) -> None:
        for p in (self.path, self._lock_path):
            p.unlink(missing_ok=True)


def salvage(text: str) -> list[Record]:
    """The whole records at the start of a state file's `text` that may be cut or damaged:
    each object of the top-level list is decoded on its own, up to the first that is not whole.
    Records without a string "kind" are skipped; a record nested too deeply ends the salvage."""
    decoder = json.JSONDecoder()
    start = text.find("[")
    if start < 0:
        return []
    pos = start + 1
    found: list[Record] = []
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text) or text[pos] != "{":
            return found
        # bound the nesting raw_decode will recurse into, as loads_bounded does
        if deepest(text, pos) > MAX_DEPTH:
            return found
        try:
            record, pos = decoder.raw_decode(text, pos)
        except ValueError:
            return found
        if isinstance(record, dict) and isinstance(record.get("kind"), str):
            found.append(record)


def of_kind(records: list[Record], kind: str) -> list[Record]:
    return [r for r in records if r.get("kind") == kind]


def teardown_order(records: list[Record]) -> list[Record]:
    """What to undo and in which order: by UNDO_ORDER, newest first within a kind (a file
    before the directory holding it; a restarted process before the one it replaced)."""
    steps: list[Record] = []
    for kind in UNDO_ORDER:
        steps += reversed(of_kind(records, kind))
    return steps


def latest_processes(records: list[Record]) -> dict[tuple[str, str], Record]:
    """The newest process record per (role, node); node is "" for the controller."""
    found: dict[tuple[str, str], Record] = {}
    for record in of_kind(records, "process"):
        found[(record["role"], record.get("node") or "")] = record
    return found
