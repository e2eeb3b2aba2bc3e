"""Operator calls: compute nodes and their southbound secrets, the fabric MTU and tenants."""

from openvpc.model.resources import ComputeNode, NodeAllocation, Tenant
from openvpc.service.errors import ServiceError
from openvpc.service.repo import Repo
from openvpc.service.validate import (
    check_fabric_ip,
    check_fabric_mtu,
    check_node_name,
    check_tenant_name,
)

FABRIC_MTU = "fabric_mtu"
DEFAULT_FABRIC_MTU = 1500


def register_node(repo: Repo, name: str, fabric_ip: str) -> ComputeNode:
    """Add a compute node, or move an existing one to a new fabric address."""
    check_node_name(name)
    addr = str(check_fabric_ip(fabric_ip))
    for other in repo.all(ComputeNode):
        if other.name != name and other.fabric_ip == addr:
            raise ServiceError(
                "InvalidParameterValue",
                f"Fabric address {addr} already belongs to compute node '{other.name}'.",
            )
    node = ComputeNode(name, addr)
    repo.put(node)
    if repo.get(NodeAllocation, name) is None:
        repo.put(NodeAllocation(name))
    return node


def issue_node_secret(repo: Repo, name: str, secret_hash: str) -> None:
    """Record the hash of a new secret for registered node `name` (the old one stops working)."""
    if not isinstance(name, str) or repo.get(ComputeNode, name) is None:
        raise ServiceError("InvalidParameterValue", f"Compute node '{name}' is not registered.")
    repo.set_credential(name, secret_hash)


def set_fabric_mtu(repo: Repo, mtu: int) -> None:
    check_fabric_mtu(mtu)
    repo.set_setting(FABRIC_MTU, mtu)


def fabric_mtu(repo: Repo) -> int:
    return repo.setting(FABRIC_MTU, DEFAULT_FABRIC_MTU)


def create_tenant(repo: Repo, name: str) -> Tenant:
    check_tenant_name(name)
    tenant = Tenant(name)
    repo.put(tenant)
    return tenant
