"""The paths the overlay benchmark compares, each built as a context manager that yields its
Endpoints and removes everything it made: the baselines (Linux bridge + kernel VXLAN, the same
bridges plainly bridged over the underlay, Open vSwitch's userspace VXLAN) on an underlay built
like the lab's l2 one, and openvpc labs (one per datapath, one tenant per encapsulation).

Baseline namespaces are named "ovbench-..." (`sweep` removes leftovers of a killed run); labs
are named "bench<datapath>" and torn down by the lab's own `down`.
"""

import contextlib
import dataclasses
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from bench.overlay_measure import Endpoints
from bench.overlay_ovs import PrivateOvs
from openvpc.lab import netns, nsexec, real
from openvpc.lab.topology import Topology

PREFIX = "ovbench-"
SWITCH = f"{PREFIX}sw"
FABRIC_MTU = 1500
VXLAN_MTU = FABRIC_MTU - 50
VNI = 4242
UNDERLAY = "192.168.0"
ENCAPS = ("vxlan", "mplsoudp", "mplsogre", "vlan")
VM_PREFIX = {"vxlan": "vx", "mplsoudp": "mu", "mplsogre": "mg", "vlan": "vl"}
# underlay host numbers and overlay subnets of the baselines (one pair of nodes each)
BASELINES = {"kernel": (21, "10.99.1"), "kernel-vlan": (23, "10.99.2"), "ovs": (25, "10.99.3")}


def lab_name(datapath: str) -> str:
    return f"bench{datapath}"


def _sh(argv: Sequence[str]) -> str:
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()}")
    return done.stdout


def _ip(ns: str, *args: str) -> None:
    _sh(["ip", "-n", ns, *args])


def ip_netns_exec(ns: str, argv: Sequence[str]) -> list[str]:
    return ["ip", "netns", "exec", ns, *argv]


def sweep(directories: bool = False) -> list[str]:
    """Remove every "ovbench-" namespace and kill what runs in it (a killed run's leftovers,
    OVS daemons included), and with `directories` the "ovbench-" temporary directories too
    (only before a run: during one they are in use); the names removed."""
    removed = []
    for ns in netns.list_netns():
        if ns.startswith(PREFIX):
            for pid in netns.pids_in_netns(ns):
                _kill(pid)
            netns.remove_netns(ns)
            removed.append(ns)
    if directories:
        for stale in Path(tempfile.gettempdir()).glob(f"{PREFIX}*"):
            shutil.rmtree(stale, ignore_errors=True)
            removed.append(str(stale))
    return removed


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


@contextmanager
def underlay() -> Iterator[str]:
    """The baselines' underlay: a bridge in a switch namespace, as the lab's l2 underlay."""
    try:
        netns.create_netns(SWITCH)
        netns.add_bridge(SWITCH, "br0", FABRIC_MTU)
        yield SWITCH
    finally:
        sweep()


def _node(path: str, i: int) -> str:
    return f"{PREFIX}{path}-n{i}"


def _vm(path: str, i: int) -> str:
    return f"{PREFIX}{path}-v{i}"


def _add_node(path: str, i: int, host: int, with_ip: bool) -> str:
    """A node namespace with fabric0 on the underlay bridge (port "<path><i>" of br0)."""
    ns = _node(path, i)
    netns.create_netns(ns)
    port = f"{path.replace('-', '')[:10]}{i}"
    netns.add_veth(ns, "fabric0", SWITCH, port, FABRIC_MTU)
    netns.enslave(SWITCH, port, "br0")
    if with_ip:
        netns.add_address(ns, "fabric0", f"{UNDERLAY}.{host}/24")
    return ns


def _add_vm(path: str, i: int, node: str, address: str, mtu: int) -> str:
    """A VM namespace whose eth0 is a veth to "vm0" in its node."""
    ns = _vm(path, i)
    netns.create_netns(ns)
    netns.add_veth(ns, "eth0", node, "vm0", mtu)
    netns.add_address(ns, "eth0", address)
    return ns


def _endpoints(path: str, subnet: str) -> Endpoints:
    return Endpoints(path, _vm(path, 1), _vm(path, 2), f"{subnet}.2", ip_netns_exec)


