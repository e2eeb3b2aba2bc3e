"""A TAP in the node's namespace, as QEMU holds one, served by the eBPF datapath: a vRouter in
`--datapath ebpf` (programmed over its control channel, as the agent would) attaches vif_in to
a port whose netns is "" and delivers to the TAP's egress; the test holds the TAP's fd as QEMU
would and writes the guest's frames into it, next to a VM on a veth. The ARP proxy's reply and
the veth VM's echo replies come back out of the fd, and the fast path's counters (not the slow
path's) moved. bpftool is the oracle for what is attached, before and after the vRouter."""

import fcntl
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import tcx_programs
from pyroute2.netns import popns, pushns
from scapy.layers.inet import ICMP, IP
from scapy.layers.l2 import ARP, Ether

from openvpc.credentials import new_secret, write_secret_file
from openvpc.lab import netns
from openvpc.lab.real import ebpf_refusal
from openvpc.model.codec import to_dict
from openvpc.model.nodeconfig import (
    NextHopConfig,
    PortConfig,
    RouteConfig,
    VrfConfig,
    VrouterObject,
    object_key,
    object_kind,
)
from openvpc.model.vifnames import NODE_NETNS, node_side_name
from openvpc.vrouter.control import ControlClient, ControlError

OPENVPC = Path(sys.executable).parent / "openvpc"
TUNSETIFF = 0x400454CA
IFF_TUN, IFF_TAP, IFF_NO_PI = 0x0001, 0x0002, 0x1000
MTU = 1400
TAP_VIF, VETH_VIF = 2, 3
TAP_MAC, VETH_MAC = "02:00:00:00:01:05", "02:00:00:00:01:06"
TAP_IP, VETH_IP = "10.0.1.5", "10.0.1.6"
PINGS = 5


@dataclass
class TapNode:
    """A node namespace with a vRouter in ebpf mode, a guest TAP (its fd held here) and a
    VM on a veth, both plugged into VRF 1."""

    ns: str
    vm_ns: str
    tap: str
    fd: int
    client: ControlClient
    proc: "subprocess.Popen[bytes]"

    def stats(self) -> dict[str, Any]:
        result = self.client.request("stats")["ebpf"]
        assert isinstance(result, dict)
        return result

    def write(self, frame: bytes) -> None:
        os.write(self.fd, frame)

    def read_until(self, want: Callable[[Any], bool], timeout: float = 5.0) -> Any:
        """The first frame out of the TAP's fd that `want` accepts (as a scapy Ether)."""
        deadline = time.monotonic() + timeout
        seen = []
        for _ in range(1000):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                break
            frame = Ether(os.read(self.fd, 65536))
            if want(frame):
                return frame
            seen.append(frame.summary())
        raise AssertionError(f"nothing wanted came out of {self.tap}; saw {seen[:10]}")


def _port(vif: int, ns: str, ifname: str, mac: str, ip: str) -> PortConfig:
    return PortConfig(
        vif=vif,
        interface_id=f"eni-{vif}",
        instance_id=f"i-{vif}",
        name=f"vm{vif}",
        netns=ns,
        ifname=ifname,
        vrf=1,
        mac=mac,
        ip=ip,
        prefix_len=24,
        gateway="10.0.1.1",
        dns="10.0.0.2",
        domain="ec2.internal",
        hostname="ip-" + ip.replace(".", "-"),
        mtu=MTU,
        policy=False,
    )


def _open_tap(ns: str, name: str, kind: int = IFF_TAP) -> int:
    """A TAP (or TUN) made by opening /dev/net/tun in `ns` and kept by its fd: QEMU's way (it
    goes with the fd)."""
    with netns.inside(ns):
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), kind | IFF_NO_PI))
        except OSError:
            os.close(fd)
            raise
    try:
        netns.write_sysctl(ns, f"net.ipv6.conf.{name}.disable_ipv6", "1")  # no chatter
        with netns.rtnl(ns) as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname=name)[0], mtu=MTU, state="up")
    except BaseException:
        os.close(fd)
        raise
    return fd


def _start_vrouter(ns: str, tmp: Path) -> tuple["subprocess.Popen[bytes]", Path, bytes]:
    control, log = tmp / "vr.sock", tmp / "vr.log"
    secret = new_secret()
    write_secret_file(tmp / "vr.secret", secret)
    argv = [str(OPENVPC), "vrouter", "--datapath", "ebpf", "--control", str(control)]
    argv += ["--fabric", "fab0", "--netns", ns, "--secret-file", str(tmp / "vr.secret")]
    with log.open("wb") as err:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.monotonic() + 15
    while not control.exists():
        assert proc.poll() is None, f"vrouter exited: {log.read_text()}"
        assert time.monotonic() < deadline, f"vrouter did not listen: {log.read_text()}"
        time.sleep(0.05)
    return proc, control, secret


