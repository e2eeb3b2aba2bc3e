"""The vRouter's `Tables` as BPF map contents (a MapImage), a flow as its ov_flows entry, and
the difference between two images. Pure: what the programs cannot do the same way as the
Python pipeline is encoded so that they send it up (NH_SLOW), never so that they differ."""

from collections.abc import Mapping
from dataclasses import dataclass, field

from openvpc.model.forwarding import ArpMode, Encap, FlowKey, Mode
from openvpc.vrouter.ebpf import layout as L
from openvpc.vrouter.ebpf.rulesets import Names
from openvpc.vrouter.flow import Flow, FlowAction
from openvpc.vrouter.nexthop import (
    CompositeNH,
    DiscardNH,
    EncapNH,
    L2ReceiveNH,
    NatNH,
    NextHop,
    ReceiveNH,
    ResolveNH,
    TunnelNH,
)
from openvpc.vrouter.tables import Route, Tables, Vif, VifKind, Vrf

# map name -> key bytes -> value bytes
MapImage = dict[str, dict[bytes, bytes]]

TABLE_MAPS: tuple[str, ...] = (
    L.MAP_VIFS,
    L.MAP_IFINDEX,
    L.MAP_ALLOWED_IPS,
    L.MAP_VRFS,
    L.MAP_IP_FIB,
    L.MAP_MAC_FIB,
    L.MAP_NEXTHOPS,
    L.MAP_LABELS,
    L.MAP_VNIS,
    L.MAP_VLANS,
    L.MAP_NODE,
    L.MAP_RULES,
    L.MAP_RULE_CHUNKS,
)
# written before the other maps (a chunk before the entry naming it, a set before the vifs
# naming it) and deleted after them, in the reverse order
RULE_MAPS: tuple[str, ...] = (L.MAP_RULE_CHUNKS, L.MAP_RULES)

_MODE = {Mode.L3: L.VrfMode.L3, Mode.L2: L.VrfMode.L2, Mode.L2_L3: L.VrfMode.L2_L3}
_ARP_MODE = {ArpMode.PROXY: L.ArpMode.PROXY, ArpMode.SINGLE_MAC: L.ArpMode.SINGLE_MAC}
_ENCAP = {
    Encap.VXLAN: L.EncapKind.VXLAN,
    Encap.MPLSOUDP: L.EncapKind.MPLSOUDP,
    Encap.MPLSOGRE: L.EncapKind.MPLSOGRE,
    Encap.VLAN: L.EncapKind.VLAN,
}
_ACTION = {
    FlowAction.FORWARD: L.FlowActionKind.FORWARD,
    FlowAction.DROP: L.FlowActionKind.DROP,
    FlowAction.NAT: L.FlowActionKind.NAT,
}
_PROTO_ICMP = 1
_TRUE = b"\x01"


@dataclass(frozen=True, slots=True)
class Device:
    """How a VM's vif is attached on this node: its node-side device, and whether that is a
    veth (delivered to with bpf_redirect_peer) rather than a TAP."""

    ifindex: int
    peer: bool


@dataclass(slots=True)
class MapDiff:
    """What to write into one map and what to delete from it."""

    update: dict[bytes, bytes] = field(default_factory=dict)
    delete: list[bytes] = field(default_factory=list)


