"""The underlay of the real lab: a pure addressing plan and the shell that builds it.

l2: one bridge in an underlay namespace, a veth to each node, nodes on 192.168.0.0/24.
l3: two leaves and two spines; nodes alternate between the leaves (leaf j owns
172.16.(j+1).0/24), /31 leaf-spine links in 172.31.0.0/24, and each leaf reaches the other
leaf's subnet by an ECMP route over both spines hashing on layer 4 (the outer UDP source port).
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from openvpc.lab import netns
from openvpc.lab.naming import FABRIC_IF, check_name, node_netns, underlay_netns

UnderlayKind = Literal["l2", "l3"]
L2_PREFIX = "192.168.0"
LINK_PREFIX = "172.31.0"
FIRST_HOST = 10  # node addresses start at .10 on every node subnet
MAX_PER_SUBNET = 240
MIN_MTU, MAX_MTU = 576, 9216
BRIDGE = "br0"


@dataclass(frozen=True, slots=True)
class Veth:
    ns_a: str
    if_a: str
    ns_b: str
    if_b: str


@dataclass(frozen=True, slots=True)
class Bridge:
    ns: str
    name: str
    ports: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Address:
    ns: str
    ifname: str
    cidr: str


@dataclass(frozen=True, slots=True)
class StaticRoute:
    """A route in `ns`; more than one gateway makes it an ECMP (multipath) route."""

    ns: str
    dst: str  # "default" or a CIDR
    gateways: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Sysctl:
    ns: str
    key: str
    value: str


@dataclass(frozen=True, slots=True)
class NodePlacement:
    node: str
    ns: str
    ifname: str
    ip: str  # the node's fabric address (tunnel endpoint)
    prefix_len: int
    attached_to: str  # the underlay namespace its fabric veth lands in


@dataclass(frozen=True, slots=True)
class UnderlayPlan:
    kind: UnderlayKind
    mtu: int
    fabric_ns: tuple[str, ...]  # bridge / router namespaces, in creation order
    nodes: tuple[NodePlacement, ...]
    bridges: tuple[Bridge, ...]
    veths: tuple[Veth, ...]
    addresses: tuple[Address, ...]
    routes: tuple[StaticRoute, ...]
    sysctls: tuple[Sysctl, ...]

    def node(self, name: str) -> NodePlacement:
        for placement in self.nodes:
            if placement.node == name:
                return placement
        raise KeyError(name)

    def all_netns(self) -> tuple[str, ...]:
        return self.fabric_ns + tuple(p.ns for p in self.nodes)


def plan_underlay(lab: str, kind: str, nodes: Sequence[str], mtu: int) -> UnderlayPlan:
    """The whole underlay for these nodes; raises ValueError on input it cannot build."""
    check_name("lab", lab)
    if not nodes:
        raise ValueError("a lab needs at least one compute node")
    for node in nodes:
        check_name("node", node)
    if len(set(nodes)) != len(nodes):
        raise ValueError("node names must be unique")
    if not MIN_MTU <= mtu <= MAX_MTU:
        raise ValueError(f"fabric_mtu {mtu} is outside {MIN_MTU}..{MAX_MTU}")
    if kind == "l2":
        return _plan_l2(lab, list(nodes), mtu)
    if kind == "l3":
        return _plan_l3(lab, list(nodes), mtu)
    raise ValueError(f"underlay must be l2 or l3, not {kind!r}")


def _plan_l2(lab: str, nodes: list[str], mtu: int) -> UnderlayPlan:
    if len(nodes) > MAX_PER_SUBNET:
        raise ValueError(f"an l2 underlay holds at most {MAX_PER_SUBNET} nodes")
    switch = underlay_netns(lab, "sw")
    placements, veths, addresses = [], [], []
    for i, node in enumerate(nodes):
        ns = node_netns(lab, node)
        ip = f"{L2_PREFIX}.{FIRST_HOST + i}"
        placements.append(NodePlacement(node, ns, FABRIC_IF, ip, 24, switch))
        veths.append(Veth(switch, f"n{i}", ns, FABRIC_IF))
        addresses.append(Address(ns, FABRIC_IF, f"{ip}/24"))
    return UnderlayPlan(
        kind="l2",
        mtu=mtu,
        fabric_ns=(switch,),
        nodes=tuple(placements),
        bridges=(Bridge(switch, BRIDGE, tuple(v.if_a for v in veths)),),
        veths=tuple(veths),
        addresses=tuple(addresses),
        routes=(),
        sysctls=(),
    )


def leaf_subnet(j: int) -> str:
    return f"172.16.{j + 1}.0/24"


def _link_ips(leaf: int, spine: int) -> tuple[str, str]:
    """(spine side, leaf side) of the /31 between leaf `leaf` and spine `spine`."""
    base = 2 * (2 * leaf + spine)
    return f"{LINK_PREFIX}.{base}", f"{LINK_PREFIX}.{base + 1}"


def _plan_l3(lab: str, nodes: list[str], mtu: int) -> UnderlayPlan:
    if len(nodes) > 2 * MAX_PER_SUBNET:
        raise ValueError(f"an l3 underlay holds at most {2 * MAX_PER_SUBNET} nodes")
    leaves = [underlay_netns(lab, f"leaf{j + 1}") for j in range(2)]
    spines = [underlay_netns(lab, f"spine{s + 1}") for s in range(2)]
    placements, veths, addresses, routes = [], [], [], []
    ports: list[list[str]] = [[], []]
    for i, node in enumerate(nodes):
        j, k = i % 2, i // 2
        ns = node_netns(lab, node)
        ip = f"172.16.{j + 1}.{FIRST_HOST + k}"
        placements.append(NodePlacement(node, ns, FABRIC_IF, ip, 24, leaves[j]))
        veths.append(Veth(leaves[j], f"n{i}", ns, FABRIC_IF))
        ports[j].append(f"n{i}")
        addresses.append(Address(ns, FABRIC_IF, f"{ip}/24"))
        routes.append(StaticRoute(ns, "default", (f"172.16.{j + 1}.1",)))
    for j, leaf in enumerate(leaves):
        addresses.append(Address(leaf, BRIDGE, f"172.16.{j + 1}.1/24"))
        for s, spine in enumerate(spines):
            spine_ip, leaf_ip = _link_ips(j, s)
            veths.append(Veth(leaf, f"spine{s + 1}", spine, f"leaf{j + 1}"))
            addresses.append(Address(leaf, f"spine{s + 1}", f"{leaf_ip}/31"))
            addresses.append(Address(spine, f"leaf{j + 1}", f"{spine_ip}/31"))
            routes.append(StaticRoute(spine, leaf_subnet(j), (leaf_ip,)))
        other = 1 - j
        via_spines = tuple(_link_ips(j, s)[0] for s in range(2))
        routes.append(StaticRoute(leaf, leaf_subnet(other), via_spines))
    sysctls = [Sysctl(ns, "net.ipv4.ip_forward", "1") for ns in leaves + spines]
    # layer-4 hashing: flows that differ only in the outer UDP source port take either spine
    sysctls += [Sysctl(ns, "net.ipv4.fib_multipath_hash_policy", "1") for ns in leaves]
    return UnderlayPlan(
        kind="l3",
        mtu=mtu,
        fabric_ns=tuple(leaves + spines),
        nodes=tuple(placements),
        bridges=tuple(Bridge(leaf, BRIDGE, tuple(ports[j])) for j, leaf in enumerate(leaves)),
        veths=tuple(veths),
        addresses=tuple(addresses),
        routes=tuple(sorted(routes, key=lambda r: (r.ns, r.dst))),
        sysctls=tuple(sysctls),
    )


def build_underlay(
    plan: UnderlayPlan,
    record_netns: Callable[[str], object],
    record_link: Callable[[str, str], object],
) -> None:
    """Create the plan's namespaces and devices. Each is recorded just *before* it is created
    (the caller checked the names are free), so a crash at any point leaves nothing that the
    record does not name; removing a recorded thing that never came to be is a no-op."""
    for ns in plan.all_netns():
        record_netns(ns)
        netns.create_netns(ns)
    for ns, key, value in ((s.ns, s.key, s.value) for s in plan.sysctls):
        netns.write_sysctl(ns, key, value)
    for bridge in plan.bridges:
        record_link(bridge.ns, bridge.name)
        netns.add_bridge(bridge.ns, bridge.name, plan.mtu)
    for veth in plan.veths:
        record_link(veth.ns_a, veth.if_a)
        netns.add_veth(veth.ns_a, veth.if_a, veth.ns_b, veth.if_b, plan.mtu)
    for bridge in plan.bridges:
        for port in bridge.ports:
            netns.enslave(bridge.ns, port, bridge.name)
    for address in plan.addresses:
        netns.add_address(address.ns, address.ifname, address.cidr)
    for route in plan.routes:
        if len(route.gateways) > 1:
            netns.add_multipath_route(route.ns, route.dst, route.gateways)
        else:
            netns.add_route(route.ns, route.dst, route.gateways[0])