def _stop(proc: "subprocess.Popen[bytes]") -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return proc.returncode


@pytest.fixture
def tap_node(tmp_path: Path) -> Iterator[TapNode]:
    why = ebpf_refusal()
    if why is not None:
        pytest.skip(f"no eBPF datapath here: {why}")
    tag = uuid.uuid4().hex[:6]
    ns, vm_ns, tap = f"tap-n-{tag}", f"tap-v-{tag}", f"tapq{tag}"
    made: list[str] = []
    fd = -1
    proc = None
    client = None
    try:
        for name in (ns, vm_ns):
            netns.create_netns(name)
            made.append(name)
            netns.write_sysctl(name, "net.ipv6.conf.all.disable_ipv6", "1")
            netns.write_sysctl(name, "net.ipv6.conf.default.disable_ipv6", "1")
        with netns.rtnl(ns) as ipr:
            ipr.link("add", ifname="fab0", kind="veth", peer={"ifname": "fab0p"})
            for name in ("fab0", "fab0p"):
                ipr.link("set", index=ipr.link_lookup(ifname=name)[0], state="up")
            ipr.addr("add", index=ipr.link_lookup(ifname="fab0")[0], address="192.168.79.1",
                     prefixlen=24)  # fmt: skip
        with netns.inside(ns):
            netns.add_vm_veth(vm_ns, "eth0", VETH_MAC, node_side_name(vm_ns, "eth0"), MTU)
        netns.add_address(vm_ns, "eth0", f"{VETH_IP}/24")
        fd = _open_tap(ns, tap)
        proc, control, secret = _start_vrouter(ns, tmp_path)
        pushns(ns)  # the vRouter takes an agent from its own namespace only
        try:
            client = ControlClient(str(control), lambda _: None, timeout=10.0)
            client.hello(secret)
        finally:
            popns()
        objects: list[VrouterObject] = [
            VrfConfig(1, "red/prod/main", "l3", "vxlan", 5001, None, 17, 18),
            NextHopConfig("receive", "receive"),
            NextHopConfig(f"encap:{TAP_VIF}", "encap", vif=TAP_VIF, dst_mac=TAP_MAC),
            NextHopConfig(f"encap:{VETH_VIF}", "encap", vif=VETH_VIF, dst_mac=VETH_MAC),
            _port(TAP_VIF, NODE_NETNS, tap, TAP_MAC, TAP_IP),
            _port(VETH_VIF, vm_ns, "eth0", VETH_MAC, VETH_IP),
            RouteConfig(1, "10.0.1.1/32", "receive"),
            RouteConfig(1, f"{TAP_IP}/32", f"encap:{TAP_VIF}", mac=TAP_MAC),
            RouteConfig(1, f"{VETH_IP}/32", f"encap:{VETH_VIF}", mac=VETH_MAC),
        ]
        ops = [{"op": "set", "kind": object_kind(o), "obj": to_dict(o)} for o in objects]
        assert client.request("batch", ops=ops, generation=1) == {"applied": len(ops)}
        yield TapNode(ns, vm_ns, tap, fd, client, proc)
    finally:
        if client is not None:
            client.close()
        code = None if proc is None else _stop(proc)
        if fd >= 0:
            os.close(fd)
        for name in reversed(made):
            netns.remove_netns(name)
        left = [n for n in netns.list_netns() if n in made]
        assert not left, f"namespaces left: {left}"
        assert code in (None, 0), f"vrouter exit {code}: {(tmp_path / 'vr.log').read_text()}"


def _echo_reply(seq: int) -> Callable[[Any], bool]:
    return lambda f: IP in f and ICMP in f and f[ICMP].type == 0 and f[ICMP].seq == seq


