"""The route stage: an IP packet in a VRF. TTL, the IP FIB, the flow stage (first-packet
policy, NAT), the IP next hops, the MTU (fragment or ICMP frag-needed) and the gateway's own
addresses (receive)."""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import TYPE_CHECKING

from openvpc.model.forwarding import Encap, FlowKey, NatTuple, overhead
from openvpc.model.rules import (
    NOT_COMPILED,
    Decision,
    entering,
    leaving,
    reply_selector,
    selector,
)
from openvpc.packet.checksum import checksum, pseudo_header_sum
from openvpc.packet.ipv4 import (
    PROTO_ICMP,
    PROTO_TCP,
    PROTO_UDP,
    IPv4,
    fragment,
    ip_to_str,
    parse_ipv4,
)
from openvpc.packet.l4 import l4_ports
from openvpc.vrouter import replies
from openvpc.vrouter.drops import Drop
from openvpc.vrouter.encap import entropy_port
from openvpc.vrouter.flow import MAX_HELD, Flow, FlowAction
from openvpc.vrouter.nexthop import (
    CompositeNH,
    DiscardNH,
    EncapNH,
    NatNH,
    ReceiveNH,
    ResolveNH,
    TunnelNH,
)
from openvpc.vrouter.punt import Punt
from openvpc.vrouter.stages import IP_TYPE, MAX_DEPTH, fabric, nat, natgw
from openvpc.vrouter.tables import Vif, VifKind, Vrf
from openvpc.vrouter.trace import Stage

if TYPE_CHECKING:
    from openvpc.vrouter.pipeline import Pass

_PORTS = struct.Struct("!HH")


def route(run: Pass, vrf: Vrf, packet: bytes, ip: IPv4, depth: int = 0) -> None:
    """Route an IP packet in `vrf`: TTL, FIB lookup, first-packet flow policy, next hop."""
    # one routed hop, one decrement: the ingress vRouter (or an L2 network's gateway)
    # routes; what arrives from the fabric was routed already by the sending vRouter
    if vrf.decrement_ttl and not run.fabric_in:
        if ip.ttl <= 1:
            return run.drop(Drop.TTL_EXPIRED)
        buf = bytearray(packet)
        buf[8] -= 1
        csum = int.from_bytes(buf[10:12], "big") + 0x0100  # RFC 1624 for TTL - 1
        csum = (csum & 0xFFFF) + (csum >> 16)
        buf[10:12] = csum.to_bytes(2, "big")
        packet = bytes(buf)
        ip = ip._replace(ttl=ip.ttl - 1)
    found = vrf.ip_fib.lookup(ip.dst)
    if run.rec is not None:
        run.rec(
            Stage.IP_FIB,
            f"{vrf.name}: {ip_to_str(ip.dst)} -> "
            + ("no route" if found is None else f"nh {found.nh} label {found.label}"),
        )
    if found is None:
        return run.drop(Drop.NO_ROUTE)
    ports = l4_ports(packet, ip)
    if needs_flow(run, found.nh):
        verdict = run.flow_stage(vrf, packet, ip, ports, found.nh)
        if verdict is None:
            return
        if verdict != (ip.src, ip.dst, *ports):
            packet = nat_rewrite(packet, ip, verdict)
            ip = parse_ipv4(packet, verify=False)
            ports = (verdict[2], verdict[3])
            found = vrf.ip_fib.lookup(ip.dst)
            if found is None:
                return run.drop(Drop.NO_ROUTE)
    ip_nexthop(run, vrf, found.nh, found.label, found.mac, packet, ip, ports, depth)


def ports_say(run: Pass, nh_id: int, says: Callable[[Vif], bool]) -> bool:
    """Whether a port the packet is under, the sending VM's or the receiving local one's (at
    next hop `nh_id`), says so."""
    if run.in_vif.kind is VifKind.VIRTUAL and says(run.in_vif):
        return True
    nh = run.t.nexthops.get(nh_id)
    if isinstance(nh, EncapNH):
        target = run.t.vifs.get(nh.vif)
        return target is not None and says(target)
    return False


def _policy(vif: Vif) -> bool:
    return vif.policy


def _agent_policy(vif: Vif) -> bool:
    return vif.policy and vif.agent_decides