def encode_tables(
    tables: Tables,
    devices: Mapping[int, Device],
    pkt0_ifindex: int,
    fabric_ifindex: int,
    names: Names | None = None,
) -> MapImage:
    """Every table map's contents for `tables`; `devices` by vif id (a VM vif without one is
    not attached: deliveries to it go up). ValueError for a vif id beyond MAX_VIFS. `names`:
    the rule set and `by` ids so far (the shell keeps them across syncs; it learns the sets
    used now)."""
    names = Names() if names is None else names
    names.begin()
    image: MapImage = {name: {} for name in TABLE_MAPS}
    for vif in tables.vifs.values():
        if vif.kind is VifKind.AGENT:
            continue  # the agent is reached through the slow path (ov_node.agent)
        if not 0 <= vif.id < L.MAX_VIFS:
            raise ValueError(f"vif {vif.id}: the fast path indexes vifs below {L.MAX_VIFS}")
        if vif.kind is VifKind.FABRIC:
            ifindex, flags = fabric_ifindex, 0
        else:
            device = devices.get(vif.id)
            ifindex = device.ifindex if device is not None else 0
            flags = _vif_flags(vif, device)
        image[L.MAP_VIFS][L.u32(vif.id)] = _vif(vif, ifindex, flags, names).pack()
        if ifindex:
            image[L.MAP_IFINDEX][L.u32(ifindex)] = L.u32(vif.id)
        if vif.kind is VifKind.VIRTUAL:
            for ip in vif.allowed_ips:
                image[L.MAP_ALLOWED_IPS][L.allowed_ip_key(vif.id, ip)] = _TRUE
    for vrf in tables.vrfs.values():
        image[L.MAP_VRFS][L.u32(vrf.id)] = _vrf(vrf).pack()
        for net, plen, route in vrf.ip_fib.items():
            image[L.MAP_IP_FIB][L.fib_key(vrf.id, net, plen)] = _route(route).pack()
        for mac, route in vrf.mac_fib.items():
            image[L.MAP_MAC_FIB][L.mac_key(vrf.id, mac)] = _route(route).pack()
    for nh_id, nh in tables.nexthops.items():
        image[L.MAP_NEXTHOPS][L.u32(nh_id)] = _nexthop(nh, tables).pack()
    for label, entry in tables.labels.items():
        image[L.MAP_LABELS][L.u32(label)] = L.Label(entry.vrf, int(entry.l2)).pack()
    for vni, vrf_id in tables.vnis.items():
        image[L.MAP_VNIS][L.u32(vni)] = L.u32(vrf_id)
    for vlan, vrf_id in tables.vlans.items():
        image[L.MAP_VLANS][L.u32(vlan)] = L.u32(vrf_id)
    limits, fabric = tables.limits, tables.fabric
    node = L.Node(
        punt_rate_milli=round(limits.vif_punt_rate * 1000),
        punt_burst=limits.vif_punt_burst,
        fabric_ifindex=fabric_ifindex,
        fabric_ip=fabric.ip,
        pkt0_ifindex=pkt0_ifindex,
        fabric_mac=fabric.mac,
        fabric_mtu=fabric.mtu,
        agent=int(tables.agent_vif is not None),
    )
    image[L.MAP_NODE][L.u32(0)] = node.pack()
    image.update(names.take_entries())
    return image


def _vif_flags(vif: Vif, device: Device | None) -> int:
    flags = 0
    if vif.policy:
        flags |= L.VIF_POLICY
        if vif.agent_decides:
            flags |= L.VIF_AGENT
    if vif.source_check:
        flags |= L.VIF_SOURCE_CHECK
    if device is not None and device.peer:
        flags |= L.VIF_PEER
    return flags


def _vif(vif: Vif, ifindex: int, flags: int, names: Names) -> L.Vif:
    kind = L.VifKind.FABRIC if vif.kind is VifKind.FABRIC else L.VifKind.VM
    sg_in = sg_out = acl_in = acl_out = acl_net = acl_mask = 0
    if vif.security is not None:
        sg_in, sg_out = names.sg_set(vif.security.ingress), names.sg_set(vif.security.egress)
    if vif.acl is not None:
        acl_in, acl_out = names.acl_set(vif.acl, True), names.acl_set(vif.acl, False)
        acl_net, acl_mask = vif.acl.net, vif.acl.mask
    return L.Vif(
        ifindex=ifindex,
        vrf=vif.vrf,
        ip=vif.ip or L.ZERO4,
        gateway_ip=vif.gateway_ip or L.ZERO4,
        mtu=vif.mtu,
        prefix_len=vif.prefix_len,
        kind=kind,
        flags=flags,
        mac=vif.mac,
        has_ip=int(vif.ip is not None),
        sg_ingress=sg_in,
        sg_egress=sg_out,
        acl_inbound=acl_in,
        acl_outbound=acl_out,
        acl_net=acl_net.to_bytes(4, "big"),
        acl_mask=acl_mask.to_bytes(4, "big"),
    )


