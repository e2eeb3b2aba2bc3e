"""The lab's supervisor parent with real processes (no root): a daemon that dies is started
again with backoff and its restarts are published; a hold keeps it down; SIGTERM stops both;
a killed supervisor takes its daemon with it."""

import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from waiting import until

from openvpc.lab import supervise
from openvpc.lab.restarts import RestartPolicy

WAIT = 10.0
# a daemon that does nothing until it is signalled
DAEMON = (sys.executable, "-c", "import signal; signal.pause()")


def test_restart_delays_grow_and_reset_after_a_stable_run() -> None:
    policy = RestartPolicy(first=0.1, limit=1.0, stable_after=10.0)
    streak, delays = 0, []
    for _ in range(6):
        streak = policy.next_streak(streak, uptime=0.5)
        delays.append(policy.delay(streak))
    assert delays == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert policy.delay(policy.next_streak(streak, uptime=10.0)) == 0.1
    assert policy.delay(10_000) == 1.0  # a very long crash loop stays at the cap
    with pytest.raises(ValueError):
        RestartPolicy(first=2.0, limit=1.0)


class Supervised:
    def __init__(self, tmp: Path) -> None:
        self.status = tmp / "daemon.proc.json"
        self.log = tmp / "daemon.log"
        self.started = supervise.spawn(DAEMON, self.log, lambda _: None, None, self.status)

    def daemon(self) -> supervise.DaemonStatus:
        found = supervise.read_status(self.status)
        assert found is not None
        return found

    def running(self, other_than: int | None = None) -> supervise.DaemonStatus:
        def check() -> bool:
            d = supervise.read_status(self.status)
            return d is not None and d.alive() and d.pid != other_than and not d.held

        until(check, "the daemon is not running", WAIT)
        return self.daemon()

    def kill_daemon(self) -> int:
        until(lambda: self.daemon().alive(), "no daemon to kill", WAIT)
        d = self.daemon()
        assert d.pid is not None and d.start is not None
        os.kill(d.pid, signal.SIGKILL)
        assert supervise.wait_gone(d.pid, d.start, WAIT)
        return d.pid


@pytest.fixture
def supervised(tmp_path: Path) -> Iterator[Supervised]:
    s = Supervised(tmp_path)
    try:
        yield s
    finally:
        supervise.stop(s.started.pid, s.started.start, grace=5.0)


def test_a_killed_daemon_is_restarted_and_counted(supervised: Supervised) -> None:
    first = supervised.running()
    assert first.supervisor == supervised.started.pid and first.restarts == 0
    old = supervised.kill_daemon()
    again = supervised.running(other_than=old)
    assert again.restarts == 1 and again.last_exit == "killed by SIGKILL"
    supervised.kill_daemon()
    assert supervised.running(other_than=again.pid).restarts == 2
    assert "restarted as pid" in supervised.log.read_text()


def test_a_hold_keeps_the_daemon_down_until_released(supervised: Supervised) -> None:
    supervised.running()
    os.kill(supervised.started.pid, signal.SIGUSR1)
    until(lambda: supervised.daemon().held, "hold not published", WAIT)
    old = supervised.kill_daemon()
    until(lambda: supervised.daemon().pid is None, "the exit was not published", WAIT)
    held = supervised.daemon()
    assert held.held and held.restarts == 0  # nothing started it again
    os.kill(supervised.started.pid, signal.SIGUSR2)
    assert supervised.running(other_than=old).restarts == 1


def test_sigterm_stops_the_daemon_and_then_the_supervisor(supervised: Supervised) -> None:
    d = supervised.running()
    assert d.pid is not None and d.start is not None
    assert supervise.stop(supervised.started.pid, supervised.started.start, grace=5.0)
    assert not supervise.alive(d.pid, d.start)
    assert supervised.daemon().pid is None and supervised.daemon().restarts == 0


def test_a_killed_supervisor_takes_its_daemon_with_it(supervised: Supervised) -> None:
    d = supervised.running()
    assert d.pid is not None and d.start is not None
    os.kill(supervised.started.pid, signal.SIGKILL)
    assert supervise.wait_gone(supervised.started.pid, supervised.started.start, WAIT)
    assert supervise.wait_gone(d.pid, d.start, WAIT)


def test_an_unreadable_status_file_reads_as_none(tmp_path: Path) -> None:
    path = tmp_path / "x.proc.json"
    assert supervise.read_status(path) is None
    for text in ("[", '{"supervisor": "1", "restarts": 0}', "[" * 50 + "]" * 50, "x" * 5000):
        path.write_text(text)
        assert supervise.read_status(path) is None
