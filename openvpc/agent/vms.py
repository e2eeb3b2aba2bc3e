"""The shell that makes and removes this node's VMs: a `Plug` (here network namespaces with a
persistent TAP per interface, or for the eBPF datapath a veth pair whose node side is in the
agent's own namespace; a QEMU plug could take its place) and the DHCP client that a
namespace VM runs once, hardened like every command in a VM (openvpc.lab.nsexec).

Nothing here forks but the DHCP client; namespaces and links are made from the calling thread
(openvpc.lab.netns), so it is safe in the agent's threaded process.
"""

import contextlib
import shutil
import subprocess
from pathlib import Path
from typing import IO, Protocol

from openvpc.agent.vm_plan import Tap, VmSpec
from openvpc.lab import netns, nsexec, supervise
from openvpc.model.vifnames import node_side_name

DHCLIENT_SCRIPT = "/sbin/dhclient-script"


class PlugError(Exception):
    """A VM could not be made (the message says why); what was made of it is undone."""


class Plug(Protocol):
    """Makes a VM whose interfaces the vRouter can then attach, and removes it."""

    def plug(self, want: VmSpec, have: VmSpec | None) -> int:
        """Bring the VM from `have` (None: it does not exist) to `want`: make it, add the
        TAPs it lacks, remove those it no longer has. Returns a token that tells this VM
        from a later one of the same name (kept in the state file, checked by `exists`)."""
        ...

    def exists(self, vm: VmSpec, token: int) -> bool:
        """Whether the VM made with `token` is still there (and no other under its name)."""
        ...

    def unplug(self, vm: VmSpec) -> None:
        """Remove the VM and everything running in it; what is already gone is skipped."""
        ...


class NetnsPlug:
    """A VM is a network namespace with a TAP per interface and its own resolv.conf."""

    def plug(self, want: VmSpec, have: VmSpec | None) -> int:
        if have is None:
            self._create(want)
        else:
            try:
                for tap in have.taps:
                    if tap not in want.taps:
                        netns.delete_link(want.netns, tap.ifname)
                for tap in want.taps:
                    if tap not in have.taps:
                        add_interface(want.netns, tap)
            except netns.NetnsError as e:
                raise PlugError(f"VM {want.netns}: {e}") from e
        token = netns.netns_inode(want.netns)
        if token is None:
            raise PlugError(f"VM {want.netns} is gone")
        return token

    def _create(self, vm: VmSpec) -> None:
        try:
            netns.create_netns(vm.netns)
        except netns.NetnsError as e:
            raise PlugError(str(e)) from e  # an existing one is not ours: left alone
        try:
            for tap in vm.taps:
                add_interface(vm.netns, tap)
            # readable by anyone in the VM, whatever the agent's private umask
            own = nsexec.ETC_NETNS / vm.netns
            with contextlib.suppress(FileExistsError):
                nsexec.ETC_NETNS.mkdir()
                nsexec.ETC_NETNS.chmod(0o755)
            own.mkdir(exist_ok=True)
            own.chmod(0o755)
            # a DHCP hook rewrites this file, never the host's /etc/resolv.conf
            conf = nsexec.resolv_conf(vm.netns)
            conf.write_text(f"# openvpc VM {vm.netns}: written by its DHCP client\n")
            conf.chmod(0o644)
        except (netns.NetnsError, OSError) as e:
            self.unplug(vm)
            raise PlugError(f"VM {vm.netns}: {e}") from e

    def exists(self, vm: VmSpec, token: int) -> bool:
        return netns.netns_inode(vm.netns) == token

    def unplug(self, vm: VmSpec) -> None:
        # whatever runs inside (a DHCP daemon, a command run by exec) pins the namespace
        supervise.stop_pids(netns.pids_in_netns(vm.netns))
        for tap in vm.taps:
            with contextlib.suppress(netns.NetnsError):  # the namespace takes it along
                netns.delete_link(vm.netns, tap.ifname)
        netns.remove_netns(vm.netns)
        shutil.rmtree(nsexec.ETC_NETNS / vm.netns, ignore_errors=True)


def add_interface(vm_ns: str, tap: Tap) -> None:
    """The VM's interface: a persistent TAP, or a veth pair with its node side here."""
    if tap.veth:
        netns.add_vm_veth(vm_ns, tap.ifname, tap.mac, node_side_name(vm_ns, tap.ifname), tap.mtu)
    else:
        netns.add_tap(vm_ns, tap.ifname, tap.mac)


def start_dhclient(vm: VmSpec, tap: Tap, log: Path | None) -> "subprocess.Popen[bytes]":
    """`dhclient -1` in the VM (its files in the VM's private scratch directory): it exits
    once bound or after giving up, leaving a daemon (`stop_dhclient`)."""
    argv = [
        "dhclient",
        "-1",
        "-v",
        "-lf",
        str(nsexec.VM_SCRATCH / f"dhclient-{tap.ifname}.leases"),
        "-pf",
        str(nsexec.VM_SCRATCH / f"dhclient-{tap.ifname}.pid"),
        "-sf",
        DHCLIENT_SCRIPT,
        tap.ifname,
    ]
    out: IO[bytes] | int = subprocess.DEVNULL
    if log is not None:
        out = open(log, "ab")  # noqa: SIM115 -- the child holds it; closed below
    try:
        return nsexec.popen(
            vm.netns,
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a signal to the agent's group is not the client's
        )
    finally:
        if not isinstance(out, int):
            out.close()


def stop_dhclient(vm: VmSpec) -> None:
    """Stop the DHCP client daemons in the VM (found by namespace, then by name: other
    commands running in the VM are left alone)."""
    supervise.stop_pids([pid for pid in netns.pids_in_netns(vm.netns) if _comm(pid) == "dhclient"])


def address(vm: VmSpec, tap: Tap) -> str | None:
    """The first IPv4 address on the VM's interface ("a.b.c.d/len"), None without one."""
    try:
        found = netns.ipv4_addresses(vm.netns, tap.ifname)
    except netns.NetnsError:
        return None
    return found[0] if found else None


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def remove_log(log: Path | None) -> None:
    if log is not None:
        log.unlink(missing_ok=True)