def _vrf(vrf: Vrf) -> L.Vrf:
    flags = 0
    if vrf.decrement_ttl:
        flags |= L.VRF_DECREMENT_TTL
    if vrf.unicast_only:
        flags |= L.VRF_UNICAST_ONLY
    return L.Vrf(
        mode=_MODE[vrf.mode],
        arp_mode=_ARP_MODE[vrf.arp_mode],
        flags=flags,
        gateway_mac=vrf.gateway_mac,
        link_local_gateway=vrf.link_local_gateway or L.ZERO4,
    )


def _route(route: Route) -> L.Route:
    return L.Route(
        nh=route.nh,
        label=L.NO_LABEL if route.label is None else route.label,
        mac=route.mac or L.ZERO6,
        has_mac=int(route.mac is not None),
    )


_SLOW = L.Nexthop(L.NhKind.SLOW)


def _nexthop(nh: NextHop, tables: Tables) -> L.Nexthop:
    if isinstance(nh, EncapNH):
        if not 0 <= nh.vif < L.MAX_VIFS:
            return _SLOW
        return L.Nexthop(L.NhKind.ENCAP, vif=nh.vif, dst_mac=nh.dst_mac, src_mac=nh.src_mac)
    if isinstance(nh, TunnelNH):
        return L.Nexthop(L.NhKind.TUNNEL, encap=_ENCAP[nh.encap], dst_ip=nh.dst_ip)
    if isinstance(nh, ReceiveNH):
        return L.Nexthop(L.NhKind.RECEIVE)
    if isinstance(nh, L2ReceiveNH):
        return L.Nexthop(L.NhKind.L2RECEIVE)
    if isinstance(nh, ResolveNH):
        return L.Nexthop(L.NhKind.RESOLVE)
    if isinstance(nh, DiscardNH):
        return L.Nexthop(L.NhKind.DISCARD)
    if isinstance(nh, NatNH):
        return _SLOW  # 1:1 NAT rewrites in the slow path
    return _composite(nh, tables)


def _composite(nh: CompositeNH, tables: Tables) -> L.Nexthop:
    """ECMP of 1..MAX_ECMP members the programs pick from; everything else goes up.

    A member's label replaces the route's in Python, even when it is None (a tunnel member
    then drops); the map's NO_LABEL means "the route's label", so such a composite goes up."""
    if not nh.ecmp or not 1 <= len(nh.members) <= L.MAX_ECMP:
        return _SLOW
    members: list[tuple[int, int]] = []
    for member, label in nh.members:
        if label is None:
            if isinstance(tables.nexthops.get(member), TunnelNH | CompositeNH):
                return _SLOW
            label = L.NO_LABEL
        members.append((member, label))
    return L.Nexthop(L.NhKind.ECMP, members=tuple(members))


def encode_flow_key(key: FlowKey) -> bytes:
    """The ov_flows key of a Python flow key.

    Ports are the packet's bytes: network order, except an ICMP type and code, which the
    programs store as host integers. Python's key cannot tell an echo id both ways (x, x)
    from a type equal to its code; it is read as an echo id, so a (3, 3) error misses the
    fast path and goes up, where Python finds its flow."""
    vrf, proto, src, dst, sport, dport = key
    if proto == _PROTO_ICMP and sport != dport:
        sp, dp = L.U16_HOST.pack(sport), L.U16_HOST.pack(dport)
    else:
        sp, dp = sport.to_bytes(2, "big"), dport.to_bytes(2, "big")
    return L.FlowKey(vrf, src, dst, sp, dp, proto).pack()