def kernel_vxlan(path: str = "kernel") -> Endpoints:
    """Per node: bridge brv with the VM's veth and a kernel VXLAN device to the other node."""
    host, subnet = BASELINES[path]
    for i in (1, 2):
        local, remote = f"{UNDERLAY}.{host + i - 1}", f"{UNDERLAY}.{host + 2 - i}"
        node = _add_node(path, i, host + i - 1, with_ip=True)
        _add_vm(path, i, node, f"{subnet}.{i}/24", VXLAN_MTU)
        _ip(node, "link", "add", "brv", "type", "bridge")
        _ip(node, "link", "set", "vm0", "master", "brv")
        _ip(node, "link", "add", "vx0", "type", "vxlan", "id", str(VNI), "remote", remote,
            "local", local, "dstport", "4789")  # fmt: skip
        _ip(node, "link", "set", "vx0", "master", "brv")
        for dev in ("vx0", "brv"):
            _ip(node, "link", "set", dev, "up")
    return _endpoints(path, subnet)


def kernel_vlan(path: str = "kernel-vlan") -> Endpoints:
    """Per node: bridge brv with the VM's veth and fabric0, so the VMs' frames cross the
    underlay as they are: no tunnel, no node address. Untagged: this kernel has neither bridge
    VLAN filtering ("Operation not supported") nor 8021q nor tc's vlan action, so nothing in it
    can push an 802.1Q tag (openvpc's VLAN frames are 4 bytes longer on the wire)."""
    host, subnet = BASELINES[path]
    for i in (1, 2):
        node = _add_node(path, i, host + i - 1, with_ip=False)
        _add_vm(path, i, node, f"{subnet}.{i}/24", FABRIC_MTU)
        _ip(node, "link", "add", "brv", "type", "bridge")
        for dev in ("vm0", "fabric0"):
            _ip(node, "link", "set", dev, "master", "brv")
        _ip(node, "link", "set", "brv", "up")
    return _endpoints(path, subnet)


def ovs_vxlan(workdir: Path, daemons: list[PrivateOvs], path: str = "ovs") -> Endpoints:
    """Per node, a private OVS (userspace datapath): br-phy holds fabric0 and the node's
    underlay address (the tunnel's way out), br-int the VM's veth and a VXLAN port. Checksum
    offload (hence TSO) is off on the VM's veth: without userspace TSO OVS needs whole frames."""
    host, subnet = BASELINES[path]
    for i in (1, 2):
        local, remote = f"{UNDERLAY}.{host + i - 1}", f"{UNDERLAY}.{host + 2 - i}"
        node = _add_node(path, i, host + i - 1, with_ip=False)
        # OVS reads fabric0 with a packet socket, so the node's kernel sees its frames too:
        # it must neither answer ARP there nor take the tunnel packets (ICMP unreachables)
        for key, value in (("arp_ignore", "1"), ("rp_filter", "1")):
            netns.write_sysctl(node, f"net.ipv4.conf.fabric0.{key}", value)
        vm = _add_vm(path, i, node, f"{subnet}.{i}/24", VXLAN_MTU)
        for ns, dev in ((vm, "eth0"), (node, "vm0")):
            _sh(ip_netns_exec(ns, ["ethtool", "-K", dev, "tx", "off"]))
        ovs = PrivateOvs(node, workdir / f"ovs{i}")
        daemons.append(ovs)
        ovs.start()
        ovs.vsctl("add-br", "br-phy", "--", "set", "bridge", "br-phy", "datapath_type=netdev",
                  "--", "add-port", "br-phy", "fabric0")  # fmt: skip
        _ip(node, "addr", "add", f"{local}/24", "dev", "br-phy")
        _ip(node, "link", "set", "br-phy", "up")
        ovs.vsctl("add-br", "br-int", "--", "set", "bridge", "br-int", "datapath_type=netdev",
                  "--", "add-port", "br-int", "vm0",
                  "--", "add-port", "br-int", "vx0", "--", "set", "interface", "vx0",
                  "type=vxlan", f"options:remote_ip={remote}", f"options:local_ip={local}",
                  f"options:key={VNI}")  # fmt: skip
    for i in (1, 2):  # the underlay neighbours OVS's tunnel code needs, learnt from the replies
        remote = f"{UNDERLAY}.{host + 2 - i}"
        _sh(ip_netns_exec(_node(path, i), ["ping", "-c", "1", "-W", "2", remote]))
    return _endpoints(path, subnet)


