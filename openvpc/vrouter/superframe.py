"""The pipeline for TCP super-frames: one forwarding decision for all the segments of a
super-frame, which is cut into segments only at a tunnel and otherwise leaves whole with its
MSS (for a vnet header). What cannot be decided once for all the segments (a drop, a punt, a
flow miss or hold, NAT, an MTU problem, an unresolved underlay neighbour) goes segment by
segment through `process`, so the outcome always equals that of the segments one by one. Pure.
"""

from collections.abc import Callable, Sequence

from openvpc.model.forwarding import NatTuple
from openvpc.packet.checksum import checksum
from openvpc.packet.errors import Malformed
from openvpc.packet.ethernet import ETH_LEN, ETH_P_IP, ETH_P_MPLS
from openvpc.packet.ipv4 import IPV4_LEN, PROTO_GRE, IPv4, parse_ipv4
from openvpc.packet.tunnel import GRE, GRE_LEN, MPLS_LEN, VXLAN_LEN
from openvpc.vrouter import replies
from openvpc.vrouter.drops import Drop
from openvpc.vrouter.flow import Flow, FlowAction
from openvpc.vrouter.gso import Coalesced, TcpSuper, coalesce, parse_super, parse_tcp4, segment
from openvpc.vrouter.limits import MAX_SEGMENTS, MIN_MSS, max_segments
from openvpc.vrouter.nexthop import TunnelNH
from openvpc.vrouter.pipeline import PER_FRAME, Emit, Pass, process, process_overlay
from openvpc.vrouter.punt import Punt
from openvpc.vrouter.stages import IP_TYPE, fabric, ingress, route
from openvpc.vrouter.tables import Tables, Vif, VifKind, Vrf

# (output vif, frame, mss): a frame with mss > 0 is a super-frame to cut into mss segments
SuperEmit = tuple[int, bytes, int]
_IP_TYPE = ETH_P_IP.to_bytes(2, "big")
_GRE_MPLS = GRE.pack(0, ETH_P_MPLS)  # no checksum, key or sequence number: MPLS follows
_NOT_FRAGMENTED = (b"\x00\x00", b"\x40\x00")  # flags and offset: none, or DF only


class _Split(Exception):
    """The super-frame cannot be forwarded whole: forward its segments one by one."""


class _WholeSteps:
    """The steps of a pass over a super-frame: those that would act per segment raise `_Split`
    before changing any table, flow counters wait for the commit, tunnels cut the frame up.
    The rest are the ordinary steps (`base`)."""

    __slots__ = ("base", "cutting", "ip_len", "largest", "mss", "touched", "whole")

    def __init__(self, sup: TcpSuper, mss: int) -> None:
        self.base = PER_FRAME
        self.mss = mss
        self.ip_len = sup.end - sup.l3  # the same all along: NAT and fragmenting split first
        self.largest = sup.payload - sup.l3 + min(mss, sup.payload_len)
        self.touched: list[Flow] = []
        self.whole: list[SuperEmit] = []
        self.cutting = False

    def drop(self, run: Pass, reason: str) -> None:
        raise _Split

    def punt(self, run: Pass, reason: Punt, vrf: int, frame: bytes, paid: bool) -> None:
        raise _Split

    def emit(self, run: Pass, vif_id: int, data: bytes) -> None:
        self.whole.append((vif_id, data, 0 if self.cutting else self.mss))

    def fit(self, run: Pass, packet: bytes, ip: IPv4, mtu: int, vrf: Vrf) -> list[bytes]:
        if self.largest > mtu:
            raise _Split  # each segment is fragmented or answered with frag-needed
        return [packet]

    def flow_stage(
        self, run: Pass, vrf: Vrf, packet: bytes, ip: IPv4, ports: tuple[int, int], nh: int
    ) -> NatTuple | None:
        flow = run.t.flows.lookup((vrf.id, ip.proto, ip.src, ip.dst, ports[0], ports[1]))
        held = flow.action is FlowAction.HOLD if flow else route.agent_decides(run, nh)
        if held:
            raise _Split  # the flow is made and the packets held one by one
        verdict = self.base.flow_stage(run, vrf, packet, ip, ports, nh)
        if verdict is not None and verdict != (ip.src, ip.dst, *ports):
            raise _Split  # NAT recomputes the checksums a super-frame leaves partial
        return verdict

    def rewrites(self, run: Pass) -> None:
        raise _Split  # NAT recomputes the checksums a super-frame leaves partial

    def touch(self, run: Pass, flow: Flow, size: int, tcp_flags: int) -> None:
        self.touched.append(flow)

    def tunnel(self, run: Pass, nh: TunnelNH, label: int, payload: bytes, sport: int) -> None:
        """Each segment gets the outer header (IP packets and Ethernet frames alike). The
        outer header depends on the length only: the first and the last segment take the
        whole way, the ones between reuse the first one's."""
        sup = parse_tcp4(payload, len(payload) - self.ip_len)
        pieces = segment(payload, self.mss, sup)
        self.cutting = True
        try:
            start = len(self.whole)
            self.base.tunnel(run, nh, label, pieces[0], sport)
            if len(pieces) > 1:
                if len(self.whole) != start + 1:
                    raise _Split  # not one plain frame per segment: no header to reuse
                vif, first, _ = self.whole[-1]
                head = first[: len(first) - len(pieces[0])]
                self.whole.extend((vif, head + piece, 0) for piece in pieces[1:-1])
                self.base.tunnel(run, nh, label, pieces[-1], sport)
        finally:
            self.cutting = False

    def to_node(self, run: Pass, node_ip: bytes, rest: bytes) -> None:
        t = run.t
        if not (t.fabric.kernel_routed and rest[:2] == IP_TYPE):
            gateway = t.underlay.lookup(node_ip)
            if gateway is None or (gateway or node_ip) not in t.neighbors:
                raise _Split  # the first segment would wait for ARP, the next ones queue
        self.base.to_node(run, node_ip, rest)


