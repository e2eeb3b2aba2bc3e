"""The Amazon VPC forwarding behaviours of an `l3` VPC, end to end (DESIGN.md, seed), and
where it applies the contrasting behaviour of an `l2` VPC.

Topology: node1 hosts a, a2 (10.1.1.0/24) and b (10.1.2.0/24); node2 hosts c (10.1.1.0/24)
and d (10.1.2.0/24).
"""

from dataclasses import dataclass
from typing import Any

import pytest
from scapy.layers.inet import ICMP, IP, IPerror
from scapy.layers.l2 import ARP, Ether
from simkit import VROUTER_MAC_STR, ip, ip_str, mac_str, overlay_packets

from openvpc.lab.endpoint import VmEndpoint
from openvpc.lab.sim import SimLab, Vpc
from openvpc.model.forwarding import LINK_LOCAL_GATEWAY, VROUTER_MAC, ArpMode, Encap, Mode, overhead
from openvpc.packet.ethernet import BROADCAST, ETH_P_ARP, ETH_P_IP, build_ethernet
from openvpc.packet.ipv4 import PROTO_ICMP, PROTO_UDP, build_ipv4
from openvpc.packet.l4 import ICMP_ECHO_REQUEST, build_icmp, build_udp
from openvpc.vrouter.drops import Drop
from openvpc.vrouter.punt import Punt

ETH_P_IPV6 = 0x86DD
ETH_P_EXPERIMENTAL = 0x88B5


@dataclass
class Vpc5:
    lab: SimLab
    vpc: Vpc
    a: VmEndpoint
    a2: VmEndpoint
    b: VmEndpoint
    c: VmEndpoint
    d: VmEndpoint

    def vm(self, name: str) -> VmEndpoint:
        vm: VmEndpoint = getattr(self, name)
        return vm

    def others(self, sender: VmEndpoint) -> list[VmEndpoint]:
        return [v for v in (self.a, self.a2, self.b, self.c, self.d) if v is not sender]

    def drops(self, node: str) -> dict[str, int]:
        return dict(self.lab.nodes[node].tables.drops)


def five(
    mode: Mode = Mode.L3, encap: Encap = Encap.MPLSOGRE, fabric_mtu: int = 1500, **opts: Any
) -> Vpc5:
    lab = SimLab(2, fabric_mtu=fabric_mtu)
    vpc = lab.add_vpc("acme", "prod", ["10.1.1.0/24", "10.1.2.0/24"], mode, encap, **opts)
    vms = [
        lab.add_vm(vpc, name, node, addr)
        for name, node, addr in (
            ("a", "node1", "10.1.1.10"),
            ("a2", "node1", "10.1.1.11"),
            ("b", "node1", "10.1.2.20"),
            ("c", "node2", "10.1.1.30"),
            ("d", "node2", "10.1.2.40"),
        )
    ]
    lab.build()
    return Vpc5(lab, vpc, *vms)


def node_of(v: Vpc5, vm: VmEndpoint) -> str:
    return v.lab.ports[vm.name].node


def echo(src: VmEndpoint, dst: bytes, dst_mac: bytes) -> bytes:
    icmp = build_icmp(ICMP_ECHO_REQUEST, 0, b"\x00\x07\x00\x01", b"amazon" * 8)
    return build_ethernet(dst_mac, src.mac, ETH_P_IP, build_ipv4(src.ip, dst, PROTO_ICMP, icmp))


def udp_to(src: VmEndpoint, dst: bytes, dst_mac: bytes, port: int = 5353) -> bytes:
    udp = build_udp(src.ip, dst, port, port, b"mdns-ish")
    return build_ethernet(dst_mac, src.mac, ETH_P_IP, build_ipv4(src.ip, dst, PROTO_UDP, udp))


def group_frames(src: VmEndpoint) -> list[bytes]:
    """Not unicast IPv4: limited and directed broadcast pings, multicast, a non-IP broadcast."""
    subnet_broadcast = src.ip[:3] + b"\xff"
    return [
        echo(src, b"\xff" * 4, BROADCAST),
        echo(src, subnet_broadcast, BROADCAST),
        udp_to(src, ip("224.0.0.251"), bytes.fromhex("01005e0000fb")),
        build_ethernet(BROADCAST, src.mac, ETH_P_EXPERIMENTAL, b"hello, segment"),
    ]


def warm_up(v: Vpc5) -> None:
    """Resolve the underlay neighbours both ways, so nothing waits for ARP below."""
    v.a.ping(v.c.ip, ident=99)
    v.lab.run()
    assert v.a.got("echo_reply", src=v.c.ip)
    v.lab.fabric_frames.clear()
    for vm in (v.a, v.a2, v.b, v.c, v.d):
        vm.inbox.clear()
        vm.received.clear()