@contextmanager
def baselines(names: Sequence[str]) -> Iterator[dict[str, Endpoints]]:
    """The baseline paths among `names` on one underlay; everything removed on exit."""
    wanted = [n for n in names if n in BASELINES]
    if not wanted:
        yield {}
        return
    workdir = Path(tempfile.mkdtemp(prefix="ovbench-ovs-"))
    daemons: list[PrivateOvs] = []
    try:
        with underlay():
            found: dict[str, Endpoints] = {}
            for name in wanted:
                if name == "kernel":
                    found[name] = kernel_vxlan()
                elif name == "kernel-vlan":
                    found[name] = kernel_vlan()
                else:
                    found[name] = ovs_vxlan(workdir, daemons)
            yield found
    finally:
        for ovs in daemons:
            ovs.stop()
        sweep()
        shutil.rmtree(workdir, ignore_errors=True)


# -- openvpc labs ----------------------------------------------------------------------------
def supports_datapath_key() -> bool:
    return "datapath" in {f.name for f in dataclasses.fields(Topology)}


def topology(datapath: str, encaps: Sequence[str]) -> dict[str, Any]:
    """One tenant per encapsulation, one VM on each node (vx1 on node1, vx2 on node2...)."""
    top: dict[str, Any] = {
        "name": lab_name(datapath),
        "underlay": "l2",
        "encap": "vxlan",
        "fabric_mtu": FABRIC_MTU,
        "nodes": ["node1", "node2"],
    }
    if supports_datapath_key():
        top["datapath"] = datapath
    elif datapath != "python":
        raise RuntimeError(
            f"datapath {datapath}: this checkout's topology has no `datapath:` key yet"
        )
    top["tenants"] = [
        {
            "name": encap,
            "vpcs": [
                {
                    "name": "bench",
                    "cidr": "10.0.0.0/16",
                    "encap": encap,
                    "subnets": [{"name": "s", "cidr": "10.0.1.0/24"}],
                    "vms": [
                        {"name": f"{VM_PREFIX[encap]}1", "subnet": "s", "node": "node1"},
                        {"name": f"{VM_PREFIX[encap]}2", "subnet": "s", "node": "node2"},
                    ],
                }
            ],
        }
        for encap in encaps
    ]
    return top


def vm_endpoints(path: str, client: real.VmStatus, server: real.VmStatus) -> Endpoints:
    """A path between two lab VMs: commands run through the lab's nsexec."""
    return Endpoints(
        path, client.netns, server.netns, (server.ip or "").split("/")[0], nsexec.command
    )


@contextmanager
def lab_up(top: dict[str, Any]) -> Iterator[real.LabStatus]:
    """The lab of topology `top` (a killed run's lab of that name is brought down first), its
    status once up; `down` on exit, also when `up` fails half way."""
    name = str(top["name"])
    with tempfile.TemporaryDirectory(prefix=PREFIX) as tmp:
        path = Path(tmp) / f"{name}.yaml"
        path.write_text(yaml.safe_dump(top, sort_keys=False))
        real.down(name)
        try:
            yield real.up(path)
        finally:
            real.down(name)


@contextmanager
def openvpc_lab(datapath: str, encaps: Sequence[str]) -> Iterator[dict[str, Endpoints]]:
    """A lab with this datapath, paths named "<datapath>-<encap>"; `down` on exit."""
    with lab_up(topology(datapath, encaps)) as st:
        vms = {vm.name: vm for vm in st.vms}
        yield {
            f"{datapath}-{encap}": vm_endpoints(
                f"{datapath}-{encap}", vms[f"{VM_PREFIX[encap]}1"], vms[f"{VM_PREFIX[encap]}2"]
            )
            for encap in encaps
        }
