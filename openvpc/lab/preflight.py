"""Check a whole topology file before anything is created: parse it, plan its underlay, and
apply it through the service layer to a scratch in-memory store exactly as `up` feeds the
real one, so every service rule is checked and reported with the field's path."""

from collections.abc import Sequence
from pathlib import Path

from openvpc.lab.naming import check_name, vm_netns
from openvpc.lab.topology import Topology, TopologyError, apply_topology, load_topology
from openvpc.lab.underlay import NodePlacement, UnderlayPlan, plan_underlay
from openvpc.model.resources import Interface
from openvpc.service import Service, ServiceError
from openvpc.store import Store

SCRATCH = ":memory:"  # SQLite's private in-memory database: nothing touches the disk


def feed(service: Service, topo: Topology, nodes: Sequence[NodePlacement]) -> dict[str, Interface]:
    """Nodes with their fabric addresses, the fabric MTU, then the file; returns each VM's
    interface. `up` and `check_topology` both use this, so they apply the same calls."""
    for i, p in enumerate(nodes):
        try:
            service.register_node(p.node, p.ip)
        except ServiceError as e:
            raise TopologyError(f"nodes[{i}]: {e.code}: {e.message}") from e
    try:
        service.set_fabric_mtu(topo.fabric_mtu)
    except ServiceError as e:
        raise TopologyError(f"fabric_mtu: {e.code}: {e.message}") from e
    return apply_topology(service, topo, lambda vm: vm_netns(topo.name, vm))


def plan(topo: Topology) -> UnderlayPlan:
    """The lab's underlay plan; names that cannot become namespaces are TopologyErrors."""
    try:
        check_name("lab", topo.name)
        for _, _, vm in topo.vms():
            check_name("VM", vm.name)
        return plan_underlay(topo.name, topo.underlay, list(topo.nodes), topo.fabric_mtu)
    except ValueError as e:
        raise TopologyError(str(e)) from None


def check_topology(path: str | Path) -> tuple[Topology, UnderlayPlan]:
    """The file's topology and underlay plan if the whole of it would apply; raises
    TopologyError (the message starts with the file or the field's path) otherwise."""
    topo = load_topology(path)
    underlay = plan(topo)
    store = Store(SCRATCH)
    try:
        feed(Service(store), topo, underlay.nodes)
    finally:
        store.close()
    return topo, underlay
