"""Keeps every compute node's NodeAllocation in step with the interfaces it hosts, inside
the transaction of the change that moved them."""

from collections import defaultdict

from openvpc.model.resources import (
    Association,
    ComputeNode,
    Interface,
    NodeAllocation,
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
from openvpc.service.repo import Repo


def reconcile(repo: Repo) -> None:
    """VRF ids and label pairs for each route table an interface on the node uses (its
    subnet's table), a vif id for each interface; writes only what changed."""
    main = {v.id: v.main_route_table for v in repo.all(Vpc)}
    associated = {a.subnet: a.route_table for a in repo.all(Association)}
    table_of = {s.id: associated.get(s.id, main.get(s.vpc, "")) for s in repo.all(Subnet)}
    tables: dict[str, set[str]] = defaultdict(set)
    interfaces: dict[str, set[str]] = defaultdict(set)
    for iface in repo.all(Interface):
        interfaces[iface.node].add(iface.id)
        if table_of.get(iface.subnet):
            tables[iface.node].add(table_of[iface.subnet])
    for node in repo.all(ComputeNode):
        current = repo.get(NodeAllocation, node.name) or NodeAllocation(node.name)
        hints = NodeHints(
            repo.counter(f"vrf/{node.name}", VRF_RANGE[0]),
            repo.counter(f"label/{node.name}", LABEL_RANGE[0]),
            repo.counter(f"vif/{node.name}", VIF_RANGE[0]),
        )
        try:
            allocation, after = plan_node(current, tables[node.name], interfaces[node.name], hints)
        except Exhausted as e:
            raise ServiceError(
                "InsufficientInstanceCapacity", f"Compute node '{node.name}' is full: {e}"
            ) from None
        if repo.put(allocation):
            repo.set_counter(f"vrf/{node.name}", after.vrf)
            repo.set_counter(f"label/{node.name}", after.label)
            repo.set_counter(f"vif/{node.name}", after.vif)
