"""VMs of the real lab: a namespace with a persistent TAP and its own resolv.conf, configured by
a real DHCP client (dhclient) run once, whose daemon is then stopped so nothing is left running.

The client keeps its lease and pid files in the VM's private scratch directory (the lab's own
directory is hidden from VMs); its daemon is found by its network namespace, so nothing a VM
writes can make the lab signal a process outside it.
"""

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from openvpc.lab import netns, nsexec, supervise
from openvpc.lab.state import StateFile

DHCLIENT_SCRIPT = "/sbin/dhclient-script"


@dataclass(frozen=True, slots=True)
class Lease:
    vm: str
    ip: str | None  # "a.b.c.d/len" on the VM's interface, None if DHCP failed
    detail: str  # why it failed, or ""


def create_vm(state: StateFile, ns: str, ifname: str, mac: str, vm: str) -> None:
    """The VM's namespace, its TAP with the MAC the controller allocated for its interface,
    and /etc/netns/<ns>/resolv.conf; each is recorded just before it is created."""
    state.add("netns", name=ns)
    netns.create_netns(ns)
    state.add("link", ns=ns, ifname=ifname)
    netns.add_tap(ns, ifname, mac)
    _mkdir(state, nsexec.ETC_NETNS)
    _mkdir(state, nsexec.ETC_NETNS / ns)
    conf = nsexec.resolv_conf(ns)
    state.add("file", path=str(conf))
    conf.write_text(f"# openvpc VM {vm}: written by its DHCP client\n")


def _mkdir(state: StateFile, path: Path) -> None:
    if path.exists():
        return  # not ours: /etc/netns may be shared with other labs and `ip netns`
    state.add("dir", path=str(path))
    path.mkdir(mode=0o755, exist_ok=True)


def _paths(state_dir: Path, vm: str) -> tuple[Path, Path, Path]:
    """Lease and pid files (as the VM sees them: in its scratch tmpfs), and the log (ours)."""
    return (
        nsexec.VM_SCRATCH / "dhclient.leases",
        nsexec.VM_SCRATCH / "dhclient.pid",
        state_dir / f"dhclient-{vm}.log",
    )


def start_dhclient(
    state: StateFile, state_dir: Path, vm: str, ns: str, ifname: str
) -> "subprocess.Popen[bytes]":
    """`dhclient -1` in the VM: it exits once bound (or after giving up), leaving a daemon."""
    leases, pid_file, log = _paths(state_dir, vm)
    state.add("file", path=str(log))
    argv = [
        "dhclient",
        "-1",
        "-v",
        "-lf",
        str(leases),
        "-pf",
        str(pid_file),
        "-sf",
        DHCLIENT_SCRIPT,
        ifname,
    ]
    with open(log, "ab") as out:
        return nsexec.popen(
            ns, argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
        )


def finish_dhclient(
    proc: "subprocess.Popen[bytes]",
    state_dir: Path,
    vm: str,
    ns: str,
    ifname: str,
    deadline: float,
) -> Lease:
    """Wait (until `deadline`, monotonic) for the client, stop its daemon, read the address."""
    _, _, log = _paths(state_dir, vm)
    detail = ""
    try:
        rc = proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        if rc != 0:
            detail = f"dhclient exited {rc}; see {log}"
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        detail = f"no lease before the deadline; see {log}"
    # the daemon dhclient left, and anything else running inside the VM during `up`
    supervise.stop_pids(netns.pids_in_netns(ns))
    addresses = netns.ipv4_addresses(ns, ifname)
    if not addresses:
        return Lease(vm, None, detail or f"no address on {ifname}; see {log}")
    return Lease(vm, addresses[0], "")
