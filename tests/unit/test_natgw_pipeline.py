"""The NAT gateway compiled and in the pipeline (docs/internet.md): the gateway node hosts the
private table's routing instance and translates there, other nodes tunnel to it; a private
VM's TCP, UDP and ping leave as the NAT gateway's Elastic IP with a port of its own (checksums
as scapy computes them) and the replies come back; the internet opens nothing; a segment of an
unknown connection gets a RST; a destination's ports run out and are counted."""

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import Ether
from test_compiler import _iface
from test_internet_compile import EDGE, EIP, nexthop, out_snapshot, route

from openvpc.compiler.compile import compile_all
from openvpc.model.forwarding import VROUTER_MAC
from openvpc.model.gateways import ElasticIp, NatGateway
from openvpc.model.internet import INTERNET_MAC, INTERNET_VIF, PUBLIC_VRF
from openvpc.model.nodeconfig import vrouter_objects
from openvpc.model.policy import AclAssociation, NaclEntry, NetworkAcl
from openvpc.model.resources import Instance, NodeAllocation, Route, Snapshot
from openvpc.packet.ethernet import ETH_P_IP, build_ethernet
from openvpc.packet.ipv4 import PROTO_ICMP, PROTO_TCP, PROTO_UDP, build_ipv4
from openvpc.packet.l4 import TCP_ACK, TCP_RST, TCP_SYN, build_tcp, build_udp
from openvpc.vrouter.natgw import NatGateways
from openvpc.vrouter.pipeline import process
from openvpc.vrouter.program import build_tables
from openvpc.vrouter.tables import Fabric, Tables

NAT_IP, VM4 = "10.0.1.9", "10.0.2.5"  # the NAT gateway's address; a private VM on node1
WEB = EDGE.ip
VM_VIF, VM_MAC = 3, bytes.fromhex("020000000004")
NET_MAC = bytes.fromhex(INTERNET_MAC.replace(":", ""))
PRIVATE_VRF = 2  # rtb-iso on node1 and node2


def b(text: str) -> bytes:
    return bytes(int(x) for x in text.split("."))


def nat_snapshot(state: str = "available", igw_route: bool = True) -> Snapshot:
    """out_snapshot's VPC: subnet-web (main table, to the internet gateway when `igw_route`)
    holds NAT gateway nat-1 with the EIP; subnet-db's table routes 0.0.0.0/0 to it; vm4
    (10.0.2.5) on node1, vm3 (10.0.2.4) on node2."""
    s = out_snapshot(routed=igw_route, associated=False)
    main, iso = s.route_tables
    iso = replace(iso, routes=(*iso.routes, Route("0.0.0.0/0", "nat-1")))
    eip = ElasticIp("eipalloc-1", "red", EIP, "eipassoc-1", "eni-nat", NAT_IP, nat_gateway="nat-1")
    nat = NatGateway("nat-1", "red", "vpc-1", "subnet-web", "eipalloc-1", "eni-nat", NAT_IP, state)  # type: ignore[arg-type]
    node1, node2 = s.allocations
    node1 = NodeAllocation(
        "node1",
        (("rtb-main", 1), ("rtb-iso", PRIVATE_VRF)),
        (("rtb-main", 16, 17), ("rtb-iso", 18, 19)),
        (("eni-1", 2), ("eni-4", VM_VIF)),
    )
    return replace(
        s,
        route_tables=(main, iso),
        instances=(*s.instances, Instance("i-4", "red", "r4", "node1", "eni-4")),
        interfaces=(*s.interfaces, _iface(4, "subnet-db", "node1", VM4)),
        allocations=(node1, node2),
        elastic_ips=(eip,),
        nat_gateways=(nat,),
    )


def test_the_gateway_node_translates_and_the_others_tunnel_to_it() -> None:
    configs = compile_all(nat_snapshot())
    gw, node2 = configs["node1"], configs["node2"]
    out = route(gw, PRIVATE_VRF, "0.0.0.0/0")
    assert out is not None
    nh = nexthop(gw, out.nh)
    assert (nh.kind, nh.nat_gateway, nh.nat_side, nh.nat, nh.nat_vrf) == (
        "nat",
        "nat-1",
        "src",
        ((NAT_IP, EIP),),
        PUBLIC_VRF,
    )
    back = route(gw, PUBLIC_VRF, f"{EIP}/32")
    assert back is not None
    assert (nexthop(gw, back.nh).nat_gateway, nexthop(gw, back.nh).nat_side) == ("nat-1", "dst")
    far = route(node2, PRIVATE_VRF, "0.0.0.0/0")
    assert far is not None and far.label == 5002  # rtb-iso's VNI
    assert nexthop(node2, far.nh).dst_ip == "172.16.1.10"  # the gateway node
    assert route(node2, PUBLIC_VRF, f"{EIP}/32") is None  # the NAT gateway's EIP: not 1:1


