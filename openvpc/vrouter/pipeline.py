"""The forwarding pipeline: a function of (tables, frame, input vif, now) returning what to emit.

It does no I/O; the only state it changes is in `Tables` (flows, counters, underlay neighbours),
as a forwarding plane does. The same code runs in the lab, the simulator and `openvpc trace`.
"""

import struct

from openvpc.model.forwarding import ArpMode, Encap, FlowKey, Mode, NatTuple, overhead
from openvpc.packet.arp import ARP_REQUEST, parse_arp
from openvpc.packet.checksum import checksum, pseudo_header_sum
from openvpc.packet.errors import Malformed
from openvpc.packet.ethernet import (
    BROADCAST,
    ETH_LEN,
    ETH_P_8021Q,
    ETH_P_ARP,
    ETH_P_IP,
    ETH_P_MPLS,
    ZERO_MAC,
    Ethernet,
    is_multicast,
    parse_ethernet,
)
from openvpc.packet.ipv4 import (
    PROTO_GRE,
    PROTO_ICMP,
    PROTO_TCP,
    PROTO_UDP,
    IPv4,
    build_ipv4,
    fragment,
    ip_to_str,
    parse_ipv4,
)
from openvpc.packet.l4 import l4_ports
from openvpc.packet.tunnel import (
    MPLS_LEN,
    UDP_PORT_MPLS,
    UDP_PORT_MPLS_LEGACY,
    UDP_PORT_VXLAN,
    VXLAN_LEN,
    parse_gre,
    parse_mpls,
    parse_vxlan,
)
from openvpc.vrouter import replies
from openvpc.vrouter.drops import Drop
from openvpc.vrouter.encap import OuterTemplate, entropy_port, entropy_port_l2
from openvpc.vrouter.flow import MAX_HELD, Flow, FlowAction
from openvpc.vrouter.limits import Source
from openvpc.vrouter.lpm import prefix_int
from openvpc.vrouter.nexthop import (
    CompositeNH,
    DiscardNH,
    EncapNH,
    L2ReceiveNH,
    ReceiveNH,
    ResolveNH,
    TunnelNH,
)
from openvpc.vrouter.punt import Punt, build_punt, parse_punt
from openvpc.vrouter.tables import MAX_PENDING, Tables, Vif, VifKind, Vrf
from openvpc.vrouter.trace import Recorder

Emit = tuple[int, bytes]

_PORTS = struct.Struct("!HH")
_IP_HDR = b"\x08\x00"
_ZERO_IP = b"\x00" * 4
_ALL_ONES = b"\xff" * 4
MAX_DEPTH = 4  # next-hop nesting (composite of composites) before we call it a loop


def process(
    tables: Tables, frame: bytes, vif_id: int, now: float, recorder: Recorder | None = None
) -> list[Emit]:
    """Forward one frame received on `vif_id`; returns (output vif, frame) pairs."""
    vif = tables.vifs.get(vif_id)
    if vif is None:
        tables.count_drop(Drop.INVALID_VIF, None)
        return []
    vif.stats.rx_packets += 1
    vif.stats.rx_bytes += len(frame)
    return _forward(tables, vif, frame, now, recorder)


def _forward(
    tables: Tables, vif: Vif, frame: bytes, now: float, recorder: Recorder | None
) -> list[Emit]:
    """`process` after the receive counters: held packets run again through here."""
    run = _Pass(tables, vif, frame, now, recorder)
    try:
        if vif.kind is VifKind.VIRTUAL:
            run.from_vm(frame)
        elif vif.kind is VifKind.FABRIC:
            run.from_fabric(frame)
        else:
            run.from_agent(frame)
    except Malformed as e:
        run.drop(e.reason)
        return []
    return _count_out(tables, run)


def process_overlay(
    tables: Tables, kind: str, data: bytes, now: float, recorder: Recorder | None = None
) -> list[Emit]:
    """A tunnel payload a socket received without outer headers, counted on the fabric vif:
    kind "vxlan" starts at the VXLAN header, "mpls" at the MPLS label (MPLSoUDP or GRE)."""
    vif = tables.vifs[tables.fabric.vif]
    vif.stats.rx_packets += 1
    vif.stats.rx_bytes += len(data)
    run = _Pass(tables, vif, data, now, recorder)
    try:
        run.overlay_in(kind, data)
    except Malformed as e:
        run.drop(e.reason)
        return []
    return _count_out(tables, run)


def _count_out(tables: Tables, run: "_Pass") -> list[Emit]:
    for out_vif, data in run.out:
        out = tables.vifs.get(out_vif)
        if out is not None:
            out.stats.tx_packets += 1
            out.stats.tx_bytes += len(data)
    return run.out