def needs_flow(run: Pass, nh_id: int) -> bool:
    """Whether the packet goes through the flow table."""
    return ports_say(run, nh_id, _policy)


def agent_decides(run: Pass, nh_id: int) -> bool:
    """Whether a new flow waits for the agent rather than the vRouter's own verdict."""
    return ports_say(run, nh_id, _agent_policy)


def _ports(run: Pass, nh_id: int) -> tuple[Vif | None, Vif | None]:
    """The VM ports a new flow is between on this node: the sending one, the receiving one."""
    sender = run.in_vif if run.in_vif.kind is VifKind.VIRTUAL else None
    nh = run.t.nexthops.get(nh_id)
    receiver = run.t.vifs.get(nh.vif) if isinstance(nh, EncapNH) else None
    if receiver is not None and receiver.kind is not VifKind.VIRTUAL:
        receiver = None
    return sender, receiver


def verdict(
    run: Pass,
    packet: bytes,
    ip: IPv4,
    ports: tuple[int, int],
    nh_id: int,
    sender: Vif | None,
    receiver: Vif | None,
) -> Decision:
    """The rules' verdict on a new flow between these local ports (`_ports`): the sending
    port's egress rules and subnet ACL, then the receiving port's (rules.leaving,
    rules.entering). What goes to the gateway itself (its echo, the DNS resolver at base + 2)
    is not filtered, as in AWS."""
    if isinstance(run.t.nexthops.get(nh_id), ReceiveNH):
        return NOT_COMPILED
    icmp_type = icmp_code = -1
    if ip.proto == PROTO_ICMP and not ip.is_fragment and len(packet) >= ip.header_len + 2:
        icmp_type, icmp_code = packet[ip.header_len], packet[ip.header_len + 1]
    sel = selector(ip.proto, ports[1], icmp_type, icmp_code, ip.is_fragment)
    back = reply_selector(ip.proto, ports[0], icmp_type, icmp_code, ip.is_fragment)
    out = NOT_COMPILED
    if sender is not None:
        out = leaving(sender.security, sender.acl, ip.proto, ip.dst, sel, back)
        if not out.allowed:
            return out
    if receiver is not None:
        into = entering(receiver.security, receiver.acl, ip.proto, ip.src, sel, back)
        if not into.allowed or not out.by:
            return into
    return out


def decide(
    run: Pass, key: FlowKey, packet: bytes, ip: IPv4, ports: tuple[int, int], nh_id: int
) -> Flow | None:
    """The vRouter's own verdict on a new flow from the ports' rules: a FORWARD flow and its
    reverse (replies pass statefully), or a DROP flow alone; None (counted) when the table or
    the VRF's quota is full."""
    vrf, proto, src, dst, sport, dport = key
    sender, receiver = _ports(run, nh_id)
    decision = verdict(run, packet, ip, ports, nh_id, sender, receiver)
    if decision.allowed:
        # replies are looked up in the VRF they start in: a local receiver's own, which
        # differs from the sender's across route tables or a peering
        back = vrf if receiver is None else receiver.vrf
        action, reverse = FlowAction.FORWARD, (back, proto, dst, src, dport, sport)
    else:
        action, reverse = FlowAction.DROP, None
    refused = run.t.flows.install(key, action, run.now, reverse, by=decision.by)
    if isinstance(refused, Drop):
        run.drop(refused)
        return None
    if run.rec is not None:
        by = f" by {decision.by}" if decision.by else ""
        run.rec(Stage.FLOW, f"miss: decided {action}{by}")
    return run.t.flows.lookup(key)


