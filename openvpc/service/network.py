"""VPCs and subnets: CIDR rules, the main route table, and what blocks a deletion."""

from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network

from openvpc.model.gateways import InternetGateway
from openvpc.model.policy import AclAssociation
from openvpc.model.resources import (
    AddressOwner,
    Association,
    Interface,
    Route,
    RouteTable,
    Subnet,
    Vpc,
)
from openvpc.service import acls, gateways, peering, routing, security
from openvpc.service.compute import hint_counter
from openvpc.service.errors import ServiceError, dependency, invalid_value
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

VPCS_PER_TENANT = 5  # AWS's default quota of VPCs per region
SUBNETS_PER_VPC = 200
CIDRS_PER_VPC = 5  # the primary block and four more
_ATTRIBUTE_FIELDS = {
    "enableDnsSupport": "dns_support",
    "enableDnsHostnames": "dns_hostnames",
    "enableNetworkAddressUsageMetrics": "address_usage_metrics",
}


def create_vpc(
    repo: Repo, tenant: str, name: str, cidr: str, mode: str = "l3", encap: str = "vxlan"
) -> Vpc:
    """A VPC with its main route table holding the local route, its default network ACL
    and its default security group."""
    repo.tenant(tenant)
    check_resource_name(name, "name")
    net = parse_cidr(cidr, "cidrBlock")
    check_vpc_cidr(net)
    if len(repo.find(Vpc, "tenant", tenant)) >= VPCS_PER_TENANT:
        raise ServiceError("VpcLimitExceeded", "The maximum number of VPCs has been reached.")
    vpc = Vpc(repo.new_id("vpc", Vpc), tenant, name, str(net), check_mode(mode), check_encap(encap))
    repo.put(vpc)  # the main table's checks look the VPC up
    main = routing.create_route_table(repo, tenant, vpc.id, routing.MAIN)
    vpc = replace(
        vpc, main_route_table=main.id, main_association=repo.new_id("rtbassoc", Association)
    )
    repo.put(vpc)
    acls.create_default_acl(repo, vpc)
    security.create_default_group(repo, vpc)
    return vpc


def delete_vpc(repo: Repo, tenant: str, vpc_id: str) -> None:
    """Only an empty VPC goes: no subnets, no internet gateway attached, and no route table,
    network ACL or security group but the ones it was created with, which go with it."""
    vpc = repo.owned(Vpc, vpc_id, tenant)
    if repo.find(InternetGateway, "vpc", vpc.id):
        raise dependency("vpc", vpc.id)
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
    peering.vpc_deleted(repo, vpc.id)


def vpc_blocks(vpc: Vpc) -> list[IPv4Network]:
    """Every CIDR block of the VPC, the primary first."""
    return [IPv4Network(vpc.cidr), *(IPv4Network(c) for _, c in vpc.secondary)]


def set_vpc_attribute(repo: Repo, tenant: str, vpc_id: str, attribute: str, value: bool) -> Vpc:
    vpc = repo.owned(Vpc, vpc_id, tenant)
    field = _ATTRIBUTE_FIELDS.get(attribute)
    if field is None:
        raise invalid_value("attribute", attribute, f"Use one of {', '.join(_ATTRIBUTE_FIELDS)}.")
    if field == "dns_hostnames" and value and not vpc.dns_support:
        raise ServiceError(
            "InvalidParameterValue",
            "enableDnsHostnames cannot be enabled while enableDnsSupport is disabled.",
        )
    if field == "dns_support":
        vpc = replace(vpc, dns_support=value)
    elif field == "dns_hostnames":
        vpc = replace(vpc, dns_hostnames=value)
    else:
        vpc = replace(vpc, address_usage_metrics=value)
    repo.put(vpc)
    return vpc


def vpc_attribute(vpc: Vpc, attribute: str) -> bool:
    field = _ATTRIBUTE_FIELDS.get(attribute)
    if field is None:
        raise invalid_value("attribute", attribute, f"Use one of {', '.join(_ATTRIBUTE_FIELDS)}.")
    return bool(getattr(vpc, field))


