"""The forwarding pipeline: a function of (tables, frame, input vif, now) returning what to emit.

It does no I/O; the only state it changes is in `Tables` (flows, counters, underlay neighbours),
as a forwarding plane does. The same code runs in the lab, the simulator and `openvpc trace`.
The stages live in `openvpc.vrouter.stages`; here are the entry points and the pass they share.
"""

import struct
from typing import Protocol

from openvpc.model.forwarding import FlowKey, NatTuple
from openvpc.packet.errors import Malformed
from openvpc.packet.ipv4 import PROTO_UDP, IPv4, build_ipv4
from openvpc.packet.tunnel import UDP_PORT_MPLS, UDP_PORT_VXLAN
from openvpc.vrouter.drops import Drop
from openvpc.vrouter.flow import Flow, FlowAction
from openvpc.vrouter.limits import Source
from openvpc.vrouter.nexthop import TunnelNH
from openvpc.vrouter.punt import Punt, build_punt
from openvpc.vrouter.stages import IP_TYPE, agent, fabric, ingress, route
from openvpc.vrouter.tables import Tables, Vif, VifKind, Vrf
from openvpc.vrouter.trace import Recorder, Stage

Emit = tuple[int, bytes]

_PORTS = struct.Struct("!HH")


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
    run = Pass(tables, vif, frame, now, recorder)
    try:
        if vif.kind is VifKind.VIRTUAL:
            ingress.from_vm(run, frame)
        elif vif.kind is VifKind.FABRIC:
            fabric.from_fabric(run, frame)
        else:
            agent.from_agent(run, frame)
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
    run = Pass(tables, vif, data, now, recorder)
    try:
        fabric.overlay_in(run, kind, data)
    except Malformed as e:
        run.drop(e.reason)
        return []
    return _count_out(tables, run)


def _count_out(tables: Tables, run: "Pass") -> list[Emit]:
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
    return tables.fabric.mac + tables.fabric.mac + IP_TYPE + ip


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


class Steps(Protocol):
    """The steps a pass may take its own way: `PerFrame` takes them for one frame; the
    super-frame path (superframe.py) composes steps that keep a super-frame whole."""

    def drop(self, run: "Pass", reason: str) -> None: ...

    def punt(self, run: "Pass", reason: Punt, vrf: int, frame: bytes, paid: bool) -> None: ...

    def emit(self, run: "Pass", vif_id: int, data: bytes) -> None: ...

    def flow_stage(
        self, run: "Pass", vrf: Vrf, packet: bytes, ip: IPv4, ports: tuple[int, int], nh: int
    ) -> NatTuple | None: ...

    def touch(self, run: "Pass", flow: Flow, size: int, tcp_flags: int) -> None: ...

    def fit(self, run: "Pass", packet: bytes, ip: IPv4, mtu: int, vrf: Vrf) -> list[bytes]: ...

    def tunnel(self, run: "Pass", nh: TunnelNH, label: int, payload: bytes, sport: int) -> None: ...

    def to_node(self, run: "Pass", node_ip: bytes, rest: bytes) -> None: ...

    def rewrites(self, run: "Pass") -> None: ...


class PerFrame:
    """The steps of one frame: drops are counted, punts and frames emitted, and the flow
    stage, MTU, tunnel and underlay are the stages' own."""

    __slots__ = ()

    def drop(self, run: "Pass", reason: str) -> None:
        run.t.count_drop(reason, run.in_vif)
        if run.rec is not None:
            run.rec(Stage.DROP, reason)

    def punt(self, run: "Pass", reason: Punt, vrf: int, frame: bytes, paid: bool) -> None:
        if run.t.agent_vif is None:
            run.drop(Drop.AGENT_ABSENT)
            return
        if not paid and not run.may_punt(vrf):
            return
        if run.rec is not None:
            run.rec(Stage.PUNT, f"{reason.name.lower()} to agent")
        run.emit(run.t.agent_vif, build_punt(reason, run.in_vif.id, vrf, frame))

    def emit(self, run: "Pass", vif_id: int, data: bytes) -> None:
        if run.rec is not None:
            run.rec(Stage.TX, f"vif {vif_id} ({len(data)} bytes)")
        run.out.append((vif_id, data))

    def flow_stage(
        self, run: "Pass", vrf: Vrf, packet: bytes, ip: IPv4, ports: tuple[int, int], nh: int
    ) -> NatTuple | None:
        return route.flow_stage(run, vrf, packet, ip, ports, nh)

    def touch(self, run: "Pass", flow: Flow, size: int, tcp_flags: int) -> None:
        run.t.flows.touch(flow, run.now, size, tcp_flags)

    def fit(self, run: "Pass", packet: bytes, ip: IPv4, mtu: int, vrf: Vrf) -> list[bytes]:
        return route.fit(run, packet, ip, mtu, vrf)

    def tunnel(self, run: "Pass", nh: TunnelNH, label: int, payload: bytes, sport: int) -> None:
        fabric.tunnel(run, nh, label, payload, sport)

    def to_node(self, run: "Pass", node_ip: bytes, rest: bytes) -> None:
        fabric.to_node(run, node_ip, rest)

    def rewrites(self, run: "Pass") -> None:
        pass  # one frame: its checksums are recomputed whole


