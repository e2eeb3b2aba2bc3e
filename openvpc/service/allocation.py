"""Keeps every compute node's NodeAllocation in step with the interfaces it hosts, inside
the transaction of the change that moved them."""

from collections import defaultdict

from openvpc.model.gateways import NatGateway
from openvpc.model.resources import (
    Association,
    ComputeNode,
    Interface,
    NodeAllocation,
    RouteTable,
    Subnet,
    Vpc,
)
from openvpc.service.errors import ServiceError
from openvpc.service.numbers import (
    LABEL_RANGE,
    VIF_RANGE,
    VRF_RANGE,
    Exhausted,
    NodeHints,
    plan_node,
)
from openvpc.service.repo import KINDS, Repo

# what a node's allocation is computed from; other kinds never change one
_INPUTS = frozenset(KINDS[c] for c in (Vpc, Subnet, Association, Interface))
# created with nothing on any node yet: their creation changes no allocation
_BORN_EMPTY = frozenset(KINDS[c] for c in (Vpc, Subnet))
_INTERFACE = KINDS[Interface]
# what decides which routing instances the gateway node hosts for NAT gateways
_NAT_INPUTS = frozenset(KINDS[c] for c in (RouteTable, NatGateway))
INTERNET_NODE = "internet_node"  # the setting (addresses.INTERNET_NODE; no import cycle)


def reconcile(repo: Repo) -> None:
    """VRF ids and label pairs for each route table an interface on the node uses (its
    subnet's table), a vif id for each interface; writes only what changed.

    When the transaction only created VPCs, subnets and interfaces (as applying a topology
    does), only the new interfaces' nodes are planned, from their current allocation, so a
    call costs the same in a store of ten VMs as of ten thousand."""
    inputs = {kk: created for kk, created in repo.changes.items() if kk[0] in _INPUTS}
    if not inputs:
        if any(kind in _NAT_INPUTS for kind, _ in repo.changes):
            _plan_gateway_node(repo)
        return
    if any(
        not created or kind not in (_BORN_EMPTY | {_INTERFACE})
        for (kind, _), created in inputs.items()
    ):
        reconcile_all(repo)  # something moved or went away: plan every node afresh
        return
    new = [key for (kind, key) in inputs if kind == _INTERFACE]
    grown: dict[str, tuple[set[str], set[str]]] = defaultdict(lambda: (set(), set()))
    for key in new:
        iface = repo.get(Interface, key)
        if iface is None or not iface.node:  # a detached interface is on no node
            continue
        tables, ifaces = grown[iface.node]
        ifaces.add(iface.id)
        table = _table_of(repo, iface.subnet)
        if table:
            tables.add(table)
    for node, (tables, ifaces) in grown.items():
        current = repo.get(NodeAllocation, node) or NodeAllocation(node)
        _plan(
            repo,
            current,
            tables | {t for t, _ in current.vrfs},
            ifaces | {i for i, _ in current.vifs},
        )
    if any(kind in _NAT_INPUTS for kind, _ in repo.changes):
        _plan_gateway_node(repo)


def nat_tables(repo: Repo) -> set[str]:
    """The route tables with a route to a NAT gateway that is not gone: the gateway node
    hosts their routing instances, where it translates for them (docs/internet.md)."""
    live = [n for n in repo.all(NatGateway) if n.state not in ("deleted", "failed")]
    ids = {n.id for n in live}
    return {
        t.id
        for vpc in sorted({n.vpc for n in live})
        for t in repo.find(RouteTable, "vpc", vpc)
        if any(r.target in ids for r in t.routes)
    }


def _plan_gateway_node(repo: Repo) -> None:
    """Re-plan the gateway node alone: a route to a NAT gateway, or one, came or went."""
    node = repo.text_setting(INTERNET_NODE, "")
    if not node or repo.get(ComputeNode, node) is None:
        return
    current = repo.get(NodeAllocation, node) or NodeAllocation(node)
    # its own interfaces are the ones its allocation numbers (no scan of every interface)
    hosted = [i for i in (repo.get(Interface, key) for key, _ in current.vifs) if i is not None]
    tables = {_table_of(repo, i.subnet) for i in hosted} - {""} | nat_tables(repo)
    if tables != {t for t, _ in current.vrfs}:
        _plan(repo, current, tables, {i.id for i in hosted})


def _table_of(repo: Repo, subnet_id: str) -> str:
    association = repo.get(Association, subnet_id)
    if association is not None:
        return association.route_table
    subnet = repo.get(Subnet, subnet_id)
    vpc = None if subnet is None else repo.get(Vpc, subnet.vpc)
    return "" if vpc is None else vpc.main_route_table


def reconcile_all(repo: Repo) -> None:
    """Every node planned from every interface (after a deletion or a re-association)."""
    main = {v.id: v.main_route_table for v in repo.all(Vpc)}
    associated = {a.subnet: a.route_table for a in repo.all(Association)}
    table_of = {s.id: associated.get(s.id, main.get(s.vpc, "")) for s in repo.all(Subnet)}
    tables: dict[str, set[str]] = defaultdict(set)
    interfaces: dict[str, set[str]] = defaultdict(set)
    for iface in repo.all(Interface):
        interfaces[iface.node].add(iface.id)
        if table_of.get(iface.subnet):
            tables[iface.node].add(table_of[iface.subnet])
    gateway_node = repo.text_setting(INTERNET_NODE, "")
    if gateway_node:
        tables[gateway_node] |= nat_tables(repo)
    for node in repo.all(ComputeNode):
        current = repo.get(NodeAllocation, node.name) or NodeAllocation(node.name)
        _plan(repo, current, tables[node.name], interfaces[node.name])


def _plan(repo: Repo, current: NodeAllocation, tables: set[str], interfaces: set[str]) -> None:
    node = current.node
    hints = NodeHints(
        repo.counter(f"vrf/{node}", VRF_RANGE[0]),
        repo.counter(f"label/{node}", LABEL_RANGE[0]),
        repo.counter(f"vif/{node}", VIF_RANGE[0]),
    )
    try:
        allocation, after = plan_node(current, tables, interfaces, hints)
    except Exhausted as e:
        raise ServiceError(
            "InsufficientInstanceCapacity", f"Compute node '{node}' is full: {e}"
        ) from None
    if repo.put(allocation):
        repo.set_counter(f"vrf/{node}", after.vrf)
        repo.set_counter(f"label/{node}", after.label)
        repo.set_counter(f"vif/{node}", after.vif)