def _outer_frame(tables: Tables, kind: str, data: bytes) -> bytes:
    """A fabric frame around an overlay payload, so that a held packet can run again."""
    port = UDP_PORT_VXLAN if kind == "vxlan" else UDP_PORT_MPLS
    udp = _PORTS.pack(0, port) + (8 + len(data)).to_bytes(2, "big") + b"\0\0" + data
    ip = build_ipv4(tables.fabric.ip, tables.fabric.ip, PROTO_UDP, udp)
    return tables.fabric.mac + tables.fabric.mac + _IP_HDR + ip


def install_flow(
    tables: Tables,
    key: FlowKey,
    action: FlowAction,
    now: float,
    reverse: FlowKey | None = None,
    nat: NatTuple | None = None,
    reverse_nat: NatTuple | None = None,
    recorder: Recorder | None = None,
) -> list[Emit]:
    """The agent's answer to a flow miss: install both directions, release held packets."""
    released = tables.flows.install(key, action, now, reverse, nat, reverse_nat)
    if isinstance(released, Drop):
        tables.count_drop(released, None)
        return []
    out: list[Emit] = []
    for frame, vif_id in released:
        vif = tables.vifs.get(vif_id)
        if vif is None:  # unplugged while the packet was held
            tables.count_drop(Drop.INVALID_VIF, None)
            continue
        out.extend(_forward(tables, vif, frame, now, recorder))
    return out


def _nat_rewrite(packet: bytes, ip: IPv4, nat: NatTuple) -> bytes:
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


