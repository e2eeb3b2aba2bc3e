"""VPCs and subnets: CIDR rules, the main route table, and what blocks a deletion."""

from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network

from openvpc.model.policy import AclAssociation
from openvpc.model.resources import AddressOwner, Association, Interface, RouteTable, Subnet, Vpc
from openvpc.service import acls, routing, security
from openvpc.service.compute import hint_counter
from openvpc.service.errors import ServiceError, dependency
from openvpc.service.ipam import reserved
from openvpc.service.repo import Repo, owner_key
from openvpc.service.validate import (
    check_encap,
    check_mode,
    check_resource_name,
    check_subnet_cidr,
    check_vpc_cidr,
    parse_cidr,
)


def create_vpc(
    repo: Repo, tenant: str, name: str, cidr: str, mode: str = "l3", encap: str = "vxlan"
) -> Vpc:
    """A VPC with its main route table holding the local route, its default network ACL
    and its default security group."""
    repo.tenant(tenant)
    check_resource_name(name, "name")
    net = parse_cidr(cidr, "cidrBlock")
    check_vpc_cidr(net)
    vpc = Vpc(repo.new_id("vpc", Vpc), tenant, name, str(net), check_mode(mode), check_encap(encap))
    repo.put(vpc)  # the main table's checks look the VPC up
    main = routing.create_route_table(repo, tenant, vpc.id, routing.MAIN)
    vpc = replace(vpc, main_route_table=main.id)
    repo.put(vpc)
    acls.create_default_acl(repo, vpc)
    security.create_default_group(repo, vpc)
    return vpc


def delete_vpc(repo: Repo, tenant: str, vpc_id: str) -> None:
    """Only an empty VPC goes: no subnets, and no route table, network ACL or security group
    but the ones it was created with, which go with it."""
    vpc = repo.owned(Vpc, vpc_id, tenant)
    if any(s.vpc == vpc.id for s in repo.all(Subnet)):
        raise dependency("vpc", vpc.id)
    tables = [t for t in repo.all(RouteTable) if t.vpc == vpc.id]
    if any(t.id != vpc.main_route_table for t in tables):
        raise dependency("vpc", vpc.id)
    acls.drop_vpc_acls(repo, vpc.id)
    security.drop_vpc_groups(repo, vpc.id)
    for owner in repo.all(AddressOwner):
        if owner.vpc == vpc.id:  # cannot outlive the interfaces, but leave nothing behind
            repo.delete(AddressOwner, owner_key(owner.vpc, owner.ip))
    repo.delete(RouteTable, vpc.main_route_table)
    repo.delete(Vpc, vpc.id)


def create_subnet(repo: Repo, tenant: str, vpc_id: str, name: str, cidr: str) -> Subnet:
    vpc = repo.owned(Vpc, vpc_id, tenant)
    check_resource_name(name, "name")
    net = parse_cidr(cidr, "cidrBlock")
    check_subnet_cidr(net, IPv4Network(vpc.cidr))
    for other in repo.all(Subnet):
        if other.vpc == vpc.id and net.overlaps(IPv4Network(other.cidr)):
            raise ServiceError(
                "InvalidSubnet.Conflict",
                f"The CIDR '{net}' conflicts with another subnet",
            )
    taken = reserved(net)
    for owner in repo.all(AddressOwner):
        if owner.vpc == vpc.id and IPv4Address(owner.ip) in taken:
            raise ServiceError(
                "InvalidSubnet.Conflict",
                f"The CIDR '{net}' would reserve address {owner.ip}, which is in use.",
            )
    subnet = Subnet(repo.new_id("subnet", Subnet), tenant, vpc.id, name, str(net))
    repo.put(subnet)
    acls.associate_default(repo, subnet)
    return subnet


def delete_subnet(repo: Repo, tenant: str, subnet_id: str) -> None:
    subnet = repo.owned(Subnet, subnet_id, tenant)
    if any(i.subnet == subnet.id for i in repo.all(Interface)):
        raise dependency("subnet", subnet.id)
    repo.delete(Association, subnet.id)
    repo.delete(AclAssociation, subnet.id)
    repo.delete(Subnet, subnet.id)
    repo.delete_counter(hint_counter(subnet.id))
