"""What the compiler produces for one compute node and the agent programs into its vRouter.

Addresses are text ("10.0.1.5", "02:00:00:00:00:01", "10.0.1.0/24") so that a NodeConfig reads
well as golden text. Next hops are named by a stable string key; the vRouter maps keys to its own
integer ids. Every object is keyed (see `object_key`) so the agent can diff desired state against
what the vRouter dumps and write only the difference.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from openvpc.model.codec import from_dict
from openvpc.model.rules import NetworkAclConfig, PortSecurity

Mode = Literal["l3", "l2", "l2_l3"]
EncapName = Literal["vxlan", "mplsoudp", "mplsogre", "vlan"]
NextHopKind = Literal[
    "encap", "tunnel", "receive", "l2receive", "discard", "resolve", "composite", "nat"
]
NatSide = Literal["src", "dst"]


@dataclass(frozen=True, slots=True)
class VrfConfig:
    """A routing instance on this node: one per (VPC, route table) that has a VM here."""

    id: int  # this node's VRF id, stable across generations (flows are keyed by it)
    name: str  # "tenant/vpc-name/rtb-id": for dumps and traces
    mode: Mode
    encap: EncapName
    vni: int  # global per routing instance; the VXLAN VNI
    vlan: int | None  # global per routing instance when encap is vlan
    l3_label: int  # MPLS labels this node allocated for the instance (IP inside)
    l2_label: int  # ... and Ethernet inside
    arp_mode: Literal["proxy", "single_mac"] = "proxy"
    link_local_gateway: bool = False
    decrement_ttl: bool = False


@dataclass(frozen=True, slots=True)
class NextHopConfig:
    """A next hop. Fields used depend on `kind`; members are (next hop key, label or None)."""

    key: str
    kind: NextHopKind
    vif: int | None = None  # encap
    dst_mac: str | None = None  # encap
    encap: EncapName | None = None  # tunnel
    dst_ip: str | None = None  # tunnel: the remote node's fabric address
    ecmp: bool = False  # composite: ECMP (True) or replication (False)
    members: tuple[tuple[str, int | None], ...] = ()
    # nat: 1:1 stateless translation (docs/internet.md): the `nat_side` address found in
    # `nat` (pairs: from, to) is rewritten and the packet continues in VRF `nat_vrf`
    nat: tuple[tuple[str, str], ...] = ()
    nat_side: NatSide = "src"
    nat_vrf: int | None = None
    # a NAT gateway's stateful source NAT (docs/internet.md) instead: `nat` holds one pair,
    # its private address and its Elastic IP; outbound ("src") continues in `nat_vrf`,
    # inbound ("dst") in the VRF each translation came from
    nat_gateway: str = ""
    nat_acl: NetworkAclConfig | None = None  # the NAT gateway's subnet's network ACL


@dataclass(frozen=True, slots=True)
class RouteConfig:
    """An IP FIB entry in a VRF; `label` is the MPLS label, VNI or VLAN id for a tunnel."""

    vrf: int
    prefix: str  # "10.0.1.5/32"
    nh: str
    label: int | None = None
    mac: str | None = None  # the MAC the ARP proxy answers for this address


@dataclass(frozen=True, slots=True)
class MacRouteConfig:
    """A MAC FIB entry in a VRF (l2 and l2_l3 modes, broadcast, the gateway MAC)."""

    vrf: int
    mac: str
    nh: str
    label: int | None = None


@dataclass(frozen=True, slots=True)
class PortConfig:
    """A VM interface plugged into this node's vRouter, and what the agent's proxies serve it.
    Where it is: `ifname` in namespace `netns` (the lab's VM: a TAP, or with the eBPF datapath
    the VM end of a veth whose node end is `vifnames.node_side_name`). With `netns` ""
    (`vifnames.NODE_NETNS`) `ifname` is a device in the node's own namespace, e.g. a TAP whose
    fd QEMU holds, served there directly."""

    vif: int  # this node's vif id, stable across generations
    interface_id: str  # "eni-..."
    instance_id: str  # "i-..."
    name: str  # the VM's configured name
    netns: str  # the network namespace the VM's interface lives in; "": the node's own
    ifname: str  # the interface's name inside that namespace
    vrf: int
    mac: str
    ip: str
    prefix_len: int
    gateway: str  # the subnet's base+1 (or the link-local gateway)
    dns: str  # the VPC's DNS server: VPC base+2
    domain: str  # DHCP option 15 and the DNS search domain
    hostname: str  # DHCP option 12, e.g. "ip-10-0-1-5"
    mtu: int  # overlay MTU: DHCP option 26
    policy: bool = True  # IP packets from or to it go through the flow table
    # who decides a new flow's first packet: the agent (held until it answers), or, when False,
    # the vRouter itself from the port's rules, fast path included (no round trip)
    agent_decides: bool = True
    source_check: bool = True
    allowed_ips: tuple[str, ...] = ()  # extra source addresses (VIPs it may use)
    learn_ips: tuple[str, ...] = ()  # addresses it may claim by gratuitous ARP
    # Policy for new flows (model/rules.py). None means not compiled, as in a document from
    # before security groups: every flow allowed, today's behaviour; an empty direction denies.
    # The subnet's ACL travels with each port rather than in a node table, so a port and its
    # policy change in one vRouter object (no new kind, no write order); equal values repeat.
    security_groups: PortSecurity | None = None
    network_acl: NetworkAclConfig | None = None  # None: no ACL at its subnet: all allowed


@dataclass(frozen=True, slots=True)
class DnsRecord:
    """An A record the agent answers inside one VRF (DNS is scoped to a VPC)."""

    vrf: int
    name: str  # fully qualified, lower case, no trailing dot
    ip: str


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """Everything one compute node needs, at one generation of the controller's state."""

    node: str
    generation: int
    vrfs: tuple[VrfConfig, ...] = ()
    nexthops: tuple[NextHopConfig, ...] = ()
    ports: tuple[PortConfig, ...] = ()
    routes: tuple[RouteConfig, ...] = ()
    mac_routes: tuple[MacRouteConfig, ...] = ()
    dns: tuple[DnsRecord, ...] = ()


