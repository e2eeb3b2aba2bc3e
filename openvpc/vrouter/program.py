"""Control-channel objects (the `nodeconfig` dataclasses) applied to a vRouter's `Tables`. Pure.

`Programmer` keeps the objects exactly as set, so `dump()` is what the agent diffs against, and
maps next-hop keys to the integer ids the tables use.
"""

import ipaddress
from collections.abc import Iterable

from openvpc.model.forwarding import (
    AGENT_VIF,
    FIRST_VM_VIF,
    LINK_LOCAL_GATEWAY,
    VROUTER_MAC,
    ArpMode,
    Encap,
    Mode,
)
from openvpc.model.nodeconfig import (
    KIND_CLASS,
    KIND_ORDER,
    MacRouteConfig,
    NextHopConfig,
    ObjectKind,
    PortConfig,
    RouteConfig,
    VrfConfig,
    VrouterObject,
    object_key,
    object_kind,
)
from openvpc.packet.ethernet import mac_from_str
from openvpc.vrouter.limits import DEFAULT_LIMITS, NodeLimits
from openvpc.vrouter.nexthop import (
    DISCARD_NH_ID,
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
from openvpc.vrouter.tables import Fabric, LabelEntry, Route, Tables, Vif, VifKind, Vrf

Ref = tuple[ObjectKind, str]


def _ip(text: str, what: str) -> bytes:
    try:
        return ipaddress.IPv4Address(text).packed
    except ValueError as e:
        raise ValueError(f"{what}: not an IPv4 address: {text!r}") from e


def _host(text: str, what: str) -> bytes:
    """An address, written bare or as a /32."""
    try:
        net = ipaddress.IPv4Network(text)
    except ValueError as e:
        raise ValueError(f"{what}: not an IPv4 address: {text!r}") from e
    if net.prefixlen != 32:
        raise ValueError(f"{what}: expected one address, got the prefix {text!r}")
    return net.network_address.packed


def _prefix(text: str) -> tuple[bytes, int]:
    try:
        net = ipaddress.IPv4Network(text)
    except ValueError as e:
        raise ValueError(f"route: not an IPv4 prefix (or host bits set): {text!r}") from e
    return net.network_address.packed, net.prefixlen


def _mac(text: str, what: str) -> bytes:
    try:
        return mac_from_str(text)
    except ValueError as e:
        raise ValueError(f"{what}: not a MAC address: {text!r}") from e


def _label(value: int | None, what: str) -> None:
    if value is not None and not 0 <= value <= 0xFFFFFF:
        raise ValueError(f"{what}: label/VNI/VLAN out of range: {value}")


class Programmer:
    """Applies set/delete of control-channel objects to `tables`; remembers what was set.

    A next-hop key keeps its integer id for the life of the programmer, so setting the key again
    updates the next hop in place and every route using it follows.
    """

    def __init__(self, tables: Tables) -> None:
        self.tables = tables
        self.generation: int | None = None
        self.objects: dict[Ref, VrouterObject] = {}
        self.nh_ids: dict[str, int] = {}
        self._next_nh = DISCARD_NH_ID + 1

    # -- the control channel's view ------------------------------------------------------
    def set(self, kind: ObjectKind, obj: VrouterObject) -> None:
        """Install or replace `obj`; ValueError (and nothing changed) when it cannot be."""
        if object_kind(obj) != kind:
            raise ValueError(f"object is a {object_kind(obj)}, not a {kind}")
        ref = (kind, object_key(obj))
        if isinstance(obj, VrfConfig):
            self._set_vrf(obj)
        elif isinstance(obj, NextHopConfig):
            self._set_nexthop(obj)
        elif isinstance(obj, PortConfig):
            self._set_port(obj)
        elif isinstance(obj, RouteConfig):
            self._set_route(obj)
        else:
            self._set_mac_route(obj)
        self.objects[ref] = obj

    def delete(self, kind: ObjectKind, key: str) -> bool:
        """Remove the object set under (kind, key); False if there was none (not an error)."""
        if kind not in KIND_CLASS:
            raise ValueError(f"unknown object kind {kind!r}")
        obj = self.objects.pop((kind, key), None)
        if obj is None:
            return False
        t = self.tables
        if isinstance(obj, VrfConfig):
            self._unmap_vrf(obj)
            t.delete_vrf(obj.id)
            # its FIBs went with it: forget the routes that lived there
            for ref, other in list(self.objects.items()):
                if isinstance(other, RouteConfig | MacRouteConfig) and other.vrf == obj.id:
                    del self.objects[ref]
        elif isinstance(obj, NextHopConfig):
            t.delete_nexthop(self.nh_ids[obj.key])
        elif isinstance(obj, PortConfig):
            t.delete_vif(obj.vif)
        elif isinstance(obj, RouteConfig):
            if obj.vrf in t.vrfs:
                t.delete_route(obj.vrf, *_prefix(obj.prefix))
        elif obj.vrf in t.vrfs:
            t.delete_mac_route(obj.vrf, _mac(obj.mac, "mac_route"))
        return True

    def dump(self) -> list[VrouterObject]:
        """Every object as set, in write order (kinds in KIND_ORDER)."""
        rank = {kind: i for i, kind in enumerate(KIND_ORDER)}
        refs = sorted(self.objects, key=lambda ref: rank[ref[0]])
        return [self.objects[ref] for ref in refs]

    def get(self, kind: ObjectKind, key: str) -> VrouterObject | None:
        return self.objects.get((kind, key))

    def load(self, objects: Iterable[VrouterObject]) -> None:
        """Set every object, in the order given (write order: see `vrouter_objects`)."""
        for obj in objects:
            self.set(object_kind(obj), obj)

    # -- VRFs --------------------------------------------------------------------------
    def _set_vrf(self, cfg: VrfConfig) -> None:
        t = self.tables
        _label(cfg.vni, "vrf vni")
        for label in (cfg.l3_label, cfg.l2_label):
            if not 0 <= label <= 0xFFFFF:
                raise ValueError(f"vrf {cfg.id}: MPLS label out of range: {label}")
            owner = t.labels.get(label)
            if owner is not None and owner.vrf != cfg.id:
                raise ValueError(f"vrf {cfg.id}: label {label} belongs to vrf {owner.vrf}")
        if cfg.l3_label == cfg.l2_label:
            raise ValueError(f"vrf {cfg.id}: l3_label and l2_label must differ")
        if t.vnis.get(cfg.vni, cfg.id) != cfg.id:
            raise ValueError(f"vrf {cfg.id}: VNI {cfg.vni} belongs to vrf {t.vnis[cfg.vni]}")
        if cfg.vlan is not None:
            if not 1 <= cfg.vlan <= 4094:
                raise ValueError(f"vrf {cfg.id}: VLAN id out of range: {cfg.vlan}")
            if t.vlans.get(cfg.vlan, cfg.id) != cfg.id:
                raise ValueError(
                    f"vrf {cfg.id}: VLAN {cfg.vlan} belongs to vrf {t.vlans[cfg.vlan]}"
                )
        old = self.objects.get(("vrf", str(cfg.id)))
        if isinstance(old, VrfConfig):
            self._unmap_vrf(old)
        vrf = t.vrfs.get(cfg.id)
        if vrf is None:
            vrf = Vrf(cfg.id, cfg.name)
            t.add_vrf(vrf)
        # fields change in place: the FIBs, and the routes in them, stay
        vrf.name = cfg.name
        vrf.mode = Mode(cfg.mode)
        vrf.gateway_mac = VROUTER_MAC
        vrf.arp_mode = ArpMode(cfg.arp_mode)
        vrf.link_local_gateway = LINK_LOCAL_GATEWAY if cfg.link_local_gateway else None
        vrf.decrement_ttl = cfg.decrement_ttl
        t.generation += 1
        t.add_label(cfg.l3_label, LabelEntry(cfg.id))
        t.add_label(cfg.l2_label, LabelEntry(cfg.id, l2=True))
        t.add_vni(cfg.vni, cfg.id)
        if cfg.vlan is not None:
            t.add_vlan(cfg.vlan, cfg.id)

    def _unmap_vrf(self, cfg: VrfConfig) -> None:
        """Remove the labels, VNI and VLAN that still point at `cfg`'s VRF."""
        t = self.tables
        for label in (cfg.l3_label, cfg.l2_label):
            entry = t.labels.get(label)
            if entry is not None and entry.vrf == cfg.id:
                t.delete_label(label)
        if t.vnis.get(cfg.vni) == cfg.id:
            t.delete_vni(cfg.vni)
        if cfg.vlan is not None and t.vlans.get(cfg.vlan) == cfg.id:
            t.delete_vlan(cfg.vlan)

    def _vrf(self, vrf_id: int, what: str) -> None:
        if vrf_id not in self.tables.vrfs:
            raise ValueError(f"{what}: unknown vrf {vrf_id}")

    # -- next hops -----------------------------------------------------------------------
    def nh_id(self, key: str) -> int:
        """The id of a next hop that is set; ValueError otherwise."""
        if ("nh", key) not in self.objects:
            raise ValueError(f"unknown next hop {key!r}")
        return self.nh_ids[key]

    def _set_nexthop(self, cfg: NextHopConfig) -> None:
        nh = self._nexthop(cfg)
        nh_id = self.nh_ids.get(cfg.key)
        if nh_id is None:
            nh_id = self._next_nh
            self._next_nh += 1
            self.nh_ids[cfg.key] = nh_id
        self.tables.add_nexthop(nh_id, nh)

    def _nexthop(self, cfg: NextHopConfig) -> NextHop:
        what = f"next hop {cfg.key!r}"
        if cfg.kind == "encap":
            # the vif may come later (vifs are written after next hops): a dangling vif drops
            if cfg.vif is None or cfg.dst_mac is None:
                raise ValueError(f"{what}: encap needs vif and dst_mac")
            return EncapNH(cfg.vif, _mac(cfg.dst_mac, what), VROUTER_MAC)
        if cfg.kind == "tunnel":
            if cfg.encap is None or cfg.dst_ip is None:
                raise ValueError(f"{what}: tunnel needs encap and dst_ip")
            return TunnelNH(Encap(cfg.encap), _ip(cfg.dst_ip, what))
        if cfg.kind == "composite":
            members = []
            for key, label in cfg.members:
                if key == cfg.key:
                    raise ValueError(f"{what}: a composite cannot contain itself")
                _label(label, what)
                members.append((self.nh_id(key), label))
            return CompositeNH(cfg.ecmp, tuple(members))
        if cfg.kind == "nat":
            if cfg.nat_vrf is None:
                raise ValueError(f"{what}: nat needs nat_vrf")
            table = tuple((_ip(a, what), _ip(b, what)) for a, b in cfg.nat)
            if cfg.nat_gateway and len(table) != 1:
                raise ValueError(f"{what}: a NAT gateway has one private and one public address")
            return NatNH(cfg.nat_side == "dst", cfg.nat_vrf, table, cfg.nat_gateway, cfg.nat_acl)
        simple: dict[str, NextHop] = {
            "receive": ReceiveNH(),
            "l2receive": L2ReceiveNH(),
            "discard": DiscardNH(),
            "resolve": ResolveNH(),
        }
        if cfg.kind not in simple:
            raise ValueError(f"{what}: unknown kind {cfg.kind!r}")
        return simple[cfg.kind]

    # -- vifs ------------------------------------------------------------------------------
    def _set_port(self, cfg: PortConfig) -> None:
        what = f"vif {cfg.vif}"
        if cfg.vif < FIRST_VM_VIF:
            raise ValueError(f"{what}: VM vifs start at {FIRST_VM_VIF}")
        self._vrf(cfg.vrf, what)
        if not 0 <= cfg.prefix_len <= 32:
            raise ValueError(f"{what}: bad prefix length {cfg.prefix_len}")
        if not 68 <= cfg.mtu <= 65535:
            raise ValueError(f"{what}: bad MTU {cfg.mtu}")
        vif = Vif(
            cfg.vif,
            VifKind.VIRTUAL,
            cfg.name,
            vrf=cfg.vrf,
            mac=_mac(cfg.mac, what),
            ip=_ip(cfg.ip, what),
            prefix_len=cfg.prefix_len,
            gateway_ip=_ip(cfg.gateway, what),
            mtu=cfg.mtu,
            policy=cfg.policy,
            agent_decides=cfg.agent_decides,
            source_check=cfg.source_check,
            allowed_ips=frozenset(_host(a, what) for a in cfg.allowed_ips),
            security=cfg.security_groups,
            acl=cfg.network_acl,
        )
        old = self.tables.vifs.get(cfg.vif)
        if old is not None:
            if old.kind is not VifKind.VIRTUAL:
                raise ValueError(f"{what}: taken by the {old.kind} vif")
            vif.stats = old.stats  # a changed port keeps its counters
            if (old.security, old.acl) != (vif.security, vif.acl):
                self.tables.flows.forget_denied(old.vrf)
        self.tables.add_vif(vif)

    # -- routes ------------------------------------------------------------------------------
    def _set_route(self, cfg: RouteConfig) -> None:
        what = f"route {cfg.vrf}/{cfg.prefix}"
        self._vrf(cfg.vrf, what)
        prefix, plen = _prefix(cfg.prefix)
        _label(cfg.label, what)
        mac = None if cfg.mac is None else _mac(cfg.mac, what)
        route = Route(self.nh_id(cfg.nh), cfg.label, mac)
        self.tables.add_route(cfg.vrf, prefix, plen, route)

    def _set_mac_route(self, cfg: MacRouteConfig) -> None:
        what = f"mac_route {cfg.vrf}/{cfg.mac}"
        self._vrf(cfg.vrf, what)
        _label(cfg.label, what)
        route = Route(self.nh_id(cfg.nh), cfg.label)
        self.tables.add_mac_route(cfg.vrf, _mac(cfg.mac, what), route)


def build_tables(
    fabric: Fabric,
    objects: Iterable[VrouterObject],
    *,
    agent_vif: bool = True,
    limits: NodeLimits = DEFAULT_LIMITS,
) -> Programmer:
    """Tables for `fabric` (with the agent vif unless told not to), programmed with `objects`.

    Returns the programmer: `.tables` is the result, `.nh_ids` the next-hop ids it chose.
    """
    tables = Tables(fabric, limits)
    if agent_vif:
        tables.add_vif(Vif(AGENT_VIF, VifKind.AGENT, "agent"))
    programmer = Programmer(tables)
    programmer.load(objects)
    return programmer
