"""The lab's state file: every namespace, interface, file, directory and process `up` created,
recorded as it is created, so that `down` (even after a crash) removes exactly those.

Records are JSON objects with a "kind"; the file is rewritten atomically under a lock each
time one is added. `teardown_order` (pure) says in which order `down` undoes them.
"""

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

Record = dict[str, Any]
# what `down` undoes, in this order: stop what runs, then remove devices, namespaces, files
UNDO_ORDER = ("process", "link", "netns", "file", "dir")


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

    def records(self) -> list[Record]:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            raise StateError(f"no lab state at {self.path}") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise StateError(f"{self.path} is not valid JSON: {exc}") from exc
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise StateError(f"{self.path} is not a list of records")
        return data

    def add(self, kind: str, **fields: Any) -> Record:
        record: Record = {"kind": kind, **fields}
        with self._locked():
            self._write([*self.records(), record])
        return record

    def _write(self, records: list[Record]) -> None:
        tmp = self.path.with_suffix(".tmp")
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            json.dump(records, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def meta(self) -> Record:
        for record in self.records():
            if record["kind"] == "meta":
                return record
        raise StateError(f"{self.path} has no meta record")

    def remove_files(self) -> None:
        for p in (self.path, self._lock_path, self.path.with_suffix(".tmp")):
            p.unlink(missing_ok=True)


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