@dataclass(frozen=True, slots=True)
class VmReport:
    """What the controller hears of one interface's VM: ready, and its lease if bound."""

    interface_id: str
    netns: str
    ifname: str
    ip: str | None  # "a.b.c.d/len" once DHCP bound
    instance_id: str = ""  # the instance the interface belongs to, and its name (as compiled)
    name: str = ""


VrouterObject = VrfConfig | NextHopConfig | PortConfig | RouteConfig | MacRouteConfig
ObjectKind = Literal["vrf", "nh", "vif", "route", "mac_route"]
# the order the agent writes kinds in; deletes go in the reverse order
KIND_ORDER: tuple[ObjectKind, ...] = ("vrf", "nh", "vif", "route", "mac_route")


KIND_CLASS: dict[ObjectKind, type[VrouterObject]] = {
    "vrf": VrfConfig,
    "nh": NextHopConfig,
    "vif": PortConfig,
    "route": RouteConfig,
    "mac_route": MacRouteConfig,
}


def decode_object(kind: object, data: object) -> VrouterObject:
    """A {"kind", "obj"} pair as its dataclass; ValueError when it does not fit."""
    cls = KIND_CLASS.get(kind) if isinstance(kind, str) else None  # type: ignore[call-overload]
    if cls is None:
        raise ValueError(f"unknown object kind {kind!r}")
    try:
        obj: VrouterObject = from_dict(cls, data)
    except TypeError as e:
        raise ValueError(f"{kind}: {e}") from e
    return obj


def object_kind(obj: VrouterObject) -> ObjectKind:
    if isinstance(obj, VrfConfig):
        return "vrf"
    if isinstance(obj, NextHopConfig):
        return "nh"
    if isinstance(obj, PortConfig):
        return "vif"
    if isinstance(obj, RouteConfig):
        return "route"
    return "mac_route"


def object_key(obj: VrouterObject) -> str:
    """The identity of an object in the vRouter: a new value under the same key replaces it."""
    if isinstance(obj, VrfConfig):
        return str(obj.id)
    if isinstance(obj, NextHopConfig):
        return obj.key
    if isinstance(obj, PortConfig):
        return str(obj.vif)
    if isinstance(obj, RouteConfig):
        return f"{obj.vrf}/{obj.prefix}"
    return f"{obj.vrf}/{obj.mac}"


Ref = tuple[ObjectKind, str]  # (kind, key): an object's identity in the vRouter


def by_ref(objects: Iterable[VrouterObject]) -> dict[Ref, VrouterObject]:
    """Objects by identity, in first-seen order, the last value winning for a shared key."""
    return {(object_kind(o), object_key(o)): o for o in objects}


def diff_objects(
    have: Iterable[VrouterObject], want: Iterable[VrouterObject]
) -> tuple[list[VrouterObject], list[VrouterObject]]:
    """(what `have` holds under a key `want` lacks, what `want` holds that `have` does not
    hold with the same value), each in its own order."""
    held, wanted = by_ref(have), by_ref(want)
    stale = [o for ref, o in held.items() if ref not in wanted]
    return stale, [o for ref, o in wanted.items() if held.get(ref) != o]


def vrouter_objects(config: NodeConfig) -> list[VrouterObject]:
    """The objects of `config` that live in the vRouter, in write order (composites last)."""
    simple = [nh for nh in config.nexthops if nh.kind != "composite"]
    composite = [nh for nh in config.nexthops if nh.kind == "composite"]
    return [
        *config.vrfs,
        *simple,
        *composite,
        *config.ports,
        *config.routes,
        *config.mac_routes,
    ]


def _prefix_order(prefix: str) -> tuple[int, int]:
    address, _, plen = prefix.partition("/")
    a, b, c, d = (int(x) for x in address.split("."))
    return (a << 24) | (b << 16) | (c << 8) | d, int(plen or 32)


def canonical(config: NodeConfig) -> NodeConfig:
    """The one order of every part of a config, so equal contents compare equal."""
    return NodeConfig(
        config.node,
        config.generation,
        tuple(sorted(config.vrfs, key=lambda v: v.id)),
        tuple(sorted(config.nexthops, key=lambda n: (n.kind == "composite", n.key))),
        tuple(sorted(config.ports, key=lambda p: p.vif)),
        tuple(sorted(config.routes, key=lambda r: (r.vrf, *_prefix_order(r.prefix)))),
        tuple(sorted(config.mac_routes, key=lambda m: (m.vrf, m.mac))),
        tuple(sorted(config.dns, key=lambda d: (d.vrf, d.name, d.ip))),
    )
