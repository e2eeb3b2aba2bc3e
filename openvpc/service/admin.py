"""Operator calls: compute nodes and their southbound secrets, the fabric MTU, tenants and
their access keys."""

from openvpc.model.gateways import ElasticIp, InternetGateway, NatGateway, VpcPeeringConnection
from openvpc.model.policy import AclAssociation, NetworkAcl, SecurityGroup
from openvpc.model.resources import (
    AddressOwner,
    Association,
    ComputeNode,
    Instance,
    Interface,
    NodeAllocation,
    RouteTable,
    Subnet,
    Tenant,
    Vpc,
)
from openvpc.service import keys
from openvpc.service.errors import ServiceError
from openvpc.service.repo import Repo
from openvpc.service.validate import (
    check_fabric_ip,
    check_fabric_mtu,
    check_node_name,
    check_tenant_name,
    check_zone_name,
)

FABRIC_MTU = "fabric_mtu"
DEFAULT_FABRIC_MTU = 1500


def register_node(repo: Repo, name: str, fabric_ip: str, zone: str = "") -> ComputeNode:
    """Add a compute node, or move an existing one to a new fabric address or zone ("": the
    region's first availability zone)."""
    check_node_name(name)
    check_zone_name(zone)
    addr = str(check_fabric_ip(fabric_ip))
    for other in repo.all(ComputeNode):
        if other.name != name and other.fabric_ip == addr:
            raise ServiceError(
                "InvalidParameterValue",
                f"Fabric address {addr} already belongs to compute node '{other.name}'.",
            )
    node = ComputeNode(name, addr, zone)
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


FIRST_ACCOUNT = 100000000001


def create_tenant(repo: Repo, name: str) -> Tenant:
    """A tenant with the next 12-digit account id; creating an existing one changes nothing."""
    check_tenant_name(name)
    existing = repo.get(Tenant, name)
    if existing is not None:
        return existing
    number = repo.counter("account", FIRST_ACCOUNT)
    repo.set_counter("account", number + 1)
    tenant = Tenant(name, f"{number:012d}")
    repo.put(tenant)
    return tenant


# every kind a tenant can own: a tenant with any of them cannot be deleted
_OWNED = (
    Vpc,
    Subnet,
    RouteTable,
    Association,
    Instance,
    Interface,
    AddressOwner,
    SecurityGroup,
    NetworkAcl,
    AclAssociation,
    InternetGateway,
    ElasticIp,
)


def delete_tenant(repo: Repo, name: str) -> None:
    """Delete a tenant that owns nothing any more, and its access keys with it."""
    repo.tenant(name)
    for instance in repo.find(Instance, "tenant", name):
        if instance.state == "terminated":  # describable for a while, but owns nothing
            repo.delete(Instance, instance.id)
    for cls in _OWNED:
        owned = repo.find(cls, "tenant", name)
        if owned:
            raise ServiceError(
                "DependencyViolation",
                f"The tenant '{name}' still owns {len(owned)} {cls.__name__.lower()}(s) "
                "and cannot be deleted.",
            )
    # records kept after their end (deleted or failed NAT gateways, closed peering
    # connections): with the tenant's VPCs gone nothing refers to them
    for nat in repo.find(NatGateway, "tenant", name):
        repo.delete(NatGateway, nat.id)
    for pcx in repo.all(VpcPeeringConnection):
        if name in (pcx.tenant, pcx.accepter_tenant):
            repo.delete(VpcPeeringConnection, pcx.id)
    for key_id in repo.access_keys(name):
        repo.delete_access_key(key_id)
    repo.delete(Tenant, name)


def create_access_key(repo: Repo, tenant: str, key_id: str, secret: str) -> None:
    """Record a new access key (made outside the transaction) for an existing tenant."""
    repo.tenant(tenant)
    if len(repo.access_keys(tenant)) >= keys.MAX_KEYS_PER_TENANT:
        raise ServiceError(
            "LimitExceeded",
            f"Cannot exceed quota for AccessKeysPerUser: {keys.MAX_KEYS_PER_TENANT}",
        )
    if repo.access_key(key_id) is not None:  # 80 random bits: never in practice
        raise ServiceError("InternalError", "the new access key id is already taken")
    repo.put_access_key(key_id, tenant, secret)


def delete_access_key(repo: Repo, tenant: str, key_id: str) -> None:
    """Revoke one of a tenant's keys; another tenant's key is reported as missing."""
    repo.tenant(tenant)
    found = repo.access_key(key_id) if isinstance(key_id, str) else None
    if found is None or found[1] != tenant:
        raise ServiceError("NoSuchEntity", f"The Access Key with id {key_id} cannot be found.")
    repo.delete_access_key(key_id)