# -- 1. only unicast IPv4 ------------------------------------------------------------------
@pytest.mark.parametrize("sender", ["a", "c"])
def test_l3_forwards_only_unicast_ipv4(sender: str) -> None:
    v = five()
    warm_up(v)
    src = v.vm(sender)
    gateway_mac = VROUTER_MAC
    for frame in group_frames(src):
        src.send_frame(frame)
    src.send_frame(echo(src, src.ip[:3] + b"\xff", gateway_mac))  # directed broadcast, unicast MAC
    src.send_frame(build_ethernet(gateway_mac, src.mac, ETH_P_IPV6, b"\x60" + b"\x00" * 39))
    src.send_frame(build_ethernet(v.a2.mac, src.mac, ETH_P_EXPERIMENTAL, b"to a VM's MAC"))
    v.lab.run()
    for other in v.others(src):
        assert other.inbox == [], other.name
    assert v.lab.fabric_frames == []
    assert v.drops(node_of(v, src)) == {Drop.L3_MULTICAST: 4, Drop.L3_NON_IP: 3}
    # unicast IPv4 still goes everywhere
    for other in v.others(src):
        src.ping(other.ip)
    v.lab.run()
    assert {ip_str(r.src) for r in src.got("echo_reply")} == {ip_str(o.ip) for o in v.others(src)}


@pytest.mark.parametrize("mode", [Mode.L2, Mode.L2_L3])
@pytest.mark.parametrize("sender", ["a", "c"])
def test_l2_vpc_floods_what_l3_drops(mode: Mode, sender: str) -> None:
    v = five(mode, Encap.MPLSOUDP)
    warm_up(v)
    src = v.vm(sender)
    frames = group_frames(src)
    for frame in frames:
        src.send_frame(frame)
    v.lab.run()
    for other in v.others(src):  # every VM of the network, local or remote, gets each once
        assert sorted(other.inbox) == sorted(frames), other.name
    assert src.inbox == []  # not back to the sender
    assert not any(n.tables.drops for n in v.lab.nodes.values())
    # ingress replication: one copy per remote vRouter, not per remote VM
    assert len(overlay_packets(v.lab)) == len(frames)


# -- 2. TTL ----------------------------------------------------------------------------------
@pytest.mark.parametrize("encap", [Encap.MPLSOGRE, Encap.MPLSOUDP, Encap.VXLAN, Encap.VLAN])
@pytest.mark.parametrize("decrement", [False, True])
def test_ttl(encap: Encap, decrement: bool) -> None:
    """Not decremented inside the VPC; decremented once per routed hop if asked to."""
    v = five(encap=encap, decrement_ttl=decrement)
    hop = 1 if decrement else 0
    for dst in (v.a2, v.b, v.c, v.d):  # same node and across, same subnet and other subnet
        v.a.ping(dst.ip, ttl=50)
        if dst is not v.c:
            v.c.udp(dst.ip, 1000, 2000)
    v.lab.run()
    for dst in (v.a2, v.b, v.c, v.d):
        [request] = dst.got("echo_request", src=v.a.ip)
        assert request.ttl == 50 - hop, dst.name
        [reply] = v.a.got("echo_reply", src=dst.ip)
        assert reply.ttl == 64 - hop, dst.name
        if dst is not v.c:
            [udp] = dst.got("udp", src=v.c.ip)
            assert udp.ttl == 64 - hop, dst.name


@pytest.mark.parametrize("decrement", [False, True])
def test_ttl_one(decrement: bool) -> None:
    v = five(decrement_ttl=decrement)
    v.a.ping(v.c.ip, ttl=1)
    v.lab.run()
    if decrement:
        assert v.c.received == []
        assert v.drops("node1") == {Drop.TTL_EXPIRED: 1}
    else:
        assert [r.ttl for r in v.c.got("echo_request")] == [1]


# -- 3. ARP ----------------------------------------------------------------------------------
def arp_answers(vm: VmEndpoint) -> dict[str, str]:
    """Target address -> MAC, from the ARP replies in `vm`'s inbox, read by scapy."""
    out = {}
    for frame in vm.inbox:
        pkt = Ether(frame)
        if ARP in pkt and pkt[ARP].op == 2:
            assert pkt[ARP].pdst == ip_str(vm.ip) and pkt[ARP].hwdst == mac_str(vm.mac)
            assert pkt.dst == mac_str(vm.mac) and pkt.src == pkt[ARP].hwsrc
            out[pkt[ARP].psrc] = pkt[ARP].hwsrc
    return out


