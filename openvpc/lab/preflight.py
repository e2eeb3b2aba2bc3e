"""Check a whole topology file before anything is created: parse it, plan its underlay, seed a
scratch in-memory store as `up` seeds the real one, and apply the file's tenants through a
scratch EC2 API on loopback exactly as `up` applies them to the lab's, so every rule is
checked and reported with the field's path."""

from pathlib import Path

from openvpc.api.app import DEFAULT_REGION, ApiApp
from openvpc.api.instant import InstantRuntime
from openvpc.api.server import ApiServer
from openvpc.lab import apply, tenants
from openvpc.lab.naming import check_name, vm_prefix
from openvpc.lab.topology import Topology, TopologyError, load_topology
from openvpc.lab.underlay import UnderlayPlan, plan_underlay
from openvpc.service import Service
from openvpc.store import Store

SCRATCH = ":memory:"  # SQLite's private in-memory database: nothing touches the disk


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
        service = Service(store)
        tenants.seed(service, topo, underlay.nodes, vm_prefix(topo.name))
        if topo.tenants:
            server = ApiServer(ApiApp(service, InstantRuntime(service)), "127.0.0.1:0")
            server.start()
            try:
                host, port = server.address
                endpoint = apply.Endpoint(
                    f"http://{host}:{port}", DEFAULT_REGION, tenants.keys(service)
                )
                apply.apply(topo, endpoint)
            finally:
                server.stop()
    finally:
        store.close()
    return topo, underlay