PER_FRAME = PerFrame()


class Pass:
    """One frame's way through the pipeline, shared by its stages; collects what to emit.
    The steps a super-frame takes its own way go through `steps`.

    Every recorder call sits under `if self.rec is not None` so untraced frames format nothing.
    """

    __slots__ = ("fabric_in", "frame", "in_vif", "now", "out", "overlay", "rec", "steps", "t")

    def __init__(
        self,
        tables: Tables,
        vif: Vif,
        frame: bytes,
        now: float,
        rec: Recorder | None,
        steps: Steps = PER_FRAME,
    ) -> None:
        self.t = tables
        self.in_vif = vif
        self.frame = frame
        # from the fabric, nothing goes back to the fabric, except what a gateway routes
        self.fabric_in = vif.kind is VifKind.FABRIC
        self.now = now
        self.rec = rec
        self.steps = steps
        self.out: list[Emit] = []
        self.overlay: str | None = None  # set by process_overlay: `frame` has no outer headers

    def source(self, vrf: int) -> Source:
        """Who pays for a punt or a HOLD entry: the VM's vif, or the fabric per VRF."""
        return self.in_vif.id, vrf

    def may_punt(self, vrf: int) -> bool:
        """Take a token from the source's punt bucket, or count the drop."""
        if self.t.punts.allow(self.source(vrf), self.now):
            return True
        self.drop(Drop.PUNT_RATE_LIMITED)
        return False

    def held(self) -> tuple[bytes, int]:
        """What a flow holds to run again later: always a whole frame with its input vif."""
        if self.overlay is not None:
            return _outer_frame(self.t, self.overlay, self.frame), self.in_vif.id
        return self.frame, self.in_vif.id

    # -- the steps, taken by `steps` -------------------------------------------------------
    def drop(self, reason: str) -> None:
        self.steps.drop(self, reason)

    def punt(self, reason: Punt, vrf: int, frame: bytes, paid: bool = False) -> None:
        """Send `frame` to the agent; `paid` when the caller took the token already."""
        self.steps.punt(self, reason, vrf, frame, paid)

    def emit(self, vif_id: int, data: bytes) -> None:
        self.steps.emit(self, vif_id, data)

    def flow_stage(
        self, vrf: Vrf, packet: bytes, ip: IPv4, ports: tuple[int, int], nh: int
    ) -> NatTuple | None:
        """The flow table (`nh`: where the route goes): None when the packet is held or
        dropped, else its tuple after NAT."""
        return self.steps.flow_stage(self, vrf, packet, ip, ports, nh)

    def touch(self, flow: Flow, size: int, tcp_flags: int) -> None:
        """Count a packet on the flow it hit (a super-frame counts each of its segments)."""
        self.steps.touch(self, flow, size, tcp_flags)

    def fit(self, packet: bytes, ip: IPv4, mtu: int, vrf: Vrf) -> list[bytes]:
        """The packet as pieces of at most `mtu` (see `route.fit`)."""
        return self.steps.fit(self, packet, ip, mtu, vrf)

    def tunnel(self, nh: TunnelNH, label: int, payload: bytes, sport: int) -> None:
        self.steps.tunnel(self, nh, label, payload, sport)

    def to_node(self, node_ip: bytes, rest: bytes) -> None:
        self.steps.to_node(self, node_ip, rest)

    def rewrites(self) -> None:
        """The packet's addresses are about to be rewritten (a NAT next hop)."""
        self.steps.rewrites(self)
