"""The operator's node commands: registering a node issues a secret file its daemons can read,
a reissue revokes the old secret, and mistakes are refused with a message and exit 1."""

import stat
from pathlib import Path

from typer.testing import CliRunner

from openvpc.cli import app
from openvpc.credentials import matches, read_secret_file
from openvpc.service import Service
from openvpc.store import Store


def hashes(db: Path) -> dict[str, str]:
    store = Store(db)
    try:
        return Service(store).node_secret_hashes()
    finally:
        store.close()


def test_register_then_reissue(tmp_path: Path) -> None:
    db, first, second = tmp_path / "ov.db", tmp_path / "n1.secret", tmp_path / "n1.new"
    run = CliRunner().invoke
    done = run(app, ["node", "register", "n1", "192.0.2.10", "--db", str(db),
                     "--secret-file", str(first)])  # fmt: skip
    assert done.exit_code == 0, done.output
    assert stat.S_IMODE(first.stat().st_mode) == 0o600
    old = read_secret_file(first)
    assert matches(old, hashes(db)["n1"])
    done = run(app, ["node", "reissue", "n1", "--db", str(db), "--secret-file", str(second)])
    assert done.exit_code == 0, done.output
    new = read_secret_file(second)
    assert new != old and matches(new, hashes(db)["n1"]) and not matches(old, hashes(db)["n1"])


def test_mistakes_are_refused_and_write_nothing(tmp_path: Path) -> None:
    db, out = tmp_path / "ov.db", tmp_path / "x.secret"
    run = CliRunner().invoke
    done = run(app, ["node", "reissue", "ghost", "--db", str(db), "--secret-file", str(out)])
    assert done.exit_code == 1 and "not registered" in done.output
    done = run(app, ["node", "register", "n1", "not-an-ip", "--db", str(db),
                     "--secret-file", str(out)])  # fmt: skip
    assert done.exit_code == 1 and "n1" in done.output
    assert not out.exists() and hashes(db) == {}


def test_a_new_secret_file_is_private(tmp_path: Path) -> None:
    path = tmp_path / "operator.secret"
    assert CliRunner().invoke(app, ["secret", str(path)]).exit_code == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(read_secret_file(path)) == 32