class _Pass:
    """One frame's way through the pipeline; collects what to emit.

    Every recorder call sits under `if self.rec is not None` so untraced frames format nothing.
    """

    __slots__ = ("fabric_in", "frame", "in_vif", "now", "out", "overlay", "rec", "t")

    def __init__(
        self, tables: Tables, vif: Vif, frame: bytes, now: float, rec: Recorder | None
    ) -> None:
        self.t = tables
        self.in_vif = vif
        self.frame = frame
        # from the fabric, nothing goes back to the fabric, except what a gateway routes
        self.fabric_in = vif.kind is VifKind.FABRIC
        self.now = now
        self.rec = rec
        self.out: list[Emit] = []
        self.overlay: str | None = None  # set by process_overlay: `frame` has no outer headers

    # -- helpers -------------------------------------------------------------------
    def drop(self, reason: str) -> None:
        self.t.count_drop(reason, self.in_vif)
        if self.rec is not None:
            self.rec("drop", reason)

    def emit(self, vif_id: int, data: bytes) -> None:
        if self.rec is not None:
            self.rec("tx", f"vif {vif_id} ({len(data)} bytes)")
        self.out.append((vif_id, data))

    def source(self, vrf: int) -> Source:
        """Who pays for a punt or a HOLD entry: the VM's vif, or the fabric per VRF."""
        return self.in_vif.id, vrf

    def may_punt(self, vrf: int) -> bool:
        """Take a token from the source's punt bucket, or count the drop."""
        if self.t.punts.allow(self.source(vrf), self.now):
            return True
        self.drop(Drop.PUNT_RATE_LIMITED)
        return False

    def punt(self, reason: Punt, vrf: int, frame: bytes, paid: bool = False) -> None:
        """Send `frame` to the agent; `paid` when the caller took the token already."""
        if self.t.agent_vif is None:
            self.drop(Drop.AGENT_ABSENT)
            return
        if not paid and not self.may_punt(vrf):
            return
        if self.rec is not None:
            self.rec("punt", f"{reason.name.lower()} to agent")
        self.emit(self.t.agent_vif, build_punt(reason, self.in_vif.id, vrf, frame))

    def held(self) -> tuple[bytes, int]:
        """What a flow holds to run again later: always a whole frame with its input vif."""
        if self.overlay is not None:
            return _outer_frame(self.t, self.overlay, self.frame), self.in_vif.id
        return self.frame, self.in_vif.id

    # -- from a VM -----------------------------------------------------------------
    def from_vm(self, frame: bytes) -> None:
        vif = self.in_vif
        eth = parse_ethernet(frame)
        if self.rec is not None:
            self.rec("vif", f"rx vif {vif.id} ({vif.name}) vrf {vif.vrf}")
        if eth.vlan is not None:
            return self.drop(Drop.VM_VLAN_TAGGED)
        if eth.src != vif.mac:
            return self.drop(Drop.SRC_MAC_MISMATCH)
        vrf = self.t.vrfs.get(vif.vrf)
        if vrf is None:
            return self.drop(Drop.INVALID_VRF)
        if eth.ethertype == ETH_P_ARP:
            return self.arp_from_vm(vrf, frame, eth)
        if eth.ethertype != ETH_P_IP:
            if vrf.mode is Mode.L3:
                return self.drop(Drop.L3_NON_IP)
            return self.bridge(vrf, frame, eth)
        ip = parse_ipv4(frame, eth.offset)
        packet = frame[eth.offset : eth.offset + ip.total_length]
        if ip.proto == PROTO_UDP and l4_ports(packet, ip)[1] == 67:
            return self.punt(Punt.DHCP, vrf.id, frame)
        if vif.source_check and ip.src != vif.ip and ip.src not in vif.allowed_ips:
            return self.drop(Drop.SRC_IP_MISMATCH)
        if vrf.mode is Mode.L3:
            if vrf.unicast_only and (is_multicast(eth.dst) or self.not_unicast(ip.dst)):
                return self.drop(Drop.L3_MULTICAST)
            return self.route(vrf, packet, ip)
        if vrf.mode is Mode.L2_L3 and vrf.ip_fib.lookup(ip.dst) is not None:
            if self.rec is not None:
                self.rec("fallback", "IP FIB hit: routed")
            return self.route(vrf, packet, ip)
        return self.bridge(vrf, frame, eth)

    def not_unicast(self, dst: bytes) -> bool:
        """Multicast, limited broadcast, or the directed broadcast of the sender's subnet."""
        if dst[0] >= 224 or dst == _ALL_ONES:
            return True
        vif = self.in_vif
        if vif.ip is None or vif.prefix_len >= 31:
            return False
        host_mask = (1 << (32 - vif.prefix_len)) - 1
        d = int.from_bytes(dst, "big")
        return d & host_mask == host_mask and prefix_int(dst, vif.prefix_len) == prefix_int(
            vif.ip, vif.prefix_len
        )

    def arp_from_vm(self, vrf: Vrf, frame: bytes, eth: Ethernet) -> None:
        arp = parse_arp(frame, eth.offset)
        if arp.op != ARP_REQUEST:
            if vrf.mode is Mode.L3:
                return self.punt(Punt.ARP, vrf.id, frame)
            return self.bridge(vrf, frame, eth)
        if arp.spa == arp.tpa or arp.spa == _ZERO_IP:
            if self.rec is not None:
                self.rec("arp", f"gratuitous/probe for {ip_to_str(arp.tpa)}")
            return self.punt(Punt.ARP, vrf.id, frame)
        answer = self.arp_answer(vrf, arp.tpa)
        if answer is not None:
            if self.rec is not None:
                self.rec("arp_proxy", f"{ip_to_str(arp.tpa)} is-at {answer.hex(':')}")
            return self.emit(self.in_vif.id, replies.arp_reply(arp, answer))
        if arp.tpa == self.in_vif.ip:
            return self.drop(Drop.ARP_IGNORED)
        if vrf.mode is Mode.L3:
            if self.rec is not None:
                self.rec("arp", f"unknown {ip_to_str(arp.tpa)}")
            return self.punt(Punt.ARP, vrf.id, frame)
        return self.bridge(vrf, frame, eth)

    def arp_answer(self, vrf: Vrf, target: bytes) -> bytes | None:
        vif = self.in_vif
        if target == vif.ip:
            return None
        if vrf.arp_mode is ArpMode.SINGLE_MAC:
            return vrf.gateway_mac
        if target == vif.gateway_ip or target == vrf.link_local_gateway:
            return vrf.gateway_mac
        route = vrf.ip_fib.lookup(target)
        if route is None:
            return None
        same_subnet = vif.ip is not None and prefix_int(target, vif.prefix_len) == prefix_int(
            vif.ip, vif.prefix_len
        )
        if same_subnet or vrf.mode is not Mode.L3:
            return route.mac
        return vrf.gateway_mac

    # -- IP forwarding ---------------------------------------------------------------
    def route(self, vrf: Vrf, packet: bytes, ip: IPv4, depth: int = 0) -> None:
        """Route an IP packet in `vrf`: TTL, FIB lookup, first-packet flow policy, next hop."""
        # one routed hop, one decrement: the ingress vRouter (or an L2 network's gateway)
        # routes; what arrives from the fabric was routed already by the sending vRouter
        if vrf.decrement_ttl and not self.fabric_in:
            if ip.ttl <= 1:
                return self.drop(Drop.TTL_EXPIRED)
            buf = bytearray(packet)
            buf[8] -= 1
            csum = int.from_bytes(buf[10:12], "big") + 0x0100  # RFC 1624 for TTL - 1
            csum = (csum & 0xFFFF) + (csum >> 16)
            buf[10:12] = csum.to_bytes(2, "big")
            packet = bytes(buf)
            ip = ip._replace(ttl=ip.ttl - 1)
        route = vrf.ip_fib.lookup(ip.dst)
        if self.rec is not None:
            self.rec(
                "ip_fib",
                f"{vrf.name}: {ip_to_str(ip.dst)} -> "
                + ("no route" if route is None else f"nh {route.nh} label {route.label}"),
            )
        if route is None:
            return self.drop(Drop.NO_ROUTE)
        ports = l4_ports(packet, ip)
        if self.needs_flow(route.nh):
            verdict = self.flow_stage(vrf, packet, ip, ports)
            if verdict is None:
                return
            if verdict != (ip.src, ip.dst, *ports):
                packet = _nat_rewrite(packet, ip, verdict)
                ip = parse_ipv4(packet, verify=False)
                ports = (verdict[2], verdict[3])
                route = vrf.ip_fib.lookup(ip.dst)
                if route is None:
                    return self.drop(Drop.NO_ROUTE)
        self.ip_nexthop(vrf, route.nh, route.label, route.mac, packet, ip, ports, depth)

    def needs_flow(self, nh_id: int) -> bool:
        if self.in_vif.kind is VifKind.VIRTUAL and self.in_vif.policy:
            return True
        nh = self.t.nexthops.get(nh_id)
        if isinstance(nh, EncapNH):
            target = self.t.vifs.get(nh.vif)
            return target is not None and target.policy
        return False

    def flow_stage(
        self, vrf: Vrf, packet: bytes, ip: IPv4, ports: tuple[int, int]
    ) -> NatTuple | None:
        """The flow table: None when the packet is held or dropped, else its tuple after NAT."""
        key = (vrf.id, ip.proto, ip.src, ip.dst, ports[0], ports[1])
        flows = self.t.flows
        flow = flows.lookup(key)
        if flow is None:
            if self.t.agent_vif is None:
                self.drop(Drop.AGENT_ABSENT)
                return None
            # the table and the source's HOLD share first, so that a refusal costs no token
            source = self.source(vrf.id)
            refused = flows.can_hold(key, source)
            if refused is not None:
                self.drop(refused)
                return None
            if not self.may_punt(vrf.id):
                return None
            made = flows.hold(key, self.now, source)
            if isinstance(made, Drop):
                self.drop(made)
                return None
            if self.rec is not None:
                self.rec("flow", "miss: hold and punt")
            made.held.append(self.held())
            # the agent keys the flow on the tenant packet: from the fabric, the inner one
            punted = self.frame
            if self.in_vif.kind is VifKind.FABRIC:
                punted = vrf.gateway_mac + vrf.gateway_mac + _IP_HDR + packet
            self.punt(Punt.FLOW_MISS, vrf.id, punted, paid=True)
            return None
        if flow.action is FlowAction.HOLD:
            if len(flow.held) >= MAX_HELD:
                self.drop(Drop.FLOW_QUEUE_LIMIT)
            else:
                if self.rec is not None:
                    self.rec("flow", "hold: queued")
                flow.held.append(self.held())
            return None
        tcp_flags = 0
        if ip.proto == PROTO_TCP and len(packet) > ip.header_len + 13:
            tcp_flags = packet[ip.header_len + 13]
        self.touch(flow, len(packet), tcp_flags)
        if self.rec is not None:
            self.rec("flow", f"hit: {flow.action}")
        if flow.action is FlowAction.DROP:
            self.drop(Drop.FLOW_ACTION_DROP)
            return None
        return flow.nat or (ip.src, ip.dst, ports[0], ports[1])

    def touch(self, flow: Flow, size: int, tcp_flags: int) -> None:
        """Count a packet on the flow it hit (a super-frame counts each of its segments)."""
        self.t.flows.touch(flow, self.now, size, tcp_flags)

    def ip_nexthop(
        self,
        vrf: Vrf,
        nh_id: int,
        label: int | None,
        mac: bytes | None,
        packet: bytes,
        ip: IPv4,
        ports: tuple[int, int],
        depth: int,
    ) -> None:
        nh = self.t.nexthops.get(nh_id)
        if self.rec is not None:
            self.rec("nexthop", f"{nh_id} {type(nh).__name__}")
        if nh is None or depth > MAX_DEPTH:
            return self.drop(Drop.INVALID_NH)
        if isinstance(nh, EncapNH):
            if nh.vif == self.in_vif.id:
                return self.drop(Drop.SAME_VIF)
            out = self.t.vifs.get(nh.vif)
            if out is None:
                return self.drop(Drop.INVALID_NH)
            header = nh.dst_mac + nh.src_mac + _IP_HDR
            for piece in self.fit(packet, ip, out.mtu, vrf):
                self.emit(nh.vif, header + piece)
        elif isinstance(nh, TunnelNH):
            if self.fabric_in:
                return self.drop(Drop.NO_TRANSIT)
            if label is None:
                return self.drop(Drop.INVALID_NH)
            self.tunnel_ip(vrf, nh, label, mac, packet, ip, ports)
        elif isinstance(nh, ReceiveNH):
            self.receive(vrf, packet, ip)
        elif isinstance(nh, CompositeNH) and nh.ecmp and nh.members:
            sport = entropy_port(vrf.id, ip.proto, ip.src, ip.dst, *ports)
            member, member_label = nh.members[sport % len(nh.members)]
            if self.rec is not None:
                self.rec("ecmp", f"member {member} of {len(nh.members)}")
            self.ip_nexthop(vrf, member, member_label, mac, packet, ip, ports, depth + 1)
        elif isinstance(nh, ResolveNH):
            self.punt(Punt.RESOLVE, vrf.id, packet)
        elif isinstance(nh, DiscardNH):
            self.drop(Drop.DISCARD)
        else:
            self.drop(Drop.INVALID_NH)

    def fit(self, packet: bytes, ip: IPv4, mtu: int, vrf: Vrf) -> list[bytes]:
        """The packet as pieces of at most `mtu`: fragmented, or [] after ICMP frag-needed."""
        if len(packet) <= mtu:
            return [packet]
        if ip.df:
            if self.rec is not None:
                self.rec("mtu", f"{len(packet)} > {mtu} with DF: ICMP fragmentation needed")
            self.drop(Drop.FRAG_NEEDED)
            vif = self.in_vif
            src = vif.gateway_ip or vrf.link_local_gateway
            if vif.kind is VifKind.VIRTUAL and src is not None:
                self.emit(
                    vif.id, replies.frag_needed(packet, ip, mtu, src, vif.mac, vrf.gateway_mac)
                )
            return []
        try:
            pieces = fragment(packet, mtu)
        except ValueError:
            self.drop(Drop.FRAGMENT_FAILED)
            return []
        if self.rec is not None:
            self.rec("mtu", f"fragmented into {len(pieces)}")
        return pieces

    def tunnel_ip(
        self,
        vrf: Vrf,
        nh: TunnelNH,
        label: int,
        mac: bytes | None,
        packet: bytes,
        ip: IPv4,
        ports: tuple[int, int],
    ) -> None:
        mtu = self.t.fabric.mtu - overhead(nh.encap, False)
        sport = entropy_port(vrf.id, ip.proto, ip.src, ip.dst, *ports)
        for piece in self.fit(packet, ip, mtu, vrf):
            if nh.encap is Encap.VLAN:
                self.vlan_to_node(nh.dst_ip, label, _IP_HDR + piece)
            elif nh.encap is Encap.VXLAN:
                inner = (mac or vrf.gateway_mac) + vrf.gateway_mac + _IP_HDR + piece
                self.tunnel(nh, label, inner, sport)
            else:
                self.tunnel(nh, label, piece, sport)

    def receive(self, vrf: Vrf, packet: bytes, ip: IPv4) -> None:
        """A packet to a gateway address: echo replies from the sender's own gateway only."""
        vif = self.in_vif
        if vif.kind is not VifKind.VIRTUAL:
            return self.drop(Drop.RECEIVE_UNHANDLED)
        own_gateway = ip.dst == vif.gateway_ip or ip.dst == vrf.link_local_gateway
        # a fragment may end at its header; a whole ICMP packet has its 8 bytes (l4_ports)
        if ip.proto == PROTO_ICMP and not ip.is_fragment and packet[ip.header_len] == 8:
            if not own_gateway:
                return self.drop(Drop.GATEWAY_OTHER_SUBNET)
            if self.rec is not None:
                self.rec("receive", f"echo reply from gateway {ip_to_str(ip.dst)}")
            return self.emit(vif.id, replies.echo_reply(packet, ip, vif.mac, vrf.gateway_mac))
        if ip.proto == PROTO_UDP and l4_ports(packet, ip)[1] == 53:
            return self.punt(Punt.DNS, vrf.id, self.frame)
        self.drop(Drop.RECEIVE_UNHANDLED)

    # -- bridging ----------------------------------------------------------------------
    def bridge(self, vrf: Vrf, frame: bytes, eth: Ethernet, depth: int = 0) -> None:
        """Switch an Ethernet frame by destination MAC in `vrf`'s MAC FIB."""
        key = BROADCAST if is_multicast(eth.dst) else eth.dst
        route = vrf.mac_fib.get(key)
        if self.rec is not None:
            self.rec(
                "mac_fib",
                f"{vrf.name}: {eth.dst.hex(':')} -> "
                + ("no route" if route is None else f"nh {route.nh} label {route.label}"),
            )
        if route is None:
            return self.drop(Drop.NO_L2_ROUTE)
        self.l2_nexthop(vrf, route.nh, route.label, frame, eth, depth, replicating=False)

    def l2_nexthop(
        self,
        vrf: Vrf,
        nh_id: int,
        label: int | None,
        frame: bytes,
        eth: Ethernet,
        depth: int,
        replicating: bool,
    ) -> None:
        nh = self.t.nexthops.get(nh_id)
        if self.rec is not None:
            self.rec("nexthop", f"{nh_id} {type(nh).__name__}")
        if nh is None or depth > MAX_DEPTH:
            return self.drop(Drop.INVALID_NH)
        if isinstance(nh, EncapNH):
            if nh.vif == self.in_vif.id:
                if not replicating:
                    self.drop(Drop.SAME_VIF)
                return None
            if nh.vif not in self.t.vifs:
                return self.drop(Drop.INVALID_NH)
            return self.emit(nh.vif, frame)
        if isinstance(nh, TunnelNH):
            if self.fabric_in:
                if not replicating:
                    self.drop(Drop.NO_TRANSIT)
                return None
            if label is None:
                return self.drop(Drop.INVALID_NH)
            return self.tunnel_l2(vrf, nh, label, frame, eth)
        if isinstance(nh, L2ReceiveNH):
            if eth.ethertype != ETH_P_IP:
                return self.drop(Drop.RECEIVE_UNHANDLED)
            ip = parse_ipv4(frame, eth.offset)
            if self.rec is not None:
                self.rec("l2_receive", "gateway MAC: routed")
            # the gateway routes on behalf of the network, so it may send back to the fabric
            self.fabric_in = False
            return self.route(vrf, frame[eth.offset : eth.offset + ip.total_length], ip, depth + 1)
        if isinstance(nh, CompositeNH):
            members = nh.members
            if nh.ecmp and members:
                members = (members[entropy_port_l2(vrf.id, frame) % len(members)],)
            elif not nh.ecmp and not replicating and all(self.is_source(m) for m, _ in members):
                # e.g. a VM alone in its network: no copy to make, so count the original
                return self.drop(Drop.REPLICATION_EMPTY)
            if not members:
                return self.drop(Drop.INVALID_NH)
            for member, member_label in members:
                self.l2_nexthop(vrf, member, member_label, frame, eth, depth + 1, not nh.ecmp)
            return None
        if isinstance(nh, ResolveNH):
            return self.punt(Punt.RESOLVE, vrf.id, frame)
        return self.drop(Drop.DISCARD if isinstance(nh, DiscardNH) else Drop.INVALID_NH)

    def is_source(self, nh_id: int) -> bool:
        """Whether a replica to this next hop would go back where the frame came from."""
        nh = self.t.nexthops.get(nh_id)
        if isinstance(nh, EncapNH):
            return nh.vif == self.in_vif.id
        return isinstance(nh, TunnelNH) and self.fabric_in

    def tunnel_l2(self, vrf: Vrf, nh: TunnelNH, label: int, frame: bytes, eth: Ethernet) -> None:
        if nh.encap is Encap.VLAN:
            tag = ETH_P_8021Q.to_bytes(2, "big") + label.to_bytes(2, "big")
            if self.rec is not None:
                self.rec("encap", f"vlan {label} (bridged)")
            return self.emit(self.t.fabric.vif, frame[:12] + tag + frame[12:])
        if eth.ethertype == ETH_P_IP:
            ip = parse_ipv4(frame, eth.offset)
            packet = frame[eth.offset : eth.offset + ip.total_length]
            ports = l4_ports(packet, ip)
            sport = entropy_port(vrf.id, ip.proto, ip.src, ip.dst, *ports)
            mtu = self.t.fabric.mtu - overhead(nh.encap, True)
            header = frame[: eth.offset]
            for piece in self.fit(packet, ip, mtu, vrf):
                self.tunnel(nh, label, header + piece, sport)
            return None
        if len(frame) - ETH_LEN + overhead(nh.encap, True) > self.t.fabric.mtu:
            return self.drop(Drop.FRAG_NEEDED)
        self.tunnel(nh, label, frame, entropy_port_l2(vrf.id, frame))
        return None

    # -- to the fabric -----------------------------------------------------------------
    def tunnel(self, nh: TunnelNH, label: int, payload: bytes, sport: int) -> None:
        """Wrap in the outer header (cached per encap, destination and label) and send."""
        key = (nh.encap, nh.dst_ip, label)
        template = self.t.templates.get(key)
        if template is None:
            template = OuterTemplate(nh.encap, self.t.fabric.ip, nh.dst_ip, label)
            self.t.templates[key] = template
        if self.rec is not None:
            self.rec(
                "encap", f"{nh.encap} label/vni {label} to {ip_to_str(nh.dst_ip)} sport {sport}"
            )
        self.to_node(nh.dst_ip, _IP_HDR + template.wrap(payload, sport))

    def vlan_to_node(self, node_ip: bytes, vlan: int, rest: bytes) -> None:
        if self.rec is not None:
            self.rec("encap", f"vlan {vlan} to {ip_to_str(node_ip)}")
        tag = ETH_P_8021Q.to_bytes(2, "big") + vlan.to_bytes(2, "big")
        self.to_node(node_ip, tag + rest)

    def to_node(self, node_ip: bytes, rest: bytes) -> None:
        """Send `rest` (everything after the MAC addresses) toward `node_ip` on the underlay."""
        t = self.t
        if t.fabric.kernel_routed and rest[:2] == _IP_HDR:
            # the kernel routes the outer packet and resolves neighbours: no destination MAC
            if self.rec is not None:
                self.rec("global_fib", f"{ip_to_str(node_ip)} routed by the kernel")
            return self.emit(t.fabric.vif, ZERO_MAC + t.fabric.mac + rest)
        gateway = t.underlay.lookup(node_ip)
        if gateway is None:
            return self.drop(Drop.NO_UNDERLAY_ROUTE)
        hop = gateway or node_ip
        if self.rec is not None:
            self.rec("global_fib", f"{ip_to_str(node_ip)} via {ip_to_str(hop)}")
        mac = t.neighbors.get(hop)
        if mac is not None:
            return self.emit(t.fabric.vif, mac + t.fabric.mac + rest)
        queue = t.pending.setdefault(hop, [])
        if len(queue) >= MAX_PENDING:
            return self.drop(Drop.NEIGHBOR_PENDING)
        queue.append(rest)
        if len(queue) == 1:
            if self.rec is not None:
                self.rec("underlay_arp", f"who-has {ip_to_str(hop)}")
            self.emit(t.fabric.vif, replies.arp_request(t.fabric.mac, t.fabric.ip, hop))
        return None

    # -- from the fabric ---------------------------------------------------------------
    def from_fabric(self, frame: bytes) -> None:
        t = self.t
        eth = parse_ethernet(frame)
        if self.rec is not None:
            self.rec("vif", f"rx fabric ({len(frame)} bytes)")
        if eth.vlan is not None:
            return self.vlan_in(frame, eth)
        if eth.ethertype == ETH_P_ARP:
            return self.underlay_arp(frame, eth)
        if eth.dst != t.fabric.mac:
            return self.drop(Drop.FABRIC_NOT_FOR_US)
        if eth.ethertype != ETH_P_IP:
            return self.drop(Drop.NOT_OVERLAY)
        ip = parse_ipv4(frame, eth.offset)
        if ip.dst != t.fabric.ip:
            return self.drop(Drop.FABRIC_NOT_FOR_US)
        if self.rec is not None:
            self.rec("global_fib", f"{ip_to_str(ip.dst)} is local: decapsulate")
        if ip.is_fragment:
            return self.drop(Drop.OUTER_FRAGMENT)
        p = eth.offset + ip.header_len
        end = eth.offset + ip.total_length
        if ip.proto == PROTO_GRE:
            gre = parse_gre(frame, p)
            if gre.protocol != ETH_P_MPLS:
                return self.drop(Drop.GRE_NOT_MPLS)
            if self.rec is not None:
                self.rec("decap", "gre")
            return self.mpls_in(frame[p + gre.header_len : end])
        if ip.proto == PROTO_UDP:
            if end - p < 8:
                raise Malformed("short_udp")
            _, dport = _PORTS.unpack_from(frame, p)
            if dport == UDP_PORT_VXLAN:
                if self.rec is not None:
                    self.rec("decap", "udp/vxlan")
                return self.vxlan_in(frame[p + 8 : end])
            if dport in (UDP_PORT_MPLS, UDP_PORT_MPLS_LEGACY):
                if self.rec is not None:
                    self.rec("decap", "udp/mpls")
                return self.mpls_in(frame[p + 8 : end])
        return self.drop(Drop.NOT_OVERLAY)

    def overlay_in(self, kind: str, data: bytes) -> None:
        """A tunnel payload without outer headers (see `process_overlay`)."""
        self.overlay = kind
        if kind == "vxlan":
            return self.vxlan_in(data)
        if kind == "mpls":
            return self.mpls_in(data)
        raise ValueError(f"unknown overlay kind {kind!r}")

    def mpls_in(self, data: bytes) -> None:
        entry = parse_mpls(data)
        target = self.t.labels.get(entry.label) if entry.bos else None
        vrf = self.t.vrfs.get(target.vrf) if target is not None else None
        if target is None or vrf is None:
            return self.drop(Drop.INVALID_LABEL)
        if self.rec is not None:
            self.rec("mpls", f"label {entry.label} -> vrf {vrf.name}")
        payload = data[MPLS_LEN:]
        if target.l2:
            return self.frame_in(vrf, payload, parse_ethernet(payload))
        ip = parse_ipv4(payload)
        self.route(vrf, payload[: ip.total_length], ip)
        return None

    def vxlan_in(self, data: bytes) -> None:
        vni = parse_vxlan(data)
        vrf_id = self.t.vnis.get(vni)
        vrf = self.t.vrfs.get(vrf_id) if vrf_id is not None else None
        if vrf is None:
            return self.drop(Drop.INVALID_VNI)
        if self.rec is not None:
            self.rec("vxlan", f"vni {vni} -> vrf {vrf.name}")
        inner = data[VXLAN_LEN:]
        return self.frame_in(vrf, inner, parse_ethernet(inner))

    def vlan_in(self, frame: bytes, eth: Ethernet) -> None:
        assert eth.vlan is not None
        vrf_id = self.t.vlans.get(eth.vlan)
        vrf = self.t.vrfs.get(vrf_id) if vrf_id is not None else None
        if vrf is None:
            return self.drop(Drop.INVALID_VLAN)
        if self.rec is not None:
            self.rec("vlan", f"vlan {eth.vlan} -> vrf {vrf.name}")
        inner = frame[:12] + frame[16:]
        if eth.dst == self.t.fabric.mac and eth.ethertype == ETH_P_IP:
            ip = parse_ipv4(inner, ETH_LEN)
            return self.route(vrf, inner[ETH_LEN : ETH_LEN + ip.total_length], ip)
        return self.frame_in(vrf, inner, parse_ethernet(inner))

    def frame_in(self, vrf: Vrf, frame: bytes, eth: Ethernet) -> None:
        """An Ethernet frame decapsulated into `vrf`: routed or bridged by the VRF's mode."""
        if eth.ethertype == ETH_P_IP and (
            vrf.mode is Mode.L3
            or (vrf.mode is Mode.L2_L3 and vrf.ip_fib.lookup(parse_ipv4(frame, eth.offset).dst))
        ):
            ip = parse_ipv4(frame, eth.offset)
            return self.route(vrf, frame[eth.offset : eth.offset + ip.total_length], ip)
        if vrf.mode is Mode.L3:
            return self.drop(Drop.L3_NON_IP)
        return self.bridge(vrf, frame, eth)

    def underlay_arp(self, frame: bytes, eth: Ethernet) -> None:
        t = self.t
        arp = parse_arp(frame, eth.offset)
        if arp.tpa != t.fabric.ip:
            return self.drop(Drop.ARP_IGNORED)
        t.neighbors[arp.spa] = arp.sha
        if self.rec is not None:
            self.rec("underlay_arp", f"{ip_to_str(arp.spa)} is-at {arp.sha.hex(':')}")
        for rest in t.pending.pop(arp.spa, []):
            self.emit(t.fabric.vif, arp.sha + t.fabric.mac + rest)
        if arp.op == ARP_REQUEST and not t.fabric.kernel_routed:  # else the kernel answers
            self.emit(t.fabric.vif, replies.arp_reply(arp, t.fabric.mac))
        return None

    # -- from the agent ----------------------------------------------------------------
    def from_agent(self, data: bytes) -> None:
        header, frame = parse_punt(data)
        target = self.t.vifs.get(header.vif)
        # everything on the agent vif carries an agent header, so nothing is injected back to it
        if (
            header.reason != Punt.INJECT
            or target is None
            or target.kind is VifKind.AGENT
            or len(frame) < ETH_LEN
        ):
            return self.drop(Drop.FROM_AGENT_INVALID)
        if self.rec is not None:
            self.rec("agent", f"inject to vif {header.vif}")
        return self.emit(header.vif, frame)
