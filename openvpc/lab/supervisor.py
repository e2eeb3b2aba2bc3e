"""The supervisor parent of one lab daemon: start it, restart it with backoff whenever it exits
unasked, publish its pid and restart count in a status file, and stop it on SIGTERM.

Signals are taken synchronously (blocked, then `sigtimedwait`), so the loop has no handler
races. SIGUSR1 holds restarts (a test keeps a daemon down), SIGUSR2 releases them. The daemon
gets PR_SET_PDEATHSIG: if the supervisor dies, even by SIGKILL, the daemon dies with it.
"""

import contextlib
import ctypes
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from openvpc.jsonfile import write_atomic
from openvpc.lab.restarts import RestartPolicy
from openvpc.lab.supervise import start_time

HANDLED = {signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2}
STOP_GRACE = 3.0  # seconds the daemon gets between SIGTERM and SIGKILL when we stop
IDLE_WAIT = 1.0  # the longest wait for a signal; a lost SIGCHLD costs at most this
PR_SET_PDEATHSIG = 1


@dataclass
class _Daemon:
    pid: int | None = None
    start: int | None = None  # /proc start time, so readers never signal a reused pid
    started_at: float = 0.0  # monotonic, for the uptime that resets the backoff
    restarts: int = 0
    streak: int = 0
    held: bool = False
    last_exit: str | None = None


def _log(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} supervisor {os.getpid()}: {message}", flush=True)


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exited with code {os.waitstatus_to_exitcode(status)}"


class Supervisor:
    def __init__(self, argv: list[str], status: Path, policy: RestartPolicy) -> None:
        self.argv = argv
        self.status = status
        self.policy = policy
        self.daemon = _Daemon()
        self.stopping = False
        self.restart_at: float | None = None
        self.kill_at: float | None = None

    def run(self) -> int:
        signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED)
        self._spawn()
        while True:
            self._reap()
            if self.stopping and self.daemon.pid is None:
                self._publish()
                return 0
            now = time.monotonic()
            if self.restart_at is not None and now >= self.restart_at and not self.held():
                self.restart_at = None
                self.daemon.restarts += 1
                self._spawn()
            if self.kill_at is not None and now >= self.kill_at and self.daemon.pid is not None:
                _log(f"{self.argv[0]} ignored SIGTERM for {STOP_GRACE:.0f} s: SIGKILL")
                self._signal(signal.SIGKILL)
                self.kill_at = None
            info = signal.sigtimedwait(HANDLED, self._wait(now))
            if info is not None:
                self._on_signal(info.si_signo)

    def held(self) -> bool:
        return self.daemon.held

    def _wait(self, now: float) -> float:
        restart_at = None if self.held() else self.restart_at  # a held restart waits for us
        due = [t for t in (restart_at, self.kill_at) if t is not None]
        return max(0.0, min([IDLE_WAIT, *(t - now for t in due)]))

    def _on_signal(self, signo: int) -> None:
        if signo in (signal.SIGTERM, signal.SIGINT):
            if not self.stopping:
                self.stopping = True
                self.restart_at = None
                if self.daemon.pid is not None:
                    self._signal(signal.SIGTERM)
                    self.kill_at = time.monotonic() + STOP_GRACE
        elif signo == signal.SIGUSR1:
            self.daemon.held = True
            self._publish()
        elif signo == signal.SIGUSR2:
            self.daemon.held = False
            if self.daemon.pid is None and not self.stopping:
                self.restart_at = time.monotonic()  # a held restart goes at once
            self._publish()

    def _signal(self, sig: int) -> None:
        if self.daemon.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.daemon.pid, sig)

    def _reap(self) -> None:
        """Collect the daemon if it exited, and decide when it runs again."""
        d = self.daemon
        if d.pid is None:
            return
        try:
            pid, status = os.waitpid(d.pid, os.WNOHANG)
        except ChildProcessError:
            pid, status = d.pid, 0
        if pid == 0:
            return
        uptime = time.monotonic() - d.started_at
        d.pid = d.start = None
        d.last_exit = _describe(status)
        self.kill_at = None
        if self.stopping:
            _log(f"{self.argv[0]} {d.last_exit} (stopping)")
            return
        d.streak = self.policy.next_streak(d.streak, uptime)
        delay = self.policy.delay(d.streak)
        self.restart_at = time.monotonic() + delay
        held = " (held: waiting for release)" if d.held else ""
        _log(f"{self.argv[0]} {d.last_exit} after {uptime:.1f} s; restart in {delay:.1f} s{held}")
        self._publish()

    def _spawn(self) -> None:
        parent = os.getpid()
        d = self.daemon
        try:
            pid = os.fork()
        except OSError as exc:  # out of processes or memory: try again later
            d.streak += 1
            delay = self.policy.delay(d.streak)
            _log(f"cannot start {self.argv[0]}: {exc.strerror}; again in {delay:.1f} s")
            self.restart_at = time.monotonic() + delay
            return
        if pid == 0:  # the daemon-to-be: never returns
            _exec_daemon(self.argv, parent)
        d.pid, d.start, d.started_at = pid, start_time(pid), time.monotonic()
        if d.restarts:
            _log(f"{self.argv[0]} restarted as pid {pid} (restart {d.restarts})")
        self._publish()

    def _publish(self) -> None:
        d = self.daemon
        doc = {
            "supervisor": os.getpid(),
            "pid": d.pid,
            "start": d.start,
            "restarts": d.restarts,
            "held": d.held,
            "last_exit": d.last_exit,
        }
        try:
            write_atomic(self.status, doc)
        except OSError as exc:  # `down` may have removed the directory under us
            _log(f"cannot write {self.status}: {exc}")


def _exec_daemon(argv: list[str], parent: int) -> NoReturn:
    try:
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            os._exit(126)
        if os.getppid() != parent:  # the supervisor died before prctl took effect
            os._exit(0)
        os.execvp(argv[0], argv)
    except OSError as exc:
        print(f"supervisor: cannot run {argv[0]}: {exc.strerror}", file=sys.stderr, flush=True)
    finally:
        os._exit(127)


def supervise(argv: list[str], status: Path, policy: RestartPolicy | None = None) -> int:
    return Supervisor(argv, status, policy or RestartPolicy()).run()