def test_a_qemu_style_tap_is_served_by_the_fast_path(tap_node: TapNode) -> None:
    n = tap_node
    veth = node_side_name(n.vm_ns, "eth0")
    # vif_in on the TAP itself and on the veth's node end (the kernel's answer)
    assert tcx_programs(n.ns) == {
        "fab0": {"ingress": ["fabric_in"]},
        "pkt0": {"ingress": ["slow_in"]},
        n.tap: {"ingress": ["vif_in"]},
        veth: {"ingress": ["vif_in"]},
    }
    with netns.inside(n.ns):
        indexes = {str(TAP_VIF): socket.if_nametoindex(n.tap)}
        indexes[str(VETH_VIF)] = socket.if_nametoindex(veth)
    assert n.stats()["attached"] == indexes
    before = n.stats()

    # the guest asks for its neighbour: the proxy's reply comes back out of the fd
    request = Ether(dst="ff:ff:ff:ff:ff:ff", src=TAP_MAC) / ARP(
        op=1, hwsrc=TAP_MAC, psrc=TAP_IP, pdst=VETH_IP
    )
    n.write(bytes(request))
    reply = n.read_until(lambda f: ARP in f and f[ARP].op == 2)
    assert (reply.dst, reply.src) == (TAP_MAC, VETH_MAC)
    assert (reply[ARP].hwsrc, reply[ARP].psrc) == (VETH_MAC, VETH_IP)
    assert (reply[ARP].hwdst, reply[ARP].pdst) == (TAP_MAC, TAP_IP)

    # echo requests written into the fd reach the veth VM, whose replies come out of the fd
    for seq in range(PINGS):
        ping = Ether(dst=VETH_MAC, src=TAP_MAC) / IP(src=TAP_IP, dst=VETH_IP, ttl=64)
        n.write(bytes(ping / ICMP(type=8, id=0x7A9, seq=seq) / (b"tap-" * 8)))
        got = n.read_until(_echo_reply(seq))
        assert (got.dst, got[IP].src, got[IP].dst) == (TAP_MAC, VETH_IP, TAP_IP)
        assert got[ICMP].id == 0x7A9 and bytes(got[ICMP].payload) == b"tap-" * 8

    after = n.stats()
    # all of it on the fast path: nothing went up, and the TAP's vif counted each frame
    assert after["slow"] == before["slow"], after["slow"]
    zero = {"rx_packets": 0, "tx_packets": 0}
    tap_before = before["vifs"].get(str(TAP_VIF), zero)
    tap_after = after["vifs"][str(TAP_VIF)]
    assert tap_after["rx_packets"] - tap_before["rx_packets"] >= 1 + PINGS
    assert tap_after["tx_packets"] - tap_before["tx_packets"] >= 1 + PINGS
    veth_before = before["vifs"].get(str(VETH_VIF), zero)
    veth_after = after["vifs"][str(VETH_VIF)]
    assert veth_after["rx_packets"] - veth_before["rx_packets"] >= PINGS
    assert veth_after["tx_packets"] - veth_before["tx_packets"] >= PINGS


def test_the_taps_vif_in_goes_with_its_port_and_with_the_vrouter(tap_node: TapNode) -> None:
    n = tap_node
    veth = node_side_name(n.vm_ns, "eth0")
    assert tcx_programs(n.ns)[n.tap] == {"ingress": ["vif_in"]}
    # the port goes (routes and next hop first, as the agent orders deletes): so does vif_in
    gone: list[VrouterObject] = [
        RouteConfig(1, f"{TAP_IP}/32", f"encap:{TAP_VIF}", mac=TAP_MAC),
        NextHopConfig(f"encap:{TAP_VIF}", "encap", vif=TAP_VIF, dst_mac=TAP_MAC),
        _port(TAP_VIF, NODE_NETNS, n.tap, TAP_MAC, TAP_IP),
    ]
    ops = [{"op": "delete", "kind": object_kind(o), "key": object_key(o)} for o in gone]
    assert n.client.request("batch", ops=ops, generation=2) == {"applied": len(ops)}
    assert list(n.stats()["attached"]) == [str(VETH_VIF)]
    attached = tcx_programs(n.ns)
    assert n.tap not in attached and attached[veth] == {"ingress": ["vif_in"]}
    # the vRouter stops: nothing of it stays attached in the node; QEMU's TAP stays
    n.client.close()
    assert _stop(n.proc) == 0
    deadline = time.monotonic() + 10
    while attached := tcx_programs(n.ns):
        assert time.monotonic() < deadline, f"left attached: {attached}"
        time.sleep(0.1)
    assert netns.link_exists(n.ns, n.tap)


def test_a_port_on_a_device_that_is_neither_veth_nor_tap_is_refused(tap_node: TapNode) -> None:
    """A TUN (no Ethernet) in the node's namespace is not a VM interface: refused by name."""
    tun = "tunq" + tap_node.tap.removeprefix("tapq")
    fd = _open_tap(tap_node.ns, tun, IFF_TUN)
    try:
        port = _port(9, NODE_NETNS, tun, "02:00:00:00:01:09", "10.0.1.9")
        op = {"op": "set", "kind": object_kind(port), "obj": to_dict(port)}
        with pytest.raises(ControlError, match=f"{tun} is a tun device, not a veth or a TAP"):
            tap_node.client.request("batch", ops=[op], generation=3)
        assert str(9) not in tap_node.stats()["attached"]
        assert tun not in tcx_programs(tap_node.ns)
    finally:
        os.close(fd)
