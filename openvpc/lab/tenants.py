"""The lab's operator side of the API: the store seeded before the controller starts (nodes,
fabric MTU, the VMs' namespace prefix, tenants and their keys), the endpoint and keys a lab's
clients use, and a topology file's tenants applied through the API."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from openvpc.lab import apply as api_apply
from openvpc.lab.topology import Topology, TopologyError
from openvpc.lab.underlay import NodePlacement
from openvpc.service import Service, ServiceError
from openvpc.store import Store


def seed(service: Service, topo: Topology, nodes: Sequence[NodePlacement], prefix: str) -> None:
    """What an operator sets up before tenants come: nodes with their fabric addresses, the
    fabric MTU, where VMs live, and the file's tenants with an access key each."""
    for i, p in enumerate(nodes):
        try:
            service.register_node(p.node, p.ip)
        except ServiceError as e:
            raise TopologyError(f"nodes[{i}]: {e.code}: {e.message}") from e
    try:
        service.set_fabric_mtu(topo.fabric_mtu)
    except ServiceError as e:
        raise TopologyError(f"fabric_mtu: {e.code}: {e.message}") from e
    service.set_vm_netns_prefix(prefix)
    if topo.internet is not None:
        service.set_internet_node(topo.internet)
    ensure_tenants(service, [t.name for t in topo.tenants])


def ensure_tenants(service: Service, names: Sequence[str]) -> None:
    """Create the tenants that do not exist yet, each with one access key."""
    for i, name in enumerate(names):
        try:
            with service.batch():
                service.create_tenant(name)
                if not service.tenant_keys(name):
                    service.create_tenant_key(name)
        except ServiceError as e:
            raise TopologyError(f"tenants[{i}].name: {e.code}: {e.message}") from e


def keys(service: Service) -> dict[str, tuple[str, str]]:
    """Tenant -> (access key id, secret) of its first key."""
    out: dict[str, tuple[str, str]] = {}
    for tenant in service.describe_tenants():
        ids = service.tenant_keys(tenant.name)
        found = service.access_key(ids[0]) if ids else None
        if found is not None:
            out[tenant.name] = (ids[0], found[0])
    return out


def apply_file(
    db: Path,
    topo: Topology,
    url: str,
    region: str,
    progress: Callable[[str], None] = lambda _: None,
) -> list[str]:
    """The file's tenants (created with a key when missing: an operator's step), then their
    resources through the lab's API, as a client would; returns what was done."""
    store = Store(db)
    try:
        service = Service(store)
        ensure_tenants(service, [t.name for t in topo.tenants])
        found = keys(service)
    finally:
        store.close()
    return api_apply.apply(topo, api_apply.Endpoint(url, region, found), progress)


def create_for_lab(state_dir: Path, tenant: str) -> None:
    """An operator creating a tenant (with a key) on a lab's controller host."""
    store = Store(state_dir / "openvpc.db")
    try:
        ensure_tenants(Service(store), [tenant])
    finally:
        store.close()