def test_an_inactive_nat_gateway_is_a_blackhole() -> None:
    for s in (
        nat_snapshot(state="failed"),
        nat_snapshot(igw_route=False),  # its subnet has no way out
        replace(nat_snapshot(), internet=None),
    ):
        for config in compile_all(s).values():
            out = route(config, PRIVATE_VRF, "0.0.0.0/0")
            assert out is not None and nexthop(config, out.nh).kind == "discard"
            assert route(config, PUBLIC_VRF, f"{EIP}/32") is None


def gateway_node() -> Tables:
    config = compile_all(nat_snapshot())["node1"]
    fabric = Fabric(0, b("172.16.1.10"), bytes.fromhex("02fa00000001"), 1500)
    return build_tables(fabric, vrouter_objects(config)).tables


def frame(dst_mac: bytes, src_mac: bytes, src: str, dst: str, proto: int, l4: bytes) -> bytes:
    return build_ethernet(dst_mac, src_mac, ETH_P_IP, build_ipv4(b(src), b(dst), proto, l4))


def checked(data: bytes) -> Ether:
    """The frame as scapy reads it, after asserting its IP and L4 checksums are scapy's."""
    pkt = Ether(data)
    again = Ether(data)
    del again[IP].chksum
    layer = TCP if TCP in again else UDP if UDP in again else ICMP
    del again[layer].chksum
    again = Ether(bytes(again))
    assert pkt[IP].chksum == again[IP].chksum
    assert pkt[layer].chksum == again[layer].chksum
    return pkt


def l4(proto: int, src: str, dst: str, sport: int, dport: int, flags: int, data: bytes) -> bytes:
    if proto == PROTO_TCP:
        return build_tcp(b(src), b(dst), sport, dport, flags, payload=data)
    return build_udp(b(src), b(dst), sport, dport, data)


@settings(max_examples=40, deadline=None)
@given(
    st.sampled_from([PROTO_TCP, PROTO_UDP]),
    st.integers(1, 65535),
    st.integers(1, 65535),
    st.binary(max_size=64),
)
def test_out_as_the_nat_gateway_and_back(proto: int, sport: int, dport: int, data: bytes) -> None:
    t = gateway_node()
    seg = l4(proto, VM4, WEB, sport, dport, TCP_SYN, data)
    (out,) = process(t, frame(VROUTER_MAC, VM_MAC, VM4, WEB, proto, seg), VM_VIF, 1.0)
    assert out[0] == INTERNET_VIF
    pkt = checked(out[1])
    layer = TCP if proto == PROTO_TCP else UDP
    public = pkt[layer].sport
    assert (pkt[IP].src, pkt[IP].dst, pkt[layer].dport) == (EIP, WEB, dport)
    assert 1024 <= public <= 65535
    assert bytes(pkt[layer].payload) == data
    reply = l4(proto, WEB, EIP, dport, public, TCP_SYN | TCP_ACK, data)
    (into,) = process(t, frame(VROUTER_MAC, NET_MAC, WEB, EIP, proto, reply), INTERNET_VIF, 1.1)
    assert into[0] == VM_VIF
    pkt = checked(into[1])
    assert (pkt[IP].src, pkt[IP].dst, pkt[layer].sport, pkt[layer].dport) == (
        WEB,
        VM4,
        dport,
        sport,
    )
    assert t.nat_gateways.stats()["nat-1"]["translations"] == 1


def test_a_ping_goes_out_with_an_identifier_of_the_gateway() -> None:
    t = gateway_node()
    echo = bytes(ICMP(type=8, id=77, seq=1) / b"hello")
    (out,) = process(t, frame(VROUTER_MAC, VM_MAC, VM4, WEB, PROTO_ICMP, echo), VM_VIF, 1.0)
    pkt = checked(out[1])
    assert (pkt[IP].src, pkt[ICMP].type) == (EIP, 8)
    public = pkt[ICMP].id
    reply = bytes(ICMP(type=0, id=public, seq=1) / b"hello")
    (into,) = process(
        t, frame(VROUTER_MAC, NET_MAC, WEB, EIP, PROTO_ICMP, reply), INTERNET_VIF, 1.1
    )
    pkt = checked(into[1])
    assert (into[0], pkt[IP].dst, pkt[ICMP].id) == (VM_VIF, VM4, 77)