def flow_stage(
    run: Pass, vrf: Vrf, packet: bytes, ip: IPv4, ports: tuple[int, int], nh_id: int
) -> NatTuple | None:
    """The flow table: None when the packet is held or dropped, else its tuple after NAT."""
    key = (vrf.id, ip.proto, ip.src, ip.dst, ports[0], ports[1])
    flows = run.t.flows
    flow = flows.lookup(key)
    if flow is None and not agent_decides(run, nh_id):
        flow = decide(run, key, packet, ip, ports, nh_id)
        if flow is None:
            return None
    if flow is None:
        if run.t.agent_vif is None:
            run.drop(Drop.AGENT_ABSENT)
            return None
        # the table and the source's HOLD share first, so that a refusal costs no token
        source = run.source(vrf.id)
        refused = flows.can_hold(key, source)
        if refused is not None:
            run.drop(refused)
            return None
        if not run.may_punt(vrf.id):
            return None
        made = flows.hold(key, run.now, source)
        if isinstance(made, Drop):
            run.drop(made)
            return None
        if run.rec is not None:
            run.rec(Stage.FLOW, "miss: hold and punt")
        made.held.append(run.held())
        # the agent keys the flow on the tenant packet: from the fabric, the inner one
        punted = run.frame
        if run.in_vif.kind is VifKind.FABRIC:
            punted = vrf.gateway_mac + vrf.gateway_mac + IP_TYPE + packet
        run.punt(Punt.FLOW_MISS, vrf.id, punted, paid=True)
        return None
    if flow.action is FlowAction.HOLD:
        if len(flow.held) >= MAX_HELD:
            run.drop(Drop.FLOW_QUEUE_LIMIT)
        else:
            if run.rec is not None:
                run.rec(Stage.FLOW, "hold: queued")
            flow.held.append(run.held())
        return None
    tcp_flags = 0
    if ip.proto == PROTO_TCP and len(packet) > ip.header_len + 13:
        tcp_flags = packet[ip.header_len + 13]
    run.touch(flow, len(packet), tcp_flags)
    if run.rec is not None:
        run.rec(Stage.FLOW, f"hit: {flow.action}")
    if flow.action is FlowAction.DROP:
        run.drop(Drop.FLOW_ACTION_DROP)
        return None
    return flow.nat or (ip.src, ip.dst, ports[0], ports[1])


def nat_rewrite(packet: bytes, ip: IPv4, nat: NatTuple) -> bytes:
    """Rewrite addresses and ports, recomputing the IPv4 and L4 checksums."""
    buf = bytearray(packet)
    src, dst, sport, dport = nat
    buf[12:16], buf[16:20] = src, dst
    struct.pack_into("!H", buf, 10, 0)
    struct.pack_into("!H", buf, 10, checksum(buf[: ip.header_len]))
    p = ip.header_len
    if ip.proto in (PROTO_TCP, PROTO_UDP) and not ip.flags_frag & 0x3FFF:
        _PORTS.pack_into(buf, p, sport, dport)
        off = p + (16 if ip.proto == PROTO_TCP else 6)
        if len(buf) >= off + 2 and (ip.proto == PROTO_TCP or buf[off : off + 2] != b"\0\0"):
            struct.pack_into("!H", buf, off, 0)
            seg = buf[p : ip.total_length]
            csum = checksum(seg, pseudo_header_sum(src, dst, ip.proto, len(seg)))
            struct.pack_into("!H", buf, off, csum or (0xFFFF if ip.proto == PROTO_UDP else 0))
    return bytes(buf)


def ip_nexthop(
    run: Pass,
    vrf: Vrf,
    nh_id: int,
    label: int | None,
    mac: bytes | None,
    packet: bytes,
    ip: IPv4,
    ports: tuple[int, int],
    depth: int,
) -> None:
    nh = run.t.nexthops.get(nh_id)
    if run.rec is not None:
        run.rec(Stage.NEXTHOP, f"{nh_id} {type(nh).__name__}")
    if nh is None or depth > MAX_DEPTH:
        return run.drop(Drop.INVALID_NH)
    if isinstance(nh, EncapNH):
        if nh.vif == run.in_vif.id:
            return run.drop(Drop.SAME_VIF)
        out = run.t.vifs.get(nh.vif)
        if out is None:
            return run.drop(Drop.INVALID_NH)
        if (
            out.kind is VifKind.VIRTUAL
            and out.source_check
            and ip.dst != out.ip
            and ip.dst not in out.allowed_ips
        ):
            return run.drop(Drop.DST_IP_MISMATCH)  # Amazon's destination check
        header = nh.dst_mac + nh.src_mac + IP_TYPE
        for piece in run.fit(packet, ip, out.mtu, vrf):
            run.emit(nh.vif, header + piece)
    elif isinstance(nh, TunnelNH):
        if run.fabric_in:
            return run.drop(Drop.NO_TRANSIT)
        if label is None:
            return run.drop(Drop.INVALID_NH)
        tunnel_ip(run, vrf, nh, label, mac, packet, ip, ports)
    elif isinstance(nh, ReceiveNH):
        receive(run, vrf, packet, ip)
    elif isinstance(nh, CompositeNH) and nh.ecmp and nh.members:
        sport = entropy_port(vrf.id, ip.proto, ip.src, ip.dst, *ports)
        member, member_label = nh.members[sport % len(nh.members)]
        if run.rec is not None:
            run.rec(Stage.ECMP, f"member {member} of {len(nh.members)}")
        ip_nexthop(run, vrf, member, member_label, mac, packet, ip, ports, depth + 1)
    elif isinstance(nh, ResolveNH):
        run.punt(Punt.RESOLVE, vrf.id, packet)
    elif isinstance(nh, DiscardNH):
        run.drop(Drop.DISCARD)
    elif isinstance(nh, NatNH) and nh.gateway:
        if nh.dst:
            natgw.inbound(run, nh, packet, ip, depth)
        else:
            natgw.outbound(run, vrf, nh, packet, ip, depth)
    elif isinstance(nh, NatNH):
        nat.nat_nexthop(run, nh, packet, ip, depth)
    else:
        run.drop(Drop.INVALID_NH)


