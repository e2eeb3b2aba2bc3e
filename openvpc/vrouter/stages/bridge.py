"""The bridge stage: an Ethernet frame in a VRF. The MAC FIB, the L2 next hops (a local vif,
a tunnel, the gateway MAC that routes, ECMP) and replication to every member of a flood list."""

from __future__ import annotations

from typing import TYPE_CHECKING

from openvpc.model.forwarding import Encap, overhead
from openvpc.packet.ethernet import (
    BROADCAST,
    ETH_LEN,
    ETH_P_8021Q,
    ETH_P_IP,
    Ethernet,
    is_multicast,
)
from openvpc.packet.ipv4 import parse_ipv4
from openvpc.packet.l4 import l4_ports
from openvpc.vrouter.drops import Drop
from openvpc.vrouter.encap import entropy_port, entropy_port_l2
from openvpc.vrouter.nexthop import (
    CompositeNH,
    DiscardNH,
    EncapNH,
    L2ReceiveNH,
    ResolveNH,
    TunnelNH,
)
from openvpc.vrouter.punt import Punt
from openvpc.vrouter.stages import MAX_DEPTH, route
from openvpc.vrouter.tables import Vrf
from openvpc.vrouter.trace import Stage

if TYPE_CHECKING:
    from openvpc.vrouter.pipeline import Pass


def bridge(run: Pass, vrf: Vrf, frame: bytes, eth: Ethernet, depth: int = 0) -> None:
    """Switch an Ethernet frame by destination MAC in `vrf`'s MAC FIB."""
    key = BROADCAST if is_multicast(eth.dst) else eth.dst
    found = vrf.mac_fib.get(key)
    if run.rec is not None:
        run.rec(
            Stage.MAC_FIB,
            f"{vrf.name}: {eth.dst.hex(':')} -> "
            + ("no route" if found is None else f"nh {found.nh} label {found.label}"),
        )
    if found is None:
        return run.drop(Drop.NO_L2_ROUTE)
    l2_nexthop(run, vrf, found.nh, found.label, frame, eth, depth, replicating=False)


def l2_nexthop(
    run: Pass,
    vrf: Vrf,
    nh_id: int,
    label: int | None,
    frame: bytes,
    eth: Ethernet,
    depth: int,
    replicating: bool,
) -> None:
    nh = run.t.nexthops.get(nh_id)
    if run.rec is not None:
        run.rec(Stage.NEXTHOP, f"{nh_id} {type(nh).__name__}")
    if nh is None or depth > MAX_DEPTH:
        return run.drop(Drop.INVALID_NH)
    if isinstance(nh, EncapNH):
        if nh.vif == run.in_vif.id:
            if not replicating:
                run.drop(Drop.SAME_VIF)
            return None
        if nh.vif not in run.t.vifs:
            return run.drop(Drop.INVALID_NH)
        return run.emit(nh.vif, frame)
    if isinstance(nh, TunnelNH):
        if run.fabric_in:
            if not replicating:
                run.drop(Drop.NO_TRANSIT)
            return None
        if label is None:
            return run.drop(Drop.INVALID_NH)
        return tunnel_l2(run, vrf, nh, label, frame, eth)
    if isinstance(nh, L2ReceiveNH):
        if eth.ethertype != ETH_P_IP:
            return run.drop(Drop.RECEIVE_UNHANDLED)
        ip = parse_ipv4(frame, eth.offset)
        if run.rec is not None:
            run.rec(Stage.L2_RECEIVE, "gateway MAC: routed")
        # the gateway routes on behalf of the network, so it may send back to the fabric
        run.fabric_in = False
        packet = frame[eth.offset : eth.offset + ip.total_length]
        return route.route(run, vrf, packet, ip, depth + 1)
    if isinstance(nh, CompositeNH):
        members = nh.members
        if nh.ecmp and members:
            members = (members[entropy_port_l2(vrf.id, frame) % len(members)],)
        elif not nh.ecmp and not replicating and all(is_source(run, m) for m, _ in members):
            # e.g. a VM alone in its network: no copy to make, so count the original
            return run.drop(Drop.REPLICATION_EMPTY)
        if not members:
            return run.drop(Drop.INVALID_NH)
        for member, member_label in members:
            l2_nexthop(run, vrf, member, member_label, frame, eth, depth + 1, not nh.ecmp)
        return None
    if isinstance(nh, ResolveNH):
        return run.punt(Punt.RESOLVE, vrf.id, frame)
    return run.drop(Drop.DISCARD if isinstance(nh, DiscardNH) else Drop.INVALID_NH)


def is_source(run: Pass, nh_id: int) -> bool:
    """Whether a replica to this next hop would go back where the frame came from."""
    nh = run.t.nexthops.get(nh_id)
    if isinstance(nh, EncapNH):
        return nh.vif == run.in_vif.id
    return isinstance(nh, TunnelNH) and run.fabric_in


def tunnel_l2(run: Pass, vrf: Vrf, nh: TunnelNH, label: int, frame: bytes, eth: Ethernet) -> None:
    if nh.encap is Encap.VLAN:
        tag = ETH_P_8021Q.to_bytes(2, "big") + label.to_bytes(2, "big")
        if run.rec is not None:
            run.rec(Stage.ENCAP, f"vlan {label} (bridged)")
        return run.emit(run.t.fabric.vif, frame[:12] + tag + frame[12:])
    if eth.ethertype == ETH_P_IP:
        ip = parse_ipv4(frame, eth.offset)
        packet = frame[eth.offset : eth.offset + ip.total_length]
        ports = l4_ports(packet, ip)
        sport = entropy_port(vrf.id, ip.proto, ip.src, ip.dst, *ports)
        mtu = run.t.fabric.mtu - overhead(nh.encap, True)
        header = frame[: eth.offset]
        for piece in run.fit(packet, ip, mtu, vrf):
            run.tunnel(nh, label, header + piece, sport)
        return None
    if len(frame) - ETH_LEN + overhead(nh.encap, True) > run.t.fabric.mtu:
        return run.drop(Drop.FRAG_NEEDED)
    run.tunnel(nh, label, frame, entropy_port_l2(vrf.id, frame))
    return None