def flow_rooms(tables: Tables, seen: dict[int, int]) -> dict[int, L.FlowRoom]:
    """ov_flow_room by key: the table's capacity and each VRF's quota, the flows the table
    holds now, and `seen`, ov_flow_made as read when the fast path's flows were adopted."""
    flows = tables.flows
    quota = flows.capacity if flows.vrf_quota is None else flows.vrf_quota
    rooms = {L.FLOW_ROOM_ALL: L.FlowRoom(flows.capacity, len(flows.flows), 0)}
    for vrf in tables.vrfs:
        rooms[vrf] = L.FlowRoom(quota, flows.per_vrf.get(vrf, 0), 0)
    return {key: room._replace(seen=seen.get(key, 0)) for key, room in rooms.items()}


def decode_flow_key(raw: bytes) -> FlowKey:
    """The Python flow key of an ov_flows key (encode_flow_key's inverse, its ICMP reading
    included)."""
    k = L.FlowKey.unpack(raw)
    if k.proto == _PROTO_ICMP and k.sport != k.dport:
        sport, dport = L.U16_HOST.unpack(k.sport)[0], L.U16_HOST.unpack(k.dport)[0]
    else:
        sport, dport = int.from_bytes(k.sport, "big"), int.from_bytes(k.dport, "big")
    return k.vrf, k.proto, k.src, k.dst, sport, dport


def encode_flow(flow: Flow, names: Names | None = None) -> tuple[bytes, bytes] | None:
    """The ov_flows entry for a decided flow (fast-path counters at zero, what decided it as
    a `names` id, BY_NONE without); None for a HOLD, which only the slow path keeps."""
    action = _ACTION.get(flow.action)
    if action is None:
        return None
    nat_src, nat_dst, nat_sport, nat_dport = flow.nat or (L.ZERO4, L.ZERO4, 0, 0)
    value = L.Flow(
        packets=0,
        nbytes=0,
        last_used=round(flow.last_used * 1e9),
        nat_src=nat_src,
        nat_dst=nat_dst,
        nat_sport=nat_sport,
        nat_dport=nat_dport,
        action=action,
        tcp_flags=0,
        by=L.BY_NONE if names is None else names.by(flow.by),
    )
    return encode_flow_key(flow.key), value.pack()


_RULE_FIELDS = ("sg_ingress", "sg_egress", "acl_inbound", "acl_outbound", "acl_net", "acl_mask")


def rules_changed(before: dict[bytes, bytes], after: dict[bytes, bytes]) -> set[int]:
    """The VRFs (as they were) of the VM vifs whose compiled rules differ between two ov_vifs
    images: program.py forgets their denied flows when a port's rules change."""
    vrfs: set[int] = set()
    for key, old_raw in before.items():
        new_raw = after.get(key)
        if new_raw is None or new_raw == old_raw:
            continue
        old, new = L.Vif.unpack(old_raw), L.Vif.unpack(new_raw)
        if old.kind != L.VifKind.VM or new.kind != L.VifKind.VM:
            continue
        if any(getattr(old, f) != getattr(new, f) for f in _RULE_FIELDS):
            vrfs.add(old.vrf)
    return vrfs


def diff_images(old: MapImage, new: MapImage) -> dict[str, MapDiff]:
    """Per map, the entries to write (new or changed) and the keys to delete. An ARRAY
    map's slot cannot be deleted: it is overwritten with zeros (VIF_NONE for a vif)."""
    diffs: dict[str, MapDiff] = {}
    for name in sorted(set(old) | set(new)):
        before, after = old.get(name, {}), new.get(name, {})
        diff = MapDiff(update={k: v for k, v in after.items() if before.get(k) != v})
        for key, value in before.items():
            if key in after:
                continue
            if name in L.ARRAY_MAPS:
                diff.update[key] = bytes(len(value))
            else:
                diff.delete.append(key)
        if diff.update or diff.delete:
            diffs[name] = diff
    return diffs
