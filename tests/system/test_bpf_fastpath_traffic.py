"""Real packets through the fast path's programs (root): two "nodes" (namespaces) joined by a
fabric veth, one VM namespace on each, vif_in and fabric_in attached with tcx links and the
maps written from hand-built tables, no slow path at all. A VM pings the other (the ARP proxy
answers, the tunnel carries) and sends it a TCP stream whose super-frames cross the tunnel
(VXLAN, MPLSoUDP, MPLSoGRE, and 802.1Q on the L2 underlay)."""

import contextlib
import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from scapy.utils import rdpcap
from test_bpf_fastpath import compile_datapath, ip

from openvpc.lab import netns
from openvpc.model.forwarding import Encap
from openvpc.vrouter.ebpf import layout as L
from openvpc.vrouter.ebpf.encode import Device, encode_tables
from openvpc.vrouter.ebpf.libbpf import BpfObject, TcxLink
from openvpc.vrouter.nexthop import EncapNH, ReceiveNH, TunnelNH
from openvpc.vrouter.tables import Fabric, LabelEntry, Route, Tables, Vif, VifKind, Vrf

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

GW = bytes.fromhex("00005e000100")
VRF, VNI, LABEL, VLAN = 1, 5000, 55, 300
STREAM = 8 << 20  # bytes of TCP, enough for many super-frames


@dataclass(frozen=True)
class Side:
    """One node: its namespace, its VM's namespace, addresses."""

    node: str
    vm: str
    fabric_ip: str
    vm_ip: str
    vm_mac: str


