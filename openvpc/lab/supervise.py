"""Process handling for the real lab: start detached (under a supervisor parent), read a
supervised daemon's status file, check alive, stop (TERM, then KILL).

A process is identified by its pid *and* its start time (from /proc), so a pid the kernel has
reused for something else is never signalled.
"""

import contextlib
import errno
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openvpc.jsonfile import JsonFileError, read_bounded


@dataclass(frozen=True, slots=True)
class Started:
    pid: int
    start: int  # clock ticks since boot, field 22 of /proc/<pid>/stat


@dataclass(frozen=True, slots=True)
class DaemonStatus:
    """What a supervisor last published about its daemon (openvpc.lab.supervisor)."""

    supervisor: int
    pid: int | None  # None while it is down (exited, waiting for its restart)
    start: int | None
    restarts: int
    held: bool
    last_exit: str | None

    def alive(self) -> bool:
        return self.pid is not None and self.start is not None and alive(self.pid, self.start)


def read_status(path: Path) -> DaemonStatus | None:
    """A supervisor's status file, or None if there is none yet or it is unreadable."""
    try:
        doc: Any = read_bounded(path, max_bytes=4096, max_depth=2)
    except (OSError, JsonFileError):
        return None
    if not isinstance(doc, dict):
        return None
    ints = {k: doc.get(k) for k in ("supervisor", "pid", "start", "restarts")}
    if not isinstance(ints["supervisor"], int) or not isinstance(ints["restarts"], int):
        return None
    if any(v is not None and not isinstance(v, int) for v in ints.values()):
        return None
    last_exit = doc.get("last_exit")
    return DaemonStatus(
        ints["supervisor"],
        ints["pid"],
        ints["start"],
        ints["restarts"],
        doc.get("held") is True,
        last_exit if isinstance(last_exit, str) else None,
    )


def start_time(pid: int) -> int | None:
    """The process's start time, or None if it is gone (zombies count as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    # the command name may contain spaces and parentheses: split after the last ")"
    fields = stat[stat.rfind(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def alive(pid: int, start: int) -> bool:
    return start_time(pid) == start


def spawn(
    argv: Sequence[str],
    log: Path,
    record: Callable[[Started], object],
    env: dict[str, str] | None = None,
    status: Path | None = None,
) -> Started:
    """Start `argv` in its own session (it outlives `openvpc up`), output appended to `log`;
    with `status`, under a supervisor that restarts it and publishes its pid in that file
    (the pid returned and recorded is then the supervisor's).

    The process is held in `launch` until `record` has returned, so whoever calls this can
    write the pid down before the command runs; if the caller dies first, it never runs.
    """
    supervised = ["--status", str(status)] if status is not None else []
    hold, release = os.pipe()
    try:
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "openvpc.lab.launch", *supervised, *argv],
                stdin=hold,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
                env=env,
            )
        os.close(hold)
        hold = -1
        started = Started(proc.pid, start_time(proc.pid) or 0)
        record(started)
        os.write(release, b"g")
    finally:
        if hold >= 0:
            os.close(hold)
        os.close(release)
    return started


def _reap(pid: int) -> None:
    """Collect our own exited child so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def wait_gone(pid: int, start: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        _reap(pid)
        if not alive(pid, start):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


def signal_process(pid: int, start: int, sig: int) -> bool:
    """Send `sig` if the process is still the one we started; False if it is gone."""
    if not alive(pid, start):
        return False
    try:
        os.kill(pid, sig)
    except OSError as exc:
        if exc.errno == errno.ESRCH:
            return False
        raise
    return True


def stop(pid: int, start: int, grace: float = 3.0) -> bool:
    """SIGTERM, then SIGKILL after `grace` seconds; True once the process is gone."""
    if signal_process(pid, start, signal.SIGTERM) and wait_gone(pid, start, grace):
        return True
    if signal_process(pid, start, signal.SIGKILL):
        return wait_gone(pid, start, 5.0)
    _reap(pid)
    return not alive(pid, start)


def stop_pids(pids: Sequence[int], grace: float = 3.0) -> None:
    """Stop processes found (by namespace) rather than started by us."""
    for pid in pids:
        started = start_time(pid)
        if started is not None:
            stop(pid, started, grace)


def read_pid_file(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    return int(text) if text.isdigit() else None