@pytest.mark.parametrize("sender", ["a", "c"])
def test_arp_proxy_answers_locally(sender: str) -> None:
    v = five()
    src = v.vm(sender)
    subnet_gateway = src.ip[:3] + b"\x01"
    other_gateway = bytes((10, 1, 2, 1))
    for target in [*(o.ip for o in v.others(src)), subnet_gateway, other_gateway]:
        src.send_frame(src.arp_request(target))
    v.lab.run()
    expected = {
        ip_str(o.ip): mac_str(o.mac) if o.ip[:3] == src.ip[:3] else VROUTER_MAC_STR
        for o in v.others(src)
    }
    expected[ip_str(subnet_gateway)] = VROUTER_MAC_STR
    expected[ip_str(other_gateway)] = VROUTER_MAC_STR
    assert arp_answers(src) == expected
    # answered by the local vRouter: the target VMs never saw a request, nothing crossed
    for other in v.others(src):
        assert other.inbox == []
    assert v.lab.fabric_frames == []
    assert all(n.punted == [] for n in v.lab.nodes.values())


def test_arp_single_mac_legacy_mode() -> None:
    v = five(arp_mode=ArpMode.SINGLE_MAC)
    for target in (v.a2, v.b, v.c, v.d):
        v.a.send_frame(v.a.arp_request(target.ip))
    v.lab.run()
    assert arp_answers(v.a) == {ip_str(t.ip): VROUTER_MAC_STR for t in (v.a2, v.b, v.c, v.d)}
    # forwarding is by IP, so one MAC for everyone still reaches everyone
    for target in (v.a2, v.b, v.c, v.d):
        v.a.ping(target.ip)
    v.lab.run()
    assert len(v.a.got("echo_reply")) == 4
    assert Ether(v.c.inbox[0]).src == VROUTER_MAC_STR


@pytest.mark.parametrize("sender", ["a", "c"])
def test_arp_for_unknown_target_is_punted(sender: str) -> None:
    v = five()
    src = v.vm(sender)
    node = v.lab.nodes[node_of(v, src)]
    request = src.arp_request(src.ip[:3] + b"\x63")  # .99: no VM there
    src.send_frame(request)
    gratuitous = build_ethernet(
        BROADCAST, src.mac, ETH_P_ARP, request[14:22] + src.mac + src.ip + b"\x00" * 6 + src.ip
    )
    src.send_frame(gratuitous)
    v.lab.run()
    assert [(h.reason, h.vif, h.vrf, f) for h, f in node.punted] == [
        (Punt.ARP, v.lab.ports[src.name].vif, node.vrf_of[v.vpc.label], request),
        (Punt.ARP, v.lab.ports[src.name].vif, node.vrf_of[v.vpc.label], gratuitous),
    ]
    assert src.inbox == []
    assert all(o.inbox == [] for o in v.others(src))
    assert v.lab.fabric_frames == []


# -- 4. the subnet gateway ------------------------------------------------------------------
@pytest.mark.parametrize("sender", ["a", "b", "c", "d"])
def test_gateway_answers_ping_for_its_subnet_only(sender: str) -> None:
    v = five()
    src = v.vm(sender)
    own = src.ip[:3] + b"\x01"
    other = bytes((10, 1, 3 - src.ip[2], 1))  # the gateway of the other subnet
    src.ping(own, seq=1)
    src.ping(other, seq=2)
    v.lab.run()
    [reply] = src.got("echo_reply")
    assert (reply.src, reply.detail) == (own, (0, 0, 0x00010001))
    assert Ether(reply.frame).src == VROUTER_MAC_STR
    assert v.drops(node_of(v, src)) == {Drop.GATEWAY_OTHER_SUBNET: 1}
    assert v.lab.fabric_frames == []


def test_link_local_gateway_variant() -> None:
    """Contrail: every VM's default gateway is 169.254.0.1, answered on every vRouter."""
    v = five(link_local=True)
    assert v.a.gateway == v.d.gateway == LINK_LOCAL_GATEWAY
    for vm in (v.a, v.d):
        vm.ping(LINK_LOCAL_GATEWAY)
    v.a.ping(v.d.ip, seq=2)  # another subnet on another node, routed via 169.254.0.1
    v.lab.run()
    for vm in (v.a, v.d):
        assert vm.arp_cache[LINK_LOCAL_GATEWAY] == VROUTER_MAC
        assert len(vm.got("echo_reply", src=LINK_LOCAL_GATEWAY)) == 1
    assert len(v.a.got("echo_reply", src=v.d.ip)) == 1
    assert not any(n.tables.drops for n in v.lab.nodes.values())