def test_the_internet_opens_nothing() -> None:
    t = gateway_node()
    for port in (1024, 40000, 65535):
        syn = build_tcp(b(WEB), b(EIP), 80, port, TCP_SYN)
        got = process(t, frame(VROUTER_MAC, NET_MAC, WEB, EIP, PROTO_TCP, syn), INTERNET_VIF, 1.0)
        assert got == []
    assert t.drops["nat_no_translation"] == 3


def test_a_segment_of_an_unknown_connection_gets_a_rst() -> None:
    t = gateway_node()
    ack = build_tcp(b(VM4), b(WEB), 40000, 80, TCP_ACK, seq=10, ack=12345)
    (rst,) = process(t, frame(VROUTER_MAC, VM_MAC, VM4, WEB, PROTO_TCP, ack), VM_VIF, 1.0)
    assert rst[0] == VM_VIF
    pkt = checked(rst[1])
    assert (pkt[IP].src, pkt[IP].dst, pkt[TCP].sport, pkt[TCP].dport) == (WEB, VM4, 80, 40000)
    assert (pkt[TCP].flags & TCP_RST, pkt[TCP].seq) == (TCP_RST, 12345)
    assert t.drops["nat_no_translation"] == 1
    assert not t.nat_gateways.gateways["nat-1"].out  # no port given to it


def test_a_destinations_ports_run_out() -> None:
    t = gateway_node()
    t.nat_gateways = NatGateways(ports=(1024, 1024))
    outs = []
    for sport, dport in ((40000, 80), (40001, 80), (40001, 443)):
        seg = build_tcp(b(VM4), b(WEB), sport, dport, TCP_SYN)
        frm = frame(VROUTER_MAC, VM_MAC, VM4, WEB, PROTO_TCP, seg)
        outs.append(process(t, frm, VM_VIF, 1.0))
    assert [len(o) for o in outs] == [1, 0, 1]
    assert t.drops["nat_port_allocation"] == 1
    assert t.nat_gateways.stats()["nat-1"]["error_port_allocation"] == 1


def acl_node(ephemeral_in: bool) -> Tables:
    """gateway_node with an ACL on the NAT gateway's subnet (subnet-web): everything allowed
    but, unless `ephemeral_in`, TCP into the subnet on ports 1024-65535 (its public ports)."""
    entries = [
        NaclEntry(100, False, "-1", "allow", "0.0.0.0/0"),
        NaclEntry(100, True, "-1", "allow", "0.0.0.0/0"),
    ]
    if not ephemeral_in:
        entries.insert(0, NaclEntry(50, False, "6", "deny", "0.0.0.0/0", 1024, 65535))
    s = nat_snapshot()
    acl = NetworkAcl("acl-web", "red", "vpc-1", entries=tuple(entries))
    s = replace(
        s,
        network_acls=(acl,),
        acl_associations=(AclAssociation("aclassoc-1", "subnet-web", "acl-web", "red", "vpc-1"),),
    )
    config = compile_all(s)["node1"]
    out = route(config, PRIVATE_VRF, "0.0.0.0/0")
    assert out is not None and nexthop(config, out.nh).nat_acl is not None
    fabric = Fabric(0, b("172.16.1.10"), bytes.fromhex("02fa00000001"), 1500)
    return build_tables(fabric, vrouter_objects(config)).tables


def test_the_nat_gateways_subnet_acl_decides_each_packet() -> None:
    for allowed in (True, False):
        t = acl_node(ephemeral_in=allowed)
        syn = build_tcp(b(VM4), b(WEB), 40000, 80, TCP_SYN)
        (out,) = process(t, frame(VROUTER_MAC, VM_MAC, VM4, WEB, PROTO_TCP, syn), VM_VIF, 1.0)
        public = Ether(out[1])[TCP].sport
        back = build_tcp(b(WEB), b(EIP), 80, public, TCP_SYN | TCP_ACK)
        frm = frame(VROUTER_MAC, NET_MAC, WEB, EIP, PROTO_TCP, back)
        got = process(t, frm, INTERNET_VIF, 1.1)
        assert [v for v, _ in got] == ([VM_VIF] if allowed else [])
        assert t.drops["flow_action_drop"] == (0 if allowed else 1)
