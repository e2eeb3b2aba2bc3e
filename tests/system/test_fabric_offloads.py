"""The fabric ports' offloads on real sockets between two namespaces joined by a veth: a run of
tunnel packets leaves in one UDP GSO send and arrives in one UDP GRO read, a tagged TCP
super-frame crosses whole on AF_PACKET with vnet headers, and a TAP takes a super-frame whole.
"""

import os
import select
import socket
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from openvpc.model.forwarding import VROUTER_MAC, Encap
from openvpc.packet.ethernet import ETH_P_IP, ZERO_MAC, build_ethernet
from openvpc.packet.ipv4 import PROTO_TCP, build_ipv4, ip_to_bytes
from openvpc.packet.l4 import build_tcp
from openvpc.packet.tunnel import build_vxlan
from openvpc.vrouter.encap import OuterTemplate
from openvpc.vrouter.gso import parse_super, parse_tcp4, segment
from openvpc.vrouter.offload import parse_vnet_hdr
from openvpc.vrouter.ports import (
    PACKET_VNET_HDR,
    SOL_PACKET,
    FabricPorts,
    TapPort,
    _in_netns,
    fabric_link,
)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")

IPS = ("192.168.79.1", "192.168.79.2")
MSS = 1000


def ip(*argv: str) -> None:
    done = subprocess.run(["ip", *argv], capture_output=True, text=True, timeout=10)
    assert done.returncode == 0, done.stderr


@dataclass
class Pair:
    ns: tuple[str, str]
    ports: tuple[FabricPorts, FabricPorts]


@pytest.fixture
def pair() -> Iterator[Pair]:
    tag = uuid.uuid4().hex[:6]
    names = (f"ovo{tag}a", f"ovo{tag}b")
    ports: list[FabricPorts] = []
    try:
        for n in names:
            ip("netns", "add", n)
        ip("-n", names[0], "link", "add", "fab", "type", "veth", "peer", "fab", "netns", names[1])
        for n, addr in zip(names, IPS, strict=True):
            ip("-n", n, "addr", "add", f"{addr}/24", "dev", "fab")
            ip("-n", n, "link", "set", "fab", "up")
        for n in names:
            with _in_netns(n):
                ports.append(FabricPorts(fabric_link("fab")))
        yield Pair(names, (ports[0], ports[1]))
    finally:
        for p in ports:
            p.close()
        for n in names:
            subprocess.run(["ip", "netns", "del", n], capture_output=True, check=False)


def wait(sock: socket.socket) -> None:
    assert select.select([sock], [], [], 5)[0], "nothing arrived"


def tcp_super(payload: bytes, src: str = "10.0.1.3", dst: str = "10.0.1.4") -> bytes:
    """An IPv4 + TCP super-packet with several MSS worth of payload."""
    s, d = ip_to_bytes(src), ip_to_bytes(dst)
    seg = build_tcp(s, d, 40000, 5201, 0x10, seq=1, ack=2, payload=payload)
    return build_ipv4(s, d, PROTO_TCP, seg, df=True, ident=100)


def vxlan_frames(pair: Pair, sport: int, inner: list[bytes]) -> list[bytes]:
    """What the pipeline emits on the fabric vif for each inner frame (the kernel routes)."""
    a, b = (p.link for p in pair.ports)
    template = OuterTemplate(Encap.VXLAN, a.ip, b.ip, 5001)
    return [ZERO_MAC + a.mac + b"\x08\x00" + template.wrap(f, sport) for f in inner]


def test_a_run_of_tunnel_packets_arrives_in_one_read(pair: Pair) -> None:
    tx, rx = pair.ports
    packet = tcp_super(bytes(range(256)) * 30)
    frames = [
        build_ethernet(VROUTER_MAC, VROUTER_MAC, ETH_P_IP, seg)
        for seg in segment(packet, MSS, parse_tcp4(packet, 0))
    ]
    out = vxlan_frames(pair, 50001, frames) + vxlan_frames(pair, 50002, frames[:3])
    with _in_netns(pair.ns[0]):  # the GSO sockets are made on first use, where we are
        assert tx.send_batch(out) == 0
    wait(rx.vxlan)
    first = rx.recv_udp(rx.vxlan)
    wait(rx.vxlan)
    second = rx.recv_udp(rx.vxlan)
    payloads = [build_vxlan(5001) + f for f in frames]
    # one flow's run came in one read; the other source port made a run of its own
    assert first == payloads
    assert second == payloads[:3]
    assert rx.recv_udp(rx.vxlan) is None


def test_a_tagged_super_frame_crosses_whole(pair: Pair) -> None:
    tx, rx = pair.ports
    frame = build_ethernet(
        rx.link.mac, tx.link.mac, ETH_P_IP, tcp_super(bytes(7 * MSS + 11)), vlan=101
    )
    assert tx.send(frame, MSS)
    wait(rx.packet)
    got = rx.recv_frame()
    assert got == (frame, MSS)


def test_a_tap_takes_a_super_frame_whole(pair: Pair) -> None:
    ns = pair.ns[0]
    ip("-n", ns, "tuntap", "add", "dev", "vm0", "mode", "tap")
    ip("-n", ns, "link", "set", "vm0", "up")
    tap = TapPort(2, ns, "vm0")
    watch = None
    try:
        with _in_netns(ns):
            watch = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_IP))
            watch.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
            watch.bind(("vm0", ETH_P_IP))
        frame = build_ethernet(b"\x02" * 6, VROUTER_MAC, ETH_P_IP, tcp_super(bytes(5 * MSS)))
        assert tap.write(frame, MSS)
        wait(watch)
        data = watch.recv(1 << 17)
        hdr = parse_vnet_hdr(data)
        assert (hdr.gso_type, hdr.gso_size) == (1, MSS)
        assert data[10:] == frame
        sup = parse_super(frame)
        assert len(segment(frame, MSS, sup)) == 5
    finally:
        if watch is not None:
            watch.close()
        tap.close()
