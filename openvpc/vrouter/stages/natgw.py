"""The NAT gateway next hop (docs/internet.md): a private flow leaves with the gateway's
Elastic IP and a port of its own (vrouter/natgw.py) and goes on in the public VRF; a reply to
that address and port is translated back and routed in the VRF the flow came from."""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from openvpc.model.rules import NetworkAclConfig, acl_verdict, selector
from openvpc.packet.checksum import checksum
from openvpc.packet.errors import Malformed
from openvpc.packet.ipv4 import (
    PROTO_ICMP,
    PROTO_TCP,
    PROTO_UDP,
    IPv4,
    build_ipv4,
    ip_to_str,
    parse_ipv4,
)
from openvpc.packet.l4 import TCP_ACK, TCP_RST, TCP_SYN, build_tcp, parse_tcp
from openvpc.vrouter.drops import Drop
from openvpc.vrouter.nexthop import NatNH
from openvpc.vrouter.stages import IP_TYPE
from openvpc.vrouter.tables import VifKind
from openvpc.vrouter.trace import Stage

if TYPE_CHECKING:
    from openvpc.vrouter.pipeline import Pass
    from openvpc.vrouter.tables import Vrf

ECHO_REQUEST, ECHO_REPLY = 8, 0


def _acl_allows(
    acl: NetworkAclConfig | None,
    packet: bytes,
    ip: IPv4,
    inside: bytes,
    inside_port: int,
    outside: bytes,
    outside_port: int,
    toward_outside: bool,
) -> bool:
    """Whether the NAT gateway's subnet's network ACL lets the packet through, statelessly:
    in across its boundary from where it comes, out to where it goes. `inside` is the private
    side, `outside` the remote one, each with the destination port the packet has at that
    crossing (the public port coming in from outside, the private one going on inside)."""
    if acl is None:
        return True
    icmp_type = icmp_code = -1
    if ip.proto == PROTO_ICMP and len(packet) >= ip.header_len + 2:
        icmp_type, icmp_code = packet[ip.header_len], packet[ip.header_len + 1]
    checks = ((inside, inside_port), (outside, outside_port))
    for n, (remote, port) in enumerate(checks):
        if not acl.crosses(remote):
            continue
        # the first crossing is into the subnet, the second out of it
        inbound = (n == 0) == toward_outside
        entries = acl.ingress if inbound else acl.egress
        sel = selector(ip.proto, port, icmp_type, icmp_code, ip.is_fragment)
        if not acl_verdict(entries, ip.proto, remote, sel)[0]:
            return False
    return True


def _ports(packet: bytes, ip: IPv4, icmp_type: int) -> tuple[int, int] | None:
    """(source port, destination port) as the gateway translates them: TCP and UDP ports,
    an ICMP echo's identifier as the source port of a request and the destination port of a
    reply; None for what it does not translate (other protocols and ICMP, fragments)."""
    p = ip.header_len
    if ip.is_fragment:
        return None
    if ip.proto in (PROTO_TCP, PROTO_UDP) and len(packet) >= p + 4:
        sport, dport = struct.unpack_from("!HH", packet, p)
        return sport, dport
    if ip.proto == PROTO_ICMP and len(packet) >= p + 8 and packet[p] == icmp_type:
        (ident,) = struct.unpack_from("!H", packet, p + 4)
        return (ident, 0) if icmp_type == ECHO_REQUEST else (0, ident)
    return None


def _tcp_flags(packet: bytes, ip: IPv4) -> int:
    if ip.proto == PROTO_TCP and len(packet) > ip.header_len + 13:
        return packet[ip.header_len + 13]
    return 0


def _rewrite_icmp(packet: bytes, ip: IPv4, src: bytes, dst: bytes, ident: int) -> bytes:
    """An echo with new addresses and identifier, both checksums recomputed."""
    buf = bytearray(packet[: ip.total_length])
    buf[12:16], buf[16:20] = src, dst
    struct.pack_into("!H", buf, 10, 0)
    struct.pack_into("!H", buf, 10, checksum(buf[: ip.header_len]))
    p = ip.header_len
    struct.pack_into("!H", buf, p + 4, ident)
    struct.pack_into("!H", buf, p + 2, 0)
    struct.pack_into("!H", buf, p + 2, checksum(buf[p:]))
    return bytes(buf)


def _rewrite(
    packet: bytes, ip: IPv4, src: bytes, dst: bytes, sport: int, dport: int, ident: int
) -> bytes:
    from openvpc.vrouter.stages import route  # route imports this module

    if ip.proto == PROTO_ICMP:
        return _rewrite_icmp(packet, ip, src, dst, ident)
    return route.nat_rewrite(packet, ip, (src, dst, sport, dport))


