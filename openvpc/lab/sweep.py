"""After `down` has undone its records, find what still carries the lab's names and remove it:
namespaces and /etc/netns entries named `ov-<lab>-...`, processes in those namespaces or whose
command line names the lab's state directory, and the state directory itself.

The choice of what is the lab's is pure (`lab_owns`, `names_path`); the shell reads /proc and
/run/netns, stops processes and removes what was chosen, and returns what it found.
"""

import logging
import os
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from openvpc.lab import netns, nsexec, supervise

log = logging.getLogger("openvpc.lab")

MAX_ROUNDS = 5  # a supervisor may restart a child we stopped: look again, this many times


@dataclass
class SweepReport:
    """What the sweep found still present after the recorded teardown."""

    namespaces: list[str] = field(default_factory=list)
    etc_netns: list[str] = field(default_factory=list)
    processes: list[str] = field(default_factory=list)  # "pid: command line"
    state_dir: str | None = None

    def found(self) -> bool:
        return bool(self.namespaces or self.etc_netns or self.processes or self.state_dir)

    def lines(self) -> list[str]:
        out = [f"namespace {n}" for n in self.namespaces]
        out += [f"directory {d}" for d in self.etc_netns]
        out += [f"process {p}" for p in self.processes]
        if self.state_dir:
            out.append(f"state directory {self.state_dir}")
        return out


def prefix(lab: str) -> str:
    return f"ov-{lab}-"


def lab_owns(name: str, lab: str, other_labs: Iterable[str]) -> bool:
    """Whether namespace `name` is `lab`'s: it carries the lab's prefix and no other live lab
    has a longer prefix that matches too (lab "a" must spare lab "a-n"'s "ov-a-n-n-x")."""
    if not name.startswith(prefix(lab)):
        return False
    return not any(
        len(other) > len(lab) and name.startswith(prefix(other))
        for other in other_labs
        if other != lab
    )


def names_path(argv: Sequence[str], directory: str) -> bool:
    """Whether a command line mentions `directory` or anything under it, as an argument or
    inside one (e.g. "unix:/run/openvpc/lab/sb.sock")."""
    inside = directory.rstrip("/") + "/"
    return any(arg == directory or inside in arg for arg in argv)


# -- shell ---------------------------------------------------------------------------------
def sweep(lab: str, state_dir: Path, other_labs: Iterable[str]) -> SweepReport:
    """Stop and remove whatever of `lab` is still there; returns what was found."""
    others = list(other_labs)
    report = SweepReport()
    spaces = [ns for ns in netns.list_netns() if lab_owns(ns, lab, others)]
    for _ in range(MAX_ROUNDS):
        pids = _pids_naming(str(state_dir))
        for ns in spaces:
            pids |= set(netns.pids_in_netns(ns))
        pids -= _ancestors()
        if not pids:
            break
        report.processes += [f"{pid}: {_cmdline_text(pid)}" for pid in sorted(pids)]
        # parents first: a supervisor told to stop does not restart the child we stop next
        supervise.stop_pids(sorted(pids, key=_depth))
    for ns in spaces:
        netns.remove_netns(ns)
        report.namespaces.append(ns)
    for entry in _listdir(nsexec.ETC_NETNS):
        if lab_owns(entry, lab, others):
            shutil.rmtree(nsexec.ETC_NETNS / entry, ignore_errors=True)
            report.etc_netns.append(str(nsexec.ETC_NETNS / entry))
    if state_dir.exists():
        shutil.rmtree(state_dir, ignore_errors=True)
        report.state_dir = str(state_dir)
    for line in report.lines():
        log.info("lab %s: swept %s", lab, line)
    return report


def _listdir(path: Path) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except FileNotFoundError:
        return []


def _cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read(64 * 1024)
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def _cmdline_text(pid: int) -> str:
    return " ".join(_cmdline(pid)) or "?"


def _pids_naming(directory: str) -> set[int]:
    found = set()
    for entry in _listdir(Path("/proc")):
        if not entry.isdigit() or not names_path(_cmdline(int(entry)), directory):
            continue
        if supervise.start_time(int(entry)) is not None:  # zombies are not running
            found.add(int(entry))
    return found


def _parent(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return 0
    return int(stat[stat.rfind(")") + 2 :].split()[1])


def _ancestors() -> set[int]:
    """This process and its ancestors: never stopped, whatever their command lines say."""
    found = set()
    pid = os.getpid()
    for _ in range(64):
        if pid <= 1 or pid in found:
            break
        found.add(pid)
        pid = _parent(pid)
    return found


def _depth(pid: int) -> int:
    depth = 0
    for _ in range(64):
        pid = _parent(pid)
        if pid <= 1:
            break
        depth += 1
    return depth
