"""VPCs and subnets: CIDR rules, the main route table, and what blocks a deletion."""

from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network

from openvpc.model.gateways import InternetGateway
from openvpc.model.resources import AddressOwner, Association, Interface, RouteTable, Subnet, Vpc
from openvpc.service import gateways, peering, routing
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
    """A VPC and its main route table holding the local route."""
    repo.tenant(tenant)
    check_resource_name(name, "name")
    net = parse_cidr(cidr, "cidrBlock")
    check_vpc_cidr(net)
    vpc = Vpc(repo.new_id("vpc", Vpc), tenant, name, str(net), check_mode(mode), check_encap(encap))
    repo.put(vpc)  # the main table's checks look the VPC up
    main = routing.create_route_table(repo, tenant, vpc.id, routing.MAIN)
    vpc = replace(
        vpc, main_route_table=main.id, main_association=repo.new_id("rtbassoc", Association)
    )
    repo.put(vpc)
    return vpc


def delete_vpc(repo: Repo, tenant: str, vpc_id: str) -> None:
    """Only an empty VPC goes: no subnets, no route table but the main one, no internet
    gateway attached."""
    vpc = repo.owned(Vpc, vpc_id, tenant)
    if repo.find(InternetGateway, "vpc", vpc.id):
        raise dependency("vpc", vpc.id)
    if any(s.vpc == vpc.id for s in repo.all(Subnet)):
        raise dependency("vpc", vpc.id)
    tables = [t for t in repo.all(RouteTable) if t.vpc == vpc.id]
    if any(t.id != vpc.main_route_table for t in tables):
        raise dependency("vpc", vpc.id)
    for owner in repo.all(AddressOwner):
        if owner.vpc == vpc.id:  # cannot outlive the interfaces, but leave nothing behind
            repo.delete(AddressOwner, owner_key(owner.vpc, owner.ip))
    repo.delete(RouteTable, vpc.main_route_table)
    repo.delete(Vpc, vpc.id)
    peering.vpc_deleted(repo, vpc.id)


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
    return subnet


def delete_subnet(repo: Repo, tenant: str, subnet_id: str) -> None:
    subnet = repo.owned(Subnet, subnet_id, tenant)
    if any(i.subnet == subnet.id for i in repo.all(Interface)):
        raise dependency("subnet", subnet.id)
    if gateways.live_nat_in_subnet(repo, subnet.id):
        raise dependency("subnet", subnet.id)
    repo.delete(Association, subnet.id)
    repo.delete(Subnet, subnet.id)
    repo.delete_counter(hint_counter(subnet.id))
