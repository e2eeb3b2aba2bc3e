"""The SQLite document store: transactions, the revision counter, rollback, and several
connections (threads, Store objects, a second process) sharing one file."""

import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from openvpc.store import Store, StoreError


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "store.db"


@pytest.fixture
def store(db: Path) -> Iterator[Store]:
    s = Store(db)
    try:
        yield s
    finally:
        s.close()


def test_new_store_is_at_revision_zero_and_in_wal_mode(store: Store, db: Path) -> None:
    assert store.revision() == 0
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


def test_a_transaction_with_changes_bumps_the_revision_once(store: Store) -> None:
    with store.transaction() as tx:
        assert tx.put("vpc", "b", {"n": 2})
        assert tx.put("vpc", "a", {"n": 1})
        assert tx.put("subnet", "a", {"n": 3})
    assert store.revision() == 1
    with store.transaction(readonly=True) as tx:
        assert [(d.id, d.body, d.revision) for d in tx.list("vpc")] == [
            ("a", {"n": 1}, 1),
            ("b", {"n": 2}, 1),
        ]
        doc = tx.get("subnet", "a")
        assert doc is not None and doc.body == {"n": 3}
        assert tx.get("subnet", "b") is None


def test_documents_remember_the_revision_that_last_wrote_them(store: Store) -> None:
    with store.transaction() as tx:
        tx.put("k", "x", {"v": 1})
        tx.put("k", "y", {"v": 1})
    with store.transaction() as tx:
        tx.put("k", "y", {"v": 2})
    with store.transaction(readonly=True) as tx:
        assert {d.id: d.revision for d in tx.list("k")} == {"x": 1, "y": 2}


def test_rewriting_an_equal_body_is_no_change(store: Store) -> None:
    with store.transaction() as tx:
        tx.put("k", "x", {"a": 1, "b": [1, 2]})
    with store.transaction() as tx:
        assert not tx.put("k", "x", {"b": [1, 2], "a": 1})  # key order does not matter
        assert not tx.delete("k", "missing")
        assert not tx.changed
    assert store.revision() == 1


def test_delete_is_a_change(store: Store) -> None:
    with store.transaction() as tx:
        tx.put("k", "x", {})
    with store.transaction() as tx:
        assert tx.delete("k", "x")
    assert store.revision() == 2
    with store.transaction(readonly=True) as tx:
        assert tx.get("k", "x") is None


def test_an_exception_rolls_everything_back(store: Store) -> None:
    with store.transaction() as tx:
        tx.put("k", "keep", {"v": 1})
    with pytest.raises(RuntimeError), store.transaction() as tx:
        tx.put("k", "keep", {"v": 2})
        tx.put("k", "new", {"v": 3})
        tx.delete("k", "keep")
        raise RuntimeError("abort")
    assert store.revision() == 1
    with store.transaction(readonly=True) as tx:
        assert [(d.id, d.body) for d in tx.list("k")] == [("keep", {"v": 1})]


def test_a_body_that_is_not_a_json_object_is_refused(store: Store) -> None:
    with pytest.raises(StoreError, match="JSON object"), store.transaction() as tx:
        tx.put("k", "x", [1, 2])  # type: ignore[arg-type]
    with pytest.raises(StoreError, match="not JSON"), store.transaction() as tx:
        tx.put("k", "x", {"v": float("nan")})
    assert store.revision() == 0


def test_misuse_is_reported(store: Store) -> None:
    with store.transaction(readonly=True) as ro, pytest.raises(StoreError, match="read-only"):
        ro.put("k", "x", {})
    with store.transaction() as tx, pytest.raises(StoreError, match="nested"):
        store.revision()  # opens a transaction of its own
    with pytest.raises(StoreError, match="ended"):
        tx.get("k", "x")
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.revision()


def test_two_stores_on_one_file_see_each_others_writes(db: Path) -> None:
    a, b = Store(db), Store(db)
    try:
        with a.transaction() as tx:
            tx.put("k", "x", {"from": "a"})
        assert b.revision() == 1
        with b.transaction() as tx:
            doc = tx.get("k", "x")
            assert doc is not None and doc.body == {"from": "a"}
            tx.put("k", "y", {"from": "b"})
        assert a.revision() == 2
        with a.transaction(readonly=True) as tx:
            assert [d.id for d in tx.list("k")] == ["x", "y"]
    finally:
        a.close()
        b.close()


def test_a_read_transaction_sees_one_revision_while_another_connection_writes(
    db: Path,
) -> None:
    reader, writer = Store(db), Store(db)
    try:
        with writer.transaction() as tx:
            tx.put("k", "x", {"v": 1})
        with reader.transaction(readonly=True) as ro:
            assert ro.revision == 1
            with writer.transaction() as tx:  # WAL: a reader does not block a writer
                tx.put("k", "x", {"v": 2})
                tx.put("k", "y", {"v": 2})
            assert [(d.id, d.body) for d in ro.list("k")] == [("x", {"v": 1})]
        assert reader.revision() == 2
    finally:
        reader.close()
        writer.close()


def _increment(store: Store, times: int) -> None:
    for _ in range(times):
        with store.transaction() as tx:
            doc = tx.get("counter", "c")
            n = 0 if doc is None else int(doc.body["n"])
            tx.put("counter", "c", {"n": n + 1})


@pytest.mark.parametrize("shared", [True, False], ids=["one-store", "store-per-thread"])
def test_concurrent_read_modify_write_loses_no_update(db: Path, shared: bool) -> None:
    threads_n, times = 4, 25
    stores = [Store(db)] if shared else [Store(db) for _ in range(threads_n)]
    try:
        threads = [
            threading.Thread(target=_increment, args=(stores[i % len(stores)], times))
            for i in range(threads_n)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
            assert not t.is_alive()
        with stores[0].transaction(readonly=True) as tx:
            doc = tx.get("counter", "c")
            assert doc is not None and doc.body == {"n": threads_n * times}
        assert stores[0].revision() == threads_n * times
    finally:
        for s in stores:
            s.close()


def test_wait_for_change_times_out_without_a_change(store: Store) -> None:
    start = time.monotonic()
    assert store.wait_for_change(0, 0.2) == 0
    assert 0.15 <= time.monotonic() - start < 2.0
    assert store.wait_for_change(5, 0.0) == 0  # already different: at once


def test_wait_for_change_wakes_on_a_write_from_another_thread(store: Store, db: Path) -> None:
    other = Store(db)

    def write_later() -> None:
        time.sleep(0.1)
        with other.transaction() as tx:
            tx.put("k", "x", {})

    t = threading.Thread(target=write_later)
    try:
        start = time.monotonic()
        t.start()
        assert store.wait_for_change(0, 10.0) == 1
        assert time.monotonic() - start < 5.0
    finally:
        t.join(timeout=10)
        other.close()


def test_a_write_from_another_process_is_seen(store: Store, db: Path) -> None:
    child = (
        "import sys\n"
        "from openvpc.store import Store\n"
        "s = Store(sys.argv[1])\n"
        "with s.transaction() as tx:\n"
        "    tx.put('vpc', 'from-child', {'pid': 1})\n"
        "s.close()\n"
    )
    rev = store.revision()
    subprocess.run([sys.executable, "-c", child, str(db)], check=True, timeout=60)
    assert store.wait_for_change(rev, 10.0) == rev + 1
    with store.transaction(readonly=True) as tx:
        assert tx.get("vpc", "from-child") is not None
