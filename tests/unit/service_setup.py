"""A real Service on a fresh SQLite file, with two compute nodes and the tenants red and blue."""

from pathlib import Path

import pytest

from openvpc.model.resources import Subnet, Vpc
from openvpc.service import Service, ServiceError
from openvpc.store import Store

NODES = {"node1": "172.16.1.10", "node2": "172.16.2.11"}


def open_service(path: Path) -> Service:
    service = Service(Store(path))
    for name, ip in NODES.items():
        service.register_node(name, ip)
    service.create_tenant("red")
    service.create_tenant("blue")
    return service


def vpc_with_subnet(
    service: Service, tenant: str = "red", cidr: str = "10.0.1.0/24"
) -> tuple[Vpc, Subnet]:
    vpc = service.create_vpc(tenant, "prod", "10.0.0.0/16")
    return vpc, service.create_subnet(tenant, vpc.id, "web", cidr)


def fails(code: str) -> pytest.RaisesExc[ServiceError]:
    """Expect a ServiceError with exactly this EC2 code."""
    return pytest.raises(ServiceError, match=f"^{code.replace('.', '[.]')}: ")