def fit(run: Pass, packet: bytes, ip: IPv4, mtu: int, vrf: Vrf) -> list[bytes]:
    """The packet as pieces of at most `mtu`: fragmented, or [] after ICMP frag-needed."""
    if len(packet) <= mtu:
        return [packet]
    if ip.df:
        if run.rec is not None:
            run.rec(Stage.MTU, f"{len(packet)} > {mtu} with DF: ICMP fragmentation needed")
        run.drop(Drop.FRAG_NEEDED)
        vif = run.in_vif
        src = vif.gateway_ip or vrf.link_local_gateway
        if vif.kind is VifKind.VIRTUAL and src is not None:
            run.emit(vif.id, replies.frag_needed(packet, ip, mtu, src, vif.mac, vrf.gateway_mac))
        return []
    try:
        pieces = fragment(packet, mtu)
    except ValueError:
        run.drop(Drop.FRAGMENT_FAILED)
        return []
    if run.rec is not None:
        run.rec(Stage.MTU, f"fragmented into {len(pieces)}")
    return pieces


def tunnel_ip(
    run: Pass,
    vrf: Vrf,
    nh: TunnelNH,
    label: int,
    mac: bytes | None,
    packet: bytes,
    ip: IPv4,
    ports: tuple[int, int],
) -> None:
    mtu = run.t.fabric.mtu - overhead(nh.encap, False)
    sport = entropy_port(vrf.id, ip.proto, ip.src, ip.dst, *ports)
    for piece in run.fit(packet, ip, mtu, vrf):
        if nh.encap is Encap.VLAN:
            fabric.vlan_to_node(run, nh.dst_ip, label, IP_TYPE + piece)
        elif nh.encap is Encap.VXLAN:
            inner = (mac or vrf.gateway_mac) + vrf.gateway_mac + IP_TYPE + piece
            run.tunnel(nh, label, inner, sport)
        else:
            run.tunnel(nh, label, piece, sport)


def receive(run: Pass, vrf: Vrf, packet: bytes, ip: IPv4) -> None:
    """A packet to a gateway address: echo replies from the sender's own gateway only."""
    vif = run.in_vif
    if vif.kind is not VifKind.VIRTUAL:
        return run.drop(Drop.RECEIVE_UNHANDLED)
    own_gateway = ip.dst == vif.gateway_ip or ip.dst == vrf.link_local_gateway
    # a fragment may end at its header; a whole ICMP packet has its 8 bytes (l4_ports)
    if ip.proto == PROTO_ICMP and not ip.is_fragment and packet[ip.header_len] == 8:
        if not own_gateway:
            return run.drop(Drop.GATEWAY_OTHER_SUBNET)
        if run.rec is not None:
            run.rec(Stage.RECEIVE, f"echo reply from gateway {ip_to_str(ip.dst)}")
        return run.emit(vif.id, replies.echo_reply(packet, ip, vif.mac, vrf.gateway_mac))
    if ip.proto == PROTO_UDP and l4_ports(packet, ip)[1] == 53:
        return run.punt(Punt.DNS, vrf.id, run.frame)
    run.drop(Drop.RECEIVE_UNHANDLED)
