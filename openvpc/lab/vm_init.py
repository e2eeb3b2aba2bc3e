"""The init of a VM command's own pid namespace, so that root in a VM sees and signals only its
own processes: forked as pid 1 by the nsexec trampoline, it mounts that namespace's /proc, runs
the command as pid 2, forwards signals to it, reaps orphans, and hands the command's wait status
back. If the trampoline is killed, the kernel kills init and with it the whole namespace.
"""

import contextlib
import ctypes
import os
import select
import signal
import struct
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

FORWARDED = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
)
PR_SET_PDEATHSIG = 1
MS_NOSUID, MS_NODEV, MS_NOEXEC = 2, 4, 8
_STATUS = struct.Struct("i")
_libc = ctypes.CDLL(None, use_errno=True)


def _forward_to(pid: int) -> None:
    def handler(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)

    for sig in FORWARDED:
        signal.signal(sig, handler)


def run(argv: Sequence[str], before_exec: Callable[[], None]) -> NoReturn:
    """In a process that has unshared CLONE_NEWPID: run `argv` under a new init and end as it
    did (its exit code, or killed by the same signal). `before_exec` runs in the command's
    process (to drop what the command must not have)."""
    status_r, status_w = os.pipe()
    alive_r, alive_w = os.pipe()  # only we hold the write end: EOF once we are gone
    init = os.fork()
    if init == 0:
        os.close(status_r)
        os.close(alive_w)
        try:
            _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            if select.select([alive_r], [], [], 0)[0]:  # we died before it could be told
                os._exit(125)
            os.close(alive_r)
            flags = MS_NOSUID | MS_NODEV | MS_NOEXEC
            if _libc.mount(b"proc", b"/proc", b"proc", flags, None) != 0:
                raise OSError(ctypes.get_errno(), "mount /proc")
            os.write(status_w, _STATUS.pack(_init(argv, before_exec)))
        except BaseException as exc:
            print(f"nsexec: init: {exc}", file=sys.stderr)
            os._exit(125)
        os._exit(0)
    os.close(status_w)
    os.close(alive_r)
    _forward_to(init)
    os.waitpid(init, 0)
    with os.fdopen(status_r, "rb") as f:
        raw = f.read(_STATUS.size)
    if len(raw) != _STATUS.size:
        os._exit(125)
    (status,) = _STATUS.unpack(raw)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
    os._exit(os.waitstatus_to_exitcode(status) & 0xFF)


def _init(argv: Sequence[str], before_exec: Callable[[], None]) -> int:
    """Pid 1: start the command, pass signals on, reap everything; the command's status."""
    command = os.fork()
    if command == 0:
        _exec(argv, before_exec)
    _forward_to(command)
    while True:
        pid, status = os.waitpid(-1, 0)  # orphans of the namespace are ours to reap
        if pid == command:
            return status


def _exec(argv: Sequence[str], before_exec: Callable[[], None]) -> NoReturn:
    # Python ignores SIGPIPE and SIGXFSZ; a command expects the defaults
    for sig in (*FORWARDED, signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(sig, signal.SIG_DFL)
    try:
        before_exec()
        os.execvp(argv[0], list(argv))
    except FileNotFoundError:
        print(f"{argv[0]}: command not found", file=sys.stderr)
        os._exit(127)
    except PermissionError as exc:
        print(f"{argv[0]}: {exc.strerror}", file=sys.stderr)
        os._exit(126)
    except BaseException as exc:
        print(f"nsexec: {exc}", file=sys.stderr)
        os._exit(125)