def process_super(
    tables: Tables, frame: bytes, vif_id: int, mss: int, now: float
) -> list[SuperEmit]:
    """Forward a TCPv4 super-frame received on `vif_id` (a VM's TAP, or the fabric with an
    802.1Q tag) as if its `mss` segments came one by one; a malformed one is counted."""
    vif = tables.vifs.get(vif_id)
    try:
        if mss <= 0:
            raise Malformed(Drop.GSO_SIZE_INVALID)
        sup = parse_super(frame, tagged=vif is not None and vif.kind is VifKind.FABRIC)
    except Malformed as e:
        tables.count_drop(e.reason, vif)
        return []
    refused = gso_refusal(vif, sup, mss)
    if refused is not None:  # before any segment is cut: no work beyond the parse
        tables.count_drop(refused, vif)
        if vif is not None and refused is Drop.GSO_SIZE_INVALID and mss >= MIN_MSS:
            return _too_big(tables, vif, frame, sup, mss)
        return []
    if vif is None or vif.kind is VifKind.AGENT or sup.count(mss) == 1 or sup.end != len(frame):
        return _one_by_one(segment(frame, mss, sup), lambda f: process(tables, f, vif_id, now))
    steps = _WholeSteps(sup, mss)
    run = Pass(tables, vif, frame, now, None, steps)
    try:
        if vif.kind is VifKind.VIRTUAL:
            ingress.from_vm(run, frame)
        else:
            fabric.from_fabric(run, frame)
    except (_Split, Malformed):
        return _one_by_one(segment(frame, mss, sup), lambda f: process(tables, f, vif_id, now))
    return _commit(tables, steps, vif, sup, now)


def gso_refusal(vif: Vif | None, sup: TcpSuper, mss: int) -> Drop | None:
    """Why a super-frame received on `vif` is not to be segmented, or None. From a VM: a
    segment size from the minimum MSS to what the vif's MTU carries, and a bounded count. From
    the fabric (what the kernel coalesced): a bounded count."""
    count = sup.count(mss)
    if vif is not None and vif.kind is VifKind.VIRTUAL:
        if mss < MIN_MSS or sup.payload - sup.l3 + mss > vif.mtu:
            return Drop.GSO_SIZE_INVALID
        if count > max_segments(vif.mtu):
            return Drop.GSO_TOO_MANY_SEGMENTS
    elif count > MAX_SEGMENTS:
        return Drop.GSO_TOO_MANY_SEGMENTS
    return None


def _too_big(tables: Tables, vif: Vif, frame: bytes, sup: TcpSuper, mss: int) -> list[SuperEmit]:
    """One ICMP fragmentation-needed for segments larger than the VM's MTU (with DF), so that a
    guest whose MTU is wrong lowers its MSS instead of losing the connection."""
    vrf = tables.vrfs.get(vif.vrf)
    src = vif.gateway_ip or (vrf.link_local_gateway if vrf is not None else None)
    ip = parse_ipv4(frame, sup.l3, verify=False)
    largest = sup.payload - sup.l3 + min(mss, sup.payload_len)  # its first segment
    if vrf is None or src is None or not ip.df or largest <= vif.mtu:
        return []
    packet = frame[sup.l3 : sup.payload]  # the headers are all the error quotes
    reply = replies.frag_needed(packet, ip, vif.mtu, src, vif.mac, vrf.gateway_mac)
    out = tables.vifs.get(vif.id)
    if out is not None:
        out.stats.tx_packets += 1
        out.stats.tx_bytes += len(reply)
    return [(vif.id, reply, 0)]


