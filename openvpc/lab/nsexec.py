"""Run a command inside a VM namespace the way `ip netns exec` does, in Python.

The command gets a private mount (and UTS) namespace in which /etc/netns/<ns>/resolv.conf is
bound over /etc/resolv.conf, /sys shows the VM's interfaces, and the control plane's
directories (sockets, secrets, the store, state files) are covered by an empty tmpfs; then it
enters the network namespace, gives up the capabilities that would reach past those mounts
(mount, setns, ptrace of host processes through /proc, open by file handle, raw devices), and
execs. A DHCP client's hook script therefore writes the VM's file, never the host's, a hostname
it sets stays private, and root in a VM cannot read or reach what the lab keeps for itself.
unshare(CLONE_NEWNS) needs a single-threaded process, so from a library (which may run gRPC
threads) this module re-executes itself as a small trampoline:
`python -m openvpc.lab.nsexec NS -- CMD...`.
"""

import ctypes
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from openvpc.lab.naming import NETNS_DIR, RUN_ROOT

ETC_NETNS = Path("/etc/netns")
# covered in every VM; inside a VM, RUN_ROOT is then a small private scratch directory
HIDDEN = (RUN_ROOT, Path("/var/lib/openvpc"), Path("/etc/openvpc"))
VM_SCRATCH = RUN_ROOT
CAP_DAC_READ_SEARCH = 2
CAP_SYS_MODULE = 16
CAP_SYS_RAWIO = 17
CAP_SYS_PTRACE = 19
CAP_SYS_ADMIN = 21
CAP_SYS_BOOT = 22
CAP_MKNOD = 27
CAP_SYSLOG = 34
CAP_PERFMON = 38
CAP_BPF = 39
CAP_CHECKPOINT_RESTORE = 40
# what would let root in a VM undo the mounts, enter the host's namespaces, read host
# processes' files through /proc/<pid>/root, open files by handle, or read raw devices
DROPPED_CAPS = (
    CAP_DAC_READ_SEARCH,
    CAP_SYS_MODULE,
    CAP_SYS_RAWIO,
    CAP_SYS_PTRACE,
    CAP_SYS_ADMIN,
    CAP_SYS_BOOT,
    CAP_MKNOD,
    CAP_SYSLOG,
    CAP_PERFMON,
    CAP_BPF,
    CAP_CHECKPOINT_RESTORE,
)
PR_CAPBSET_DROP = 24
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWNET = 0x40000000
MS_BIND = 4096
MS_REC = 16384
MS_SLAVE = 1 << 19
MNT_DETACH = 2
_libc = ctypes.CDLL(None, use_errno=True)


class NsExecError(Exception):
    """The namespace could not be entered (missing, or no resolv.conf of its own)."""


def resolv_conf(ns: str) -> Path:
    return ETC_NETNS / ns / "resolv.conf"


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise NsExecError(f"{what}: {os.strerror(err)}")


def enter(ns: str) -> None:
    """Move this (single-threaded) process into VM namespace `ns` with its own resolv.conf."""
    own = resolv_conf(ns)
    if not own.is_file():
        # without it a DHCP hook would rewrite the host's /etc/resolv.conf
        raise NsExecError(f"{own} is missing; refusing to run inside {ns}")
    try:
        fd = os.open(os.path.join(NETNS_DIR, ns), os.O_RDONLY)
    except FileNotFoundError:
        raise NsExecError(f"network namespace {ns} does not exist") from None
    try:
        _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWUTS), "unshare")
        # a slave root: our bind mounts never propagate back to the host
        _check(_libc.mount(None, b"/", None, MS_SLAVE | MS_REC, None), "make / a slave")
        _check(
            _libc.mount(str(own).encode(), b"/etc/resolv.conf", None, MS_BIND, None),
            "bind resolv.conf",
        )
        hide(HIDDEN)
        _check(_libc.setns(fd, CLONE_NEWNET), f"setns {ns}")
    finally:
        os.close(fd)
    # sysfs shows the namespace that mounted it; remount so /sys/class/net is the VM's
    if _libc.umount2(b"/sys", MNT_DETACH) == 0:
        _libc.mount(b"sysfs", b"/sys", b"sysfs", 0, None)
    drop_capabilities(DROPPED_CAPS)


def hide(directories: Sequence[Path]) -> None:
    """Cover each existing directory with an empty tmpfs (in this mount namespace only)."""
    flags = MS_NOSUID | MS_NODEV | MS_NOEXEC
    for path in directories:
        if path.is_dir():
            rc = _libc.mount(b"tmpfs", str(path).encode(), b"tmpfs", flags, b"mode=0755,size=1m")
            _check(rc, f"hide {path}")


def drop_capabilities(caps: Sequence[int]) -> None:
    """Remove `caps` from the bounding set: the command we exec (as root) never has them."""
    for cap in caps:
        if _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 and ctypes.get_errno() != 22:
            # EINVAL: a capability this kernel does not know, so nobody can hold it
            _check(-1, f"drop capability {cap}")


def command(ns: str, argv: Sequence[str]) -> list[str]:
    """The argv that runs `argv` inside `ns` through the trampoline."""
    if not argv:
        raise NsExecError("no command given")
    return [sys.executable, "-m", "openvpc.lab.nsexec", ns, "--", *argv]


def popen(ns: str, argv: Sequence[str], **kwargs: Any) -> "subprocess.Popen[Any]":
    return subprocess.Popen(command(ns, argv), **kwargs)


def run(
    ns: str,
    argv: Sequence[str],
    timeout: float,
    input: str | None = None,
    capture: bool = True,
) -> "subprocess.CompletedProcess[str]":
    """Run to completion (killed after `timeout` seconds); output captured as text."""
    return subprocess.run(
        command(ns, argv),
        input=input,
        capture_output=capture,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL if input is None else None,
    )


def exec_in(ns: str, argv: Sequence[str]) -> NoReturn:
    """Replace this process by `argv` running inside `ns` (for a single-threaded CLI)."""
    if not argv:
        raise NsExecError("no command given")
    enter(ns)
    try:
        os.execvp(argv[0], list(argv))
    except FileNotFoundError:
        print(f"{argv[0]}: command not found", file=sys.stderr)
        os._exit(127)
    except PermissionError as exc:
        print(f"{argv[0]}: {exc.strerror}", file=sys.stderr)
        os._exit(126)


def main(args: Sequence[str]) -> NoReturn:
    if len(args) < 3 or args[1] != "--":
        print("usage: python -m openvpc.lab.nsexec NS -- CMD [ARG...]", file=sys.stderr)
        os._exit(2)
    try:
        exec_in(args[0], args[2:])
    except NsExecError as exc:
        print(f"nsexec: {exc}", file=sys.stderr)
        os._exit(125)


if __name__ == "__main__":
    main(sys.argv[1:])
