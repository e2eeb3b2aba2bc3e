"""Internet and NAT gateways, Elastic IPs and VPC peering connections as the store keeps them.

The compiler forwards through internet gateways, Elastic IPs and NAT gateways
(docs/internet.md).
"""

from dataclasses import dataclass
from typing import Literal

NatState = Literal["pending", "available", "deleting", "deleted", "failed"]
PeeringStatus = Literal["pending-acceptance", "active", "rejected", "deleted", "failed", "expired"]


@dataclass(frozen=True, slots=True)
class InternetGateway:
    id: str  # "igw-..."
    tenant: str
    vpc: str = ""  # the VPC it is attached to, "" while detached


@dataclass(frozen=True, slots=True)
class NatGateway:
    """A NAT gateway in a subnet: an interface of its own (no VM behind it) holding a private
    address of the subnet, and an Elastic IP."""

    id: str  # "nat-..."
    tenant: str
    vpc: str
    subnet: str
    allocation: str  # the Elastic IP's "eipalloc-..."
    interface: str  # "eni-..." (no Interface document: nothing to plug)
    ip: str  # its private address, taken from the subnet
    state: NatState = "pending"
    created: float = 0.0  # epoch seconds
    deleted: float = 0.0  # when it was deleted; deleted ones stay describable a while
    failure: str = ""  # the EC2 failure code when state is failed


@dataclass(frozen=True, slots=True)
class ElasticIp:
    """A public address from the operator's pool, owned by a tenant, mapped one to one onto
    a private address of an interface (an instance's or a NAT gateway's) while associated."""

    id: str  # "eipalloc-..."
    tenant: str
    public_ip: str
    association: str = ""  # "eipassoc-..." while associated
    interface: str = ""
    private_ip: str = ""
    instance: str = ""  # the interface's instance, when it has one
    nat_gateway: str = ""  # set while a NAT gateway holds it


@dataclass(frozen=True, slots=True)
class VpcPeeringConnection:
    """A request from `tenant`'s `vpc` to `accepter_tenant`'s `accepter_vpc` (possibly the same
    tenant); both tenants see it, nobody else does. CIDRs are kept as they were at creation."""

    id: str  # "pcx-..."
    tenant: str  # the requester
    vpc: str
    cidr: str
    accepter_tenant: str  # the accepter
    accepter_vpc: str
    accepter_cidr: str = ""
    status: PeeringStatus = "pending-acceptance"
    message: str = ""
    created: float = 0.0
    expires: float = 0.0  # a pending request expires (AWS: after 7 days)
    accepter_account: str = ""  # the accepter's account id as the request named it