def mac_bytes(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def link_mac(ns: str, ifname: str) -> bytes:
    with netns.rtnl(ns) as ipr:
        link = ipr.get_links(ipr.link_lookup(ifname=ifname)[0])[0]
        return mac_bytes(str(link.get_attr("IFLA_ADDRESS")))


def link_index(ns: str, ifname: str) -> int:
    with netns.rtnl(ns) as ipr:
        return int(ipr.link_lookup(ifname=ifname)[0])


def tables_for(me: Side, peer: Side, encap: Encap, fabric_mac: bytes) -> Tables:
    t = Tables(Fabric(0, ip(me.fabric_ip), fabric_mac, mtu=1500, kernel_routed=True))
    t.add_vrf(Vrf(VRF, "red"))
    mine, theirs = mac_bytes(me.vm_mac), mac_bytes(peer.vm_mac)
    t.add_vif(
        Vif(2, VifKind.VIRTUAL, "vm", vrf=VRF, mac=mine, ip=ip(me.vm_ip), prefix_len=24,
            gateway_ip=ip("10.9.0.1"), mtu=1450)
    )  # fmt: skip
    t.add_nexthop(5, EncapNH(2, mine, GW))
    t.add_nexthop(6, TunnelNH(encap, ip(peer.fabric_ip)))
    t.add_nexthop(7, ReceiveNH())
    t.add_route(VRF, ip("10.9.0.1"), 32, Route(7))
    label = {Encap.VXLAN: VNI, Encap.VLAN: VLAN}.get(encap, LABEL)
    t.add_route(VRF, ip(me.vm_ip), 32, Route(5, None, mine))
    t.add_route(VRF, ip(peer.vm_ip), 32, Route(6, label, theirs))
    t.add_vni(VNI, VRF)
    t.add_label(LABEL, LabelEntry(VRF))
    t.add_vlan(VLAN, VRF)
    return t


@contextlib.contextmanager
def two_nodes() -> Iterator[tuple[Side, Side]]:
    tag = uuid.uuid4().hex[:5]
    a = Side(
        f"fastpath-na-{tag}", f"fastpath-va-{tag}", "192.168.77.1", "10.9.0.5", "02:00:00:09:00:05"
    )
    b = Side(
        f"fastpath-nb-{tag}", f"fastpath-vb-{tag}", "192.168.77.2", "10.9.0.6", "02:00:00:09:00:06"
    )
    made: list[str] = []
    try:
        for ns in (a.node, a.vm, b.node, b.vm):
            netns.create_netns(ns)
            made.append(ns)
        netns.add_veth(a.node, "fab", b.node, "fab", 1500)
        for side in (a, b):
            netns.add_address(side.node, "fab", f"{side.fabric_ip}/24")
            # bpf_fib_lookup answers (the VLAN path's neighbour MAC) where the device forwards
            netns.write_sysctl(side.node, "net.ipv4.conf.fab.forwarding", "1")
            netns.add_veth(side.node, "ovvm", side.vm, "eth0", 1450)
            netns.set_mac(side.vm, "eth0", side.vm_mac)
            netns.add_address(side.vm, "eth0", f"{side.vm_ip}/24")
            netns.add_route(side.vm, "default", "10.9.0.1")
        for me, peer in ((a, b), (b, a)):  # the L2 underlay's neighbours, as the agent learns
            mac = link_mac(peer.node, "fab").hex(":")
            netns.add_neighbor(me.node, "fab", peer.fabric_ip, mac)
        yield a, b
    finally:
        for ns in made:
            netns.remove_netns(ns)
    assert not any(netns.netns_exists(ns) for ns in made)


@contextlib.contextmanager
def datapath(obj_path: Path, me: Side, peer: Side, encap: Encap) -> Iterator[BpfObject]:
    """The programs loaded for `me`, maps written, attached in `me`'s namespace."""
    with BpfObject.open(obj_path) as obj, contextlib.ExitStack() as links:
        fabric, vif = link_index(me.node, "fab"), link_index(me.node, "ovvm")
        tables = tables_for(me, peer, encap, link_mac(me.node, "fab"))
        image = encode_tables(tables, {2: Device(vif, True)}, 0, fabric)
        for name, entries in image.items():
            for key, value in entries.items():
                obj.map(name).update(key, value)
        with netns.inside(me.node):
            links.enter_context(TcxLink.attach(obj.program("vif_in"), vif, "ingress"))
            links.enter_context(TcxLink.attach(obj.program("fabric_in"), fabric, "ingress"))
        yield obj


def vm_run(ns: str, *cmd: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", ns, *cmd], capture_output=True, text=True, timeout=timeout
    )


SERVER = """
import socket, sys
s = socket.socket(); s.bind(("0.0.0.0", 5201)); s.listen(1)
print("ready", flush=True)
c, _ = s.accept(); n = 0
while True:
    d = c.recv(1 << 20)
    if not d: break
    n += len(d)
print(n, flush=True)
"""

CLIENT = """
import socket, sys
c = socket.create_connection((sys.argv[1], 5201), timeout=20)
c.sendall(b"z" * int(sys.argv[2])); c.close()
"""


def stats(obj: BpfObject, vif: int) -> tuple[int, ...]:
    per_cpu = obj.map(L.MAP_VIF_STATS).lookup_percpu(L.u32(vif)) or []
    total = [0] * 5
    for raw in per_cpu:
        for i, n in enumerate(L.VifStats.unpack(raw)):
            total[i] += n
    return tuple(total)


@pytest.mark.parametrize("encap", list(Encap))
def test_vms_on_two_nodes_talk_through_the_fast_path(tmp_path: Path, encap: Encap) -> None:
    obj_path = compile_datapath(tmp_path)
    with (
        two_nodes() as (a, b),
        datapath(obj_path, a, b, encap) as dp_a,
        datapath(obj_path, b, a, encap) as dp_b,
    ):
        ping = vm_run(a.vm, "ping", "-c", "3", "-i", "0.2", "-W", "2", b.vm_ip)
        assert ping.returncode == 0, ping.stdout + ping.stderr
        gw = vm_run(a.vm, "ping", "-c", "1", "-W", "2", "10.9.0.1")
        assert gw.returncode == 0, gw.stdout + gw.stderr  # the gateway answers, in BPF
        server = subprocess.Popen(
            ["ip", "netns", "exec", b.vm, "python3", "-c", SERVER],
            stdout=subprocess.PIPE,
            text=True,
        )
        pcap = tmp_path / "fab.pcap"
        tcpdump = ["tcpdump", "--immediate-mode", "-U", "-n", "-s", "128", "-i", "fab"]
        capture = subprocess.Popen(
            ["ip", "netns", "exec", a.node, *tcpdump, "-w", str(pcap)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert capture.stderr is not None
            capture.stderr.readline()  # "listening on ...": the capture is armed
            assert server.stdout is not None and server.stdout.readline().strip() == "ready"
            client = vm_run(a.vm, "python3", "-c", CLIENT, b.vm_ip, str(STREAM), timeout=60)
            assert client.returncode == 0, client.stderr
            received = server.communicate(timeout=60)[0].strip()
        finally:
            capture.terminate()
            capture.wait(10)
            if server.poll() is None:
                server.kill()
                server.wait()
        assert received == str(STREAM)
        # super-frames crossed the tunnel whole: the fabric saw frames beyond its MTU
        sizes = [p.wirelen or 0 for p in rdpcap(str(pcap))]
        whole = [n for n in sizes if n > 1514 + 4]
        assert len(whole) >= 10, f"{len(whole)} of {len(sizes)} frames on the fabric were whole"
        rx_a, rx_bytes_a, _, _, _ = stats(dp_a, 2)
        # ... and were counted as their segments
        assert rx_a >= STREAM // 1460 and rx_bytes_a >= STREAM, (rx_a, rx_bytes_a)
        assert stats(dp_b, 2)[2] > 0  # delivered into VM b by fabric_in