def associate_vpc_cidr(repo: Repo, tenant: str, vpc_id: str, cidr: str) -> tuple[Vpc, str]:
    """Add a secondary block: a local route for it appears in every route table of the VPC."""
    vpc = repo.owned(Vpc, vpc_id, tenant)
    net = parse_cidr(cidr, "cidrBlock")
    check_vpc_cidr(net)
    blocks = vpc_blocks(vpc)
    if len(blocks) >= CIDRS_PER_VPC:
        raise ServiceError(
            "CidrLimitExceeded",
            f"This network '{vpc.id}' has met its maximum number of allowed CIDRs: {CIDRS_PER_VPC}",
        )
    if any(net.overlaps(b) for b in blocks):
        raise ServiceError(
            "InvalidVpc.Range", f"The CIDR '{net}' overlaps with another CIDR of the VPC."
        )
    if _private_family(net) != _private_family(blocks[0]):
        raise ServiceError(
            "InvalidVpc.Range",
            f"The CIDR '{net}' is restricted: it is in another private range than the VPC's.",
        )
    tables = repo.find(RouteTable, "vpc", vpc.id)
    for table in tables:
        if any(IPv4Network(r.destination).subnet_of(net) for r in table.routes):
            raise ServiceError(
                "InvalidVpc.Range",
                f"The CIDR '{net}' is the same as or larger than a route in {table.id}.",
            )
    association = repo.new_id("vpc-cidr-assoc", Vpc)
    vpc = replace(vpc, secondary=(*vpc.secondary, (association, str(net))))
    repo.put(vpc)
    for table in tables:
        repo.put(replace(table, routes=(*table.routes, Route(str(net), routing.LOCAL))))
    return vpc, association


def disassociate_vpc_cidr(repo: Repo, tenant: str, association: str) -> tuple[Vpc, str]:
    """Remove a secondary block (the primary cannot go); no subnet may use it."""
    for vpc in repo.find(Vpc, "tenant", tenant):
        if association == primary_association(vpc):
            raise ServiceError(
                "OperationNotPermitted",
                f"The vpc CIDR block with association ID {association} may not be disassociated. "
                "It is the primary IPv4 CIDR block of the VPC",
            )
        cidr = dict(vpc.secondary).get(association)
        if cidr is None:
            continue
        net = IPv4Network(cidr)
        if any(IPv4Network(s.cidr).subnet_of(net) for s in repo.find(Subnet, "vpc", vpc.id)):
            raise ServiceError(
                "DependencyViolation",
                f"The vpc CIDR block with association ID {association} has dependencies.",
            )
        vpc = replace(vpc, secondary=tuple(a for a in vpc.secondary if a[0] != association))
        repo.put(vpc)
        for table in repo.find(RouteTable, "vpc", vpc.id):
            routes = tuple(r for r in table.routes if (r.destination, r.target) != (cidr, "local"))
            repo.put(replace(table, routes=routes))
        return vpc, cidr
    raise ServiceError(
        "InvalidVpcCidrBlockAssociationID.NotFound",
        f"The vpc CIDR block association ID '{association}' does not exist",
    )


def primary_association(vpc: Vpc) -> str:
    return "vpc-cidr-assoc-" + vpc.id[4:]


_PRIVATE = tuple(IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))


def _private_family(net: IPv4Network) -> int:
    """Which RFC 1918 range a block lies in (-1: public space); AWS does not mix them."""
    return next((i for i, p in enumerate(_PRIVATE) if net.subnet_of(p)), -1)


def create_subnet(
    repo: Repo, tenant: str, vpc_id: str, name: str, cidr: str, zone: str = ""
) -> Subnet:
    vpc = repo.owned(Vpc, vpc_id, tenant)
    check_resource_name(name, "name")
    net = parse_cidr(cidr, "cidrBlock")
    blocks = vpc_blocks(vpc)
    home = next((b for b in blocks if net.subnet_of(b)), blocks[0])
    check_subnet_cidr(net, home)
    siblings = repo.find(Subnet, "vpc", vpc.id)
    if len(siblings) >= SUBNETS_PER_VPC:
        raise ServiceError("SubnetLimitExceeded", "The maximum number of subnets has been reached.")
    for other in siblings:
        if net.overlaps(IPv4Network(other.cidr)):
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
    subnet = Subnet(repo.new_id("subnet", Subnet), tenant, vpc.id, name, str(net), zone)
    repo.put(subnet)
    acls.associate_default(repo, subnet)
    return subnet


def set_map_public_ip(repo: Repo, tenant: str, subnet_id: str, value: bool) -> Subnet:
    subnet = replace(repo.owned(Subnet, subnet_id, tenant), map_public_ip=value)
    repo.put(subnet)
    return subnet


def delete_subnet(repo: Repo, tenant: str, subnet_id: str) -> None:
    subnet = repo.owned(Subnet, subnet_id, tenant)
    if any(i.subnet == subnet.id for i in repo.all(Interface)):
        raise dependency("subnet", subnet.id)
    if gateways.live_nat_in_subnet(repo, subnet.id):
        raise dependency("subnet", subnet.id)
    repo.delete(Association, subnet.id)
    repo.delete(AclAssociation, subnet.id)
    repo.delete(Subnet, subnet.id)
    repo.delete_counter(hint_counter(subnet.id))