# -- frag-needed and fragmentation ----------------------------------------------------------
MTU_CASES = [
    (Mode.L3, Encap.MPLSOGRE, 1500),
    (Mode.L3, Encap.MPLSOUDP, 1500),
    (Mode.L3, Encap.VXLAN, 1500),
    (Mode.L3, Encap.VLAN, 1500),
    (Mode.L3, Encap.MPLSOGRE, 1400),
    (Mode.L2, Encap.MPLSOGRE, 1500),
    (Mode.L2, Encap.VXLAN, 1500),
]


def overlay_mtu(mode: Mode, encap: Encap, fabric_mtu: int) -> int:
    return fabric_mtu - overhead(encap, mode is not Mode.L3)


def test_overlay_mtu_values() -> None:
    assert overlay_mtu(Mode.L3, Encap.MPLSOGRE, 1500) == 1472  # 20 IP + 4 GRE + 4 MPLS
    assert overlay_mtu(Mode.L3, Encap.MPLSOUDP, 1500) == 1468  # 20 IP + 8 UDP + 4 MPLS
    assert overlay_mtu(Mode.L3, Encap.VXLAN, 1500) == 1450  # + 8 VXLAN + 14 inner Ethernet
    assert overlay_mtu(Mode.L2, Encap.MPLSOGRE, 1500) == 1458  # Ethernet under the label


@pytest.mark.parametrize(("mode", "encap", "fabric_mtu"), MTU_CASES)
def test_df_too_big_gets_frag_needed(mode: Mode, encap: Encap, fabric_mtu: int) -> None:
    v = five(mode, encap, fabric_mtu)
    mtu = overlay_mtu(mode, encap, fabric_mtu)
    v.a.ping(v.c.ip, seq=1, size=mtu - 28)  # exactly the overlay MTU: fits
    v.a.ping(v.c.ip, seq=2, size=mtu - 27)  # one byte more, DF: refused
    v.lab.run()
    assert [r.detail[2] & 0xFFFF for r in v.c.got("echo_request")] == [1]
    [error] = v.a.got("icmp")
    assert error.detail == (3, 4, mtu)  # destination unreachable, fragmentation needed
    assert error.src == ip("10.1.1.1")  # from the sender's gateway
    pkt = Ether(error.frame)
    assert (pkt[ICMP].type, pkt[ICMP].code, pkt[ICMP].nexthopmtu) == (3, 4, mtu)
    quoted = pkt[IPerror]
    assert (quoted.dst, quoted.len, quoted.flags.DF) == ("10.1.1.30", mtu + 1, True)
    assert v.drops("node1") == {Drop.FRAG_NEEDED: 1}
    for outer in overlay_packets(v.lab):
        assert len(outer) - 14 - (4 if encap is Encap.VLAN else 0) <= fabric_mtu


@pytest.mark.parametrize(("mode", "encap", "fabric_mtu"), MTU_CASES)
def test_without_df_arrives_fragmented(mode: Mode, encap: Encap, fabric_mtu: int) -> None:
    v = five(mode, encap, fabric_mtu)
    mtu = overlay_mtu(mode, encap, fabric_mtu)
    size = 2 * mtu  # three fragments
    v.a.ping(v.c.ip, size=size, df=False)
    v.lab.run()
    pieces = [Ether(f)[IP] for f in v.c.inbox]
    assert len(pieces) == 3
    assert all(p.len <= mtu and p.src == "10.1.1.10" and p.dst == "10.1.1.30" for p in pieces)
    assert len({p.id for p in pieces}) == 1
    assert [p.flags.MF for p in sorted(pieces, key=lambda p: p.frag)] == [True, True, False]
    data = b"".join(bytes(p.payload) for p in sorted(pieces, key=lambda p: p.frag))
    icmp = ICMP(data)
    assert icmp.type == 8 and bytes(icmp.payload) == bytes(i & 0xFF for i in range(size))
    assert v.a.got("icmp") == []
    assert not any(n.tables.drops for n in v.lab.nodes.values())


def test_multicast_to_another_group_is_dropped_too() -> None:
    v = five()
    v.a.send_frame(udp_to(v.a, ip("239.1.2.3"), bytes.fromhex("01005e010203"), 9999))
    v.lab.run()
    assert all(o.inbox == [] for o in v.others(v.a))
    assert v.drops("node1") == {Drop.L3_MULTICAST: 1}