def outbound(run: Pass, vrf: Vrf, nh: NatNH, packet: bytes, ip: IPv4, depth: int) -> None:
    """A packet routed to the NAT gateway in `vrf`: out as its Elastic IP."""
    from openvpc.vrouter.stages import route

    ports = _ports(packet, ip, ECHO_REQUEST)
    public_vrf = run.t.vrfs.get(nh.vrf)
    if ports is None or public_vrf is None:
        return run.drop(Drop.NAT_NO_TRANSLATION)
    if not _acl_allows(nh.acl, packet, ip, ip.src, ports[1], ip.dst, ports[1], True):
        return run.drop(Drop.FLOW_ACTION_DROP)  # the NAT gateway's subnet's ACL
    state = run.t.nat_gateways.get(nh.gateway)
    private = (vrf.id, ip.proto, ip.src, ports[0], ip.dst, ports[1])
    flags = _tcp_flags(packet, ip)
    if ip.proto == PROTO_TCP and private not in state.out and not flags & TCP_SYN:
        # a segment of a connection the gateway does not know (timed out): AWS answers
        # with a RST rather than give it a new port
        return _reset(run, vrf, packet, ip, depth)
    binding = state.outbound(private, run.now, flags)
    if binding is None:
        return run.drop(Drop.NAT_PORT_ALLOCATION)
    binding.packets += 1
    binding.octets += len(packet)
    run.rewrites()  # a super-frame goes segment by segment: checksums are recomputed
    public = nh.table[0][1]
    packet = _rewrite(packet, ip, public, ip.dst, binding.port, ports[1], binding.port)
    ip = parse_ipv4(packet, verify=False)
    if run.rec is not None:
        run.rec(
            Stage.NEXTHOP,
            f"nat gateway {nh.gateway}: {ip_to_str(private[2])}:{private[3]} -> "
            f"{ip_to_str(public)}:{binding.port} in {public_vrf.name}",
        )
    found = public_vrf.ip_fib.lookup(ip.dst)
    if found is None:
        return run.drop(Drop.NO_ROUTE)
    run.fabric_in = False  # the gateway is a hop of its own: it may send back to the fabric
    out_ports = (binding.port, ports[1])
    route.ip_nexthop(
        run, public_vrf, found.nh, found.label, found.mac, packet, ip, out_ports, depth + 1
    )


def inbound(run: Pass, nh: NatNH, packet: bytes, ip: IPv4, depth: int) -> None:
    """A packet to the NAT gateway's Elastic IP: back to the private flow it answers, routed
    in that flow's VRF; anything else has no way in."""
    from openvpc.vrouter.stages import route

    ports = _ports(packet, ip, ECHO_REPLY)
    if ports is None:
        return run.drop(Drop.NAT_NO_TRANSLATION)
    state = run.t.nat_gateways.gateways.get(nh.gateway)
    binding = None
    if state is not None:
        binding = state.inbound(
            (ip.proto, ip.src, ports[0], ports[1]), run.now, _tcp_flags(packet, ip)
        )
    vrf = None if binding is None else run.t.vrfs.get(binding.private[0])
    if binding is None or vrf is None:
        return run.drop(Drop.NAT_NO_TRANSLATION)
    _, _, private, private_port, _, _ = binding.private
    if not _acl_allows(nh.acl, packet, ip, private, private_port, ip.src, ports[1], False):
        return run.drop(Drop.FLOW_ACTION_DROP)
    binding.packets += 1
    binding.octets += len(packet)
    run.rewrites()
    packet = _rewrite(packet, ip, ip.src, private, ports[0], private_port, private_port)
    ip = parse_ipv4(packet, verify=False)
    if run.rec is not None:
        run.rec(
            Stage.NEXTHOP,
            f"nat gateway {nh.gateway}: {ip_to_str(nh.table[0][1])}:{ports[1]} -> "
            f"{ip_to_str(private)}:{private_port} in {vrf.name}",
        )
    run.fabric_in = False
    route.route(run, vrf, packet, ip, depth + 1)


def _reset(run: Pass, vrf: Vrf, packet: bytes, ip: IPv4, depth: int) -> None:
    """Drop the segment (counted) and send its sender a RST: straight back to a VM here,
    else routed back in `vrf`."""
    from openvpc.vrouter.stages import route

    run.drop(Drop.NAT_NO_TRANSLATION)
    try:
        tcp = parse_tcp(packet, ip.header_len)
    except Malformed:
        return
    if tcp.flags & TCP_RST:
        return  # never a RST for a RST
    if tcp.flags & TCP_ACK:
        flags, seq, ack = TCP_RST, tcp.ack, 0
    else:
        length = ip.total_length - ip.header_len - tcp.header_len
        flags, seq, ack = TCP_RST | TCP_ACK, 0, (tcp.seq + length) & 0xFFFFFFFF
    seg = build_tcp(ip.dst, ip.src, tcp.dport, tcp.sport, flags, seq=seq, ack=ack)
    rst = build_ipv4(ip.dst, ip.src, PROTO_TCP, seg)
    if run.rec is not None:
        run.rec(Stage.NEXTHOP, f"nat gateway: no connection, RST to {ip_to_str(ip.src)}")
    vif = run.in_vif
    if vif.kind is VifKind.VIRTUAL:
        return run.emit(vif.id, vif.mac + vrf.gateway_mac + IP_TYPE + rst)
    run.fabric_in = False
    route.route(run, vrf, rst, parse_ipv4(rst, verify=False), depth + 1)