def process_overlay_batch(
    tables: Tables, kind: str, payloads: Sequence[bytes], now: float
) -> list[SuperEmit]:
    """Tunnel payloads read together (as for `process_overlay`): consecutive TCP segments of
    one flow are coalesced (GRO) and forwarded once, the rest one by one."""
    if len(payloads) == 1:
        return [(vif, data, 0) for vif, data in process_overlay(tables, kind, payloads[0], now)]
    out: list[SuperEmit] = []
    for group in coalesce(payloads, lambda data: overlay_l3(tables, kind, data)):
        if group.mss:
            out.extend(process_overlay_super(tables, kind, group, now))
        else:
            out.extend(
                (vif, data, 0) for vif, data in process_overlay(tables, kind, group.data, now)
            )
    return out


def gre_payload(tables: Tables, packet: bytes) -> bytes | None:
    """The MPLS payload of a plain GRE packet to this node (the outer IPv4 packet as a raw
    socket reads it), for `process_overlay_batch`; None for anything else, which `process`
    must see whole (options of GRE, fragments, a bad header, another destination)."""
    if len(packet) < IPV4_LEN + GRE_LEN or packet[0] != 0x45 or packet[9] != PROTO_GRE:
        return None
    end = int.from_bytes(packet[2:4], "big")
    if (
        not IPV4_LEN + GRE_LEN <= end <= len(packet)
        or packet[6:8] not in _NOT_FRAGMENTED
        or packet[16:20] != tables.fabric.ip
        or packet[IPV4_LEN : IPV4_LEN + GRE_LEN] != _GRE_MPLS
        or checksum(packet[:IPV4_LEN]) != 0
    ):
        return None
    return packet[IPV4_LEN + GRE_LEN : end]


def overlay_l3(tables: Tables, kind: str, data: bytes) -> int | None:
    """Where the inner IPv4 header of a tunnel payload starts, or None if it carries none."""
    if kind == "vxlan":
        at = VXLAN_LEN + ETH_LEN
    elif kind == "mpls" and len(data) >= MPLS_LEN:
        label = int.from_bytes(data[:3], "big") >> 4
        entry = tables.labels.get(label)
        if entry is None:
            return None
        if not entry.l2:
            return MPLS_LEN
        at = MPLS_LEN + ETH_LEN
    else:
        return None
    return at if data[at - 2 : at] == _IP_TYPE else None


def process_overlay_super(
    tables: Tables, kind: str, group: Coalesced, now: float
) -> list[SuperEmit]:
    """A tunnel payload whose inner TCPv4 packet is the super-frame coalesced from the payloads
    `group.parts`: forwarded once, or part by part."""
    data, mss, parts = group
    l3 = overlay_l3(tables, kind, data)
    if l3 is None:
        return _one_by_one(parts, lambda p: process_overlay(tables, kind, p, now))
    vif = tables.vifs[tables.fabric.vif]
    try:
        sup = parse_tcp4(data, l3)
        steps = _WholeSteps(sup, mss)
        fabric.overlay_in(Pass(tables, vif, data, now, None, steps), kind, data)
    except (_Split, Malformed):
        return _one_by_one(parts, lambda p: process_overlay(tables, kind, p, now))
    return _commit(tables, steps, vif, sup, now)


def _one_by_one(frames: Sequence[bytes], forward: Callable[[bytes], list[Emit]]) -> list[SuperEmit]:
    """The fallback: each segment (or tunnel payload) through the ordinary pipeline."""
    return [(vif, data, 0) for frame in frames for vif, data in forward(frame)]


def _commit(
    tables: Tables, steps: _WholeSteps, vif: Vif, sup: TcpSuper, now: float
) -> list[SuperEmit]:
    """Count what the segments would have counted: receive, flows, transmit."""
    mss = steps.mss
    count = sup.count(mss)
    vif.stats.rx_packets += count
    vif.stats.rx_bytes += count * sup.payload + sup.payload_len
    for flow in steps.touched:
        # the segments' flags together are the super-frame's (cut into two or more)
        tables.flows.touch(flow, now, sup.packet_bytes(mss), sup.flags)
        flow.packets += count - 1
    for out_vif, data, out_mss in steps.whole:
        out = tables.vifs.get(out_vif)
        if out is None:
            continue
        if out_mss:
            out.stats.tx_packets += count
            out.stats.tx_bytes += count * (len(data) - sup.payload_len) + sup.payload_len
        else:
            out.stats.tx_packets += 1
            out.stats.tx_bytes += len(data)
    return steps.whole
