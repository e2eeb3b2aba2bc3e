"""Which VMs the agent must make and remove: the VMs a NodeConfig asks for (one per network
namespace, a TAP or, for the eBPF datapath, a veth per port in it) against the VMs the agent
made, and what it reports. Pure.

The agent only ever names namespaces that carry its `--vm-netns-prefix` and pass the same
checks as the service's; anything else in a config is refused here, never created.
"""

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from openvpc.model.nodeconfig import NodeConfig, VmReport
from openvpc.model.vifnames import DEFAULT_DATAPATH, Datapath

_NETNS = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_IFNAME = re.compile(r"[A-Za-z0-9_.-]{1,15}")
_MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")


@dataclass(frozen=True, slots=True)
class Tap:
    """One VM interface: `ifname` carrying `mac`, for the port of `interface_id`; a TAP, or
    with `veth` a veth pair whose VM side has MTU `mtu` (its node side, `vifnames.node_side_name`,
    takes any size)."""

    ifname: str
    mac: str
    interface_id: str
    veth: bool = False
    mtu: int = 0  # veths only: a TAP's MTU is the VM's business (DHCP option 26)


@dataclass(frozen=True, slots=True)
class VmSpec:
    """A VM: its network namespace and its TAPs (sorted by name)."""

    netns: str
    taps: tuple[Tap, ...]


def check_prefix(prefix: str) -> str:
    """A usable `--vm-netns-prefix`: a namespace name itself, so every name it starts is one."""
    if not _NETNS.fullmatch(prefix) or prefix in (".", ".."):
        raise ValueError(f"bad VM namespace prefix {prefix!r}: use 1-64 of A-Z a-z 0-9 _ . -")
    return prefix


def refusal(netns: str, ifname: str, mac: str, prefix: str) -> str | None:
    """Why a port's VM may not be made by this agent, or None when it may."""
    if not _NETNS.fullmatch(netns) or netns in (".", ".."):
        return f"namespace {netns!r:.80} is not a usable name"
    if not netns.startswith(prefix) or netns == prefix:
        return f"namespace {netns} does not start with the VM prefix {prefix}"
    if not _IFNAME.fullmatch(ifname) or ifname in (".", ".."):
        return f"interface name {ifname!r:.40} in {netns} is not usable"
    if not _MAC.fullmatch(mac) or int(mac[:2], 16) & 1:
        return f"MAC {mac!r:.40} in {netns} is not a unicast MAC"
    return None


def wanted_vms(
    config: NodeConfig, prefix: str, datapath: Datapath = DEFAULT_DATAPATH
) -> tuple[dict[str, VmSpec], list[str]]:
    """The VMs `config` asks for, by namespace, and why any of its ports has none; their
    interfaces are what `datapath` serves (a changed datapath replaces them)."""
    veth = datapath == "ebpf"
    taps: dict[str, dict[str, Tap]] = {}
    refused = []
    for port in config.ports:
        why = refusal(port.netns, port.ifname, port.mac, prefix)
        if why is None and port.ifname in taps.get(port.netns, {}):
            why = f"two ports name {port.ifname} in {port.netns}"
        if why is not None:
            refused.append(f"port {port.interface_id}: {why}")
            continue
        taps.setdefault(port.netns, {})[port.ifname] = Tap(
            port.ifname, port.mac, port.interface_id, veth, port.mtu if veth else 0
        )
    wanted = {
        ns: VmSpec(ns, tuple(sorted(by_name.values(), key=lambda t: t.ifname)))
        for ns, by_name in taps.items()
    }
    return wanted, refused


def staged(want: VmSpec, have: VmSpec | None) -> VmSpec:
    """What a VM holds while the vRouter moves to a config: every TAP it wants, and those it
    had under other names (removed once the vRouter let go of them: `settled`)."""
    if have is None:
        return want
    names = {t.ifname for t in want.taps}
    kept = [t for t in have.taps if t.ifname not in names]
    return VmSpec(want.netns, tuple(sorted([*want.taps, *kept], key=lambda t: t.ifname)))


def before_apply(
    wanted: Mapping[str, VmSpec], made: Mapping[str, VmSpec]
) -> list[tuple[VmSpec, VmSpec | None]]:
    """(target, what is there) for every VM to make or grow before the vRouter gets a config
    naming its TAPs."""
    out = []
    for ns in sorted(wanted):
        target = staged(wanted[ns], made.get(ns))
        if target != made.get(ns):
            out.append((target, made.get(ns)))
    return out


def after_apply(
    wanted: Mapping[str, VmSpec], made: Mapping[str, VmSpec]
) -> tuple[list[tuple[VmSpec, VmSpec]], list[VmSpec]]:
    """Once the vRouter holds `wanted`: ([(target, what is there)] for VMs that lose TAPs,
    [VMs to remove]). `wanted` covers every config the vRouter may be given meanwhile."""
    shrink, remove = [], []
    for ns in sorted(made):
        if ns not in wanted:
            remove.append(made[ns])
            continue
        keep = {t.ifname for t in wanted[ns].taps}
        target = VmSpec(ns, tuple(t for t in made[ns].taps if t.ifname in keep))
        if target != made[ns]:
            shrink.append((target, made[ns]))
    return shrink, remove


def merge(*configs: Mapping[str, VmSpec]) -> dict[str, VmSpec]:
    """The VMs several configs want together (a TAP wanted by any is kept)."""
    out: dict[str, VmSpec] = {}
    for wanted in configs:
        for ns, vm in wanted.items():
            out[ns] = staged(vm, out.get(ns))
    return out


def attached(config: NodeConfig) -> dict[tuple[str, str, str], tuple[str, str]]:
    """(netns, ifname, interface id) of every port of a config the vRouter applied ->
    (instance id, instance name)."""
    return {(p.netns, p.ifname, p.interface_id): (p.instance_id, p.name) for p in config.ports}


def report(
    made: Iterable[VmSpec],
    on_vrouter: Mapping[tuple[str, str, str], tuple[str, str]],
    leases: Mapping[str, str],
) -> tuple[VmReport, ...]:
    """The ready interfaces: their VM exists and the vRouter has their port."""
    out = [
        VmReport(
            tap.interface_id,
            vm.netns,
            tap.ifname,
            leases.get(tap.interface_id),
            *on_vrouter[(vm.netns, tap.ifname, tap.interface_id)],
        )
        for vm in made
        for tap in vm.taps
        if (vm.netns, tap.ifname, tap.interface_id) in on_vrouter
    ]
    return tuple(sorted(out, key=lambda r: r.interface_id))


def _ns(vm: VmSpec) -> str:
    return vm.netns
