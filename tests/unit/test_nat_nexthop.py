"""The NAT next hop in the pipeline (docs/internet.md), on a gateway node that also hosts the
Elastic IP's instance: a VM's TCP or UDP leaves on the internet port from its EIP with
checksums scapy agrees with, the reply comes back to its private address, an address
without an EIP does not leave, and the internet is let in only by the group's rules."""

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether
from test_internet_compile import EDGE, EIP, out_snapshot

from openvpc.compiler.compile import compile_all
from openvpc.model.forwarding import VROUTER_MAC
from openvpc.model.internet import INTERNET_MAC, INTERNET_VIF
from openvpc.model.nodeconfig import NodeConfig, vrouter_objects
from openvpc.model.rules import PortSecurity
from openvpc.packet.ethernet import ETH_P_IP, build_ethernet
from openvpc.packet.ipv4 import PROTO_TCP, PROTO_UDP, build_ipv4
from openvpc.packet.l4 import TCP_ACK, TCP_SYN, build_tcp, build_udp
from openvpc.vrouter.pipeline import process
from openvpc.vrouter.program import build_tables
from openvpc.vrouter.tables import Fabric, Tables


def b(text: str) -> bytes:
    return bytes(int(x) for x in text.split("."))


PRIVATE, WEB = "10.0.1.4", EDGE.ip
VM_VIF, VM_MAC = 2, bytes.fromhex("020000000001")
NET_MAC = bytes.fromhex(INTERNET_MAC.replace(":", ""))


def gateway_node(security: PortSecurity | None = None) -> Tables:
    """node1 of out_snapshot with the EIP on its own vm1 (10.0.1.4): everything local."""
    s = out_snapshot()
    (eip,) = s.elastic_ips
    s = replace(s, elastic_ips=(replace(eip, interface="eni-1", private_ip=PRIVATE),))
    config: NodeConfig = compile_all(s)["node1"]
    ports = tuple(
        replace(p, security_groups=security) if p.vif == VM_VIF else p for p in config.ports
    )
    fabric = Fabric(0, b("172.16.1.10"), bytes.fromhex("02fa00000001"), 1500)
    return build_tables(fabric, vrouter_objects(replace(config, ports=ports))).tables


def frame(dst_mac: bytes, src_mac: bytes, src: str, dst: str, proto: int, l4: bytes) -> bytes:
    return build_ethernet(dst_mac, src_mac, ETH_P_IP, build_ipv4(b(src), b(dst), proto, l4))


def checked(data: bytes) -> Ether:
    """The frame as scapy reads it, after asserting its IP and L4 checksums are right."""
    pkt = Ether(data)
    again = Ether(data)
    del again[IP].chksum
    l4 = again[TCP] if TCP in again else again[UDP]
    del l4.chksum
    again = Ether(bytes(again))
    assert pkt[IP].chksum == again[IP].chksum
    layer = TCP if TCP in pkt else UDP
    assert pkt[layer].chksum == again[layer].chksum
    return pkt


@settings(max_examples=40, deadline=None)
@given(
    st.sampled_from([PROTO_TCP, PROTO_UDP]),
    st.integers(1024, 65535),
    st.integers(1, 65535),
    st.binary(max_size=64),
)
def test_out_as_the_eip_and_back_to_the_private_address(
    proto: int, sport: int, dport: int, payload: bytes
) -> None:
    t = gateway_node()
    if proto == PROTO_TCP:
        l4 = build_tcp(b(PRIVATE), b(WEB), sport, dport, TCP_SYN, payload=payload)
    else:
        l4 = build_udp(b(PRIVATE), b(WEB), sport, dport, payload)
    (out,) = process(t, frame(VROUTER_MAC, VM_MAC, PRIVATE, WEB, proto, l4), VM_VIF, 1.0)
    assert out[0] == INTERNET_VIF
    pkt = checked(out[1])
    assert (pkt[IP].src, pkt[IP].dst, pkt.dst) == (EIP, WEB, INTERNET_MAC)
    assert bytes(pkt[IP].payload)[8 if proto == PROTO_UDP else 20 :] == payload
    if proto == PROTO_TCP:
        back = build_tcp(b(WEB), b(EIP), dport, sport, TCP_SYN | TCP_ACK, payload=payload)
    else:
        back = build_udp(b(WEB), b(EIP), dport, sport, payload)
    (into,) = process(t, frame(VROUTER_MAC, NET_MAC, WEB, EIP, proto, back), INTERNET_VIF, 1.1)
    assert into[0] == VM_VIF
    pkt = checked(into[1])
    assert (pkt[IP].src, pkt[IP].dst) == (WEB, PRIVATE)


def test_an_address_without_an_eip_does_not_leave() -> None:
    t = gateway_node()
    other = "10.0.1.44"  # an address vm1 may send from (a VIP), with no EIP of its own
    t.vifs[VM_VIF].allowed_ips = frozenset({b(other)})
    l4 = build_udp(b(other), b(WEB), 5000, 53, b"x")
    assert process(t, frame(VROUTER_MAC, VM_MAC, other, WEB, PROTO_UDP, l4), VM_VIF, 1.0) == []
    assert t.drops["no_route"] == 1


def test_the_internet_is_let_in_only_by_a_rule() -> None:
    t = gateway_node(PortSecurity())  # no rules: nothing new in (nor out)
    l4 = build_tcp(b(WEB), b(EIP), 40000, 22, TCP_SYN)
    assert process(t, frame(VROUTER_MAC, NET_MAC, WEB, EIP, PROTO_TCP, l4), INTERNET_VIF, 1.0) == []
    assert t.drops["flow_action_drop"] == 1
