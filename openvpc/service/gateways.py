"""Internet gateways (one per VPC, attached to one VPC) and NAT gateways (in a subnet, with
a private address of it and an Elastic IP)."""

from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network

from openvpc.model.gateways import ElasticIp, InternetGateway, NatGateway
from openvpc.model.resources import AddressOwner, Interface, Subnet, Vpc
from openvpc.service import addresses
from openvpc.service.compute import VpcAddresses, hint_counter
from openvpc.service.errors import ServiceError, dependency, invalid_value
from openvpc.service.ipam import lowest_free
from openvpc.service.repo import Repo, owner_key

MAX_INTERNET_GATEWAYS = 5  # per tenant (AWS: per region), the default quota
DELETED_VISIBLE = 3600.0  # seconds a deleted NAT gateway stays describable


# -- internet gateways --------------------------------------------------------------------
def create_internet_gateway(repo: Repo, tenant: str) -> InternetGateway:
    repo.tenant(tenant)
    if len(repo.find(InternetGateway, "tenant", tenant)) >= MAX_INTERNET_GATEWAYS:
        raise ServiceError(
            "InternetGatewayLimitExceeded",
            "The maximum number of internet gateways has been reached.",
        )
    igw = InternetGateway(repo.new_id("igw", InternetGateway), tenant)
    repo.put(igw)
    return igw


def attach_internet_gateway(repo: Repo, tenant: str, igw_id: str, vpc_id: str) -> None:
    igw = repo.owned(InternetGateway, igw_id, tenant)
    vpc = repo.owned(Vpc, vpc_id, tenant)
    if igw.vpc:
        raise ServiceError(
            "Resource.AlreadyAssociated",
            f"resource {igw.id} is already attached to network {igw.vpc}",
        )
    if repo.find(InternetGateway, "vpc", vpc.id):
        raise ServiceError(
            "Resource.AlreadyAssociated",
            f"Network {vpc.id} already has an internet gateway attached",
        )
    repo.put(replace(igw, vpc=vpc.id))


def detach_internet_gateway(repo: Repo, tenant: str, igw_id: str, vpc_id: str) -> None:
    """Routes through it become blackholes; refused while the VPC has public addresses
    mapped, which would lose their way out."""
    igw = repo.owned(InternetGateway, igw_id, tenant)
    vpc = repo.owned(Vpc, vpc_id, tenant)
    if igw.vpc != vpc.id:
        raise ServiceError(
            "Gateway.NotAttached", f"resource {igw.id} is not attached to network {vpc.id}"
        )
    if addresses.mapped_in(repo, vpc.id):
        raise ServiceError(
            "DependencyViolation",
            f"Network {vpc.id} has some mapped public address(es). Please unmap those public "
            "address(es) before detaching the gateway.",
        )
    repo.put(replace(igw, vpc=""))


def delete_internet_gateway(repo: Repo, tenant: str, igw_id: str) -> None:
    igw = repo.owned(InternetGateway, igw_id, tenant)
    if igw.vpc:
        raise dependency("internetGateway", igw.id)
    repo.delete(InternetGateway, igw.id)


# -- NAT gateways ---------------------------------------------------------------------------
def create_nat_gateway(
    repo: Repo,
    tenant: str,
    subnet_id: str,
    allocation_id: str | None,
    now: float,
    connectivity: str = "public",
) -> NatGateway:
    """A NAT gateway in the subnet, with the lowest free private address of it. A public one
    holds an Elastic IP not associated with anything else, and fails (state failed, as EC2
    records it) when its VPC has no internet gateway; a private one needs none."""
    subnet = repo.owned(Subnet, subnet_id, tenant)
    if connectivity not in ("public", "private"):
        raise invalid_value("connectivityType", connectivity, "Use public or private.")
    eip: ElasticIp | None = None
    if connectivity == "public":
        if not allocation_id:
            raise ServiceError(
                "MissingParameter",
                "The request must contain the parameter allocationId for a public NAT gateway",
            )
        eip = addresses.live(repo, repo.owned(ElasticIp, allocation_id, tenant))
        if eip.association or eip.nat_gateway:
            raise ServiceError(
                "Resource.AlreadyAssociated", f"Elastic IP address [{eip.id}] is already associated"
            )
    elif allocation_id:
        raise ServiceError(
            "InvalidParameterCombination", "A private NAT gateway takes no allocationId"
        )
    _purge_deleted(repo, tenant, now)
    nat_id = repo.new_id("nat", NatGateway)
    eni = repo.new_id("eni", Interface)
    if eip is not None and not repo.find(InternetGateway, "vpc", subnet.vpc):
        nat = NatGateway(
            nat_id,
            tenant,
            subnet.vpc,
            subnet.id,
            eip.id,
            eni,
            "",
            "failed",
            now,
            failure="Gateway.NotAttached",
        )
        repo.put(nat)
        return nat
    ip = _private_address(repo, subnet)
    nat = NatGateway(
        nat_id,
        tenant,
        subnet.vpc,
        subnet.id,
        "" if eip is None else eip.id,
        eni,
        ip,
        "available",
        now,
    )
    repo.put(nat)
    # its address is taken in the subnet like a VM's movable one, owned by its interface
    repo.put(AddressOwner(subnet.vpc, ip, eni, tenant))
    if eip is not None:
        repo.put(
            replace(
                eip,
                association=repo.new_id("eipassoc", ElasticIp),
                interface=eni,
                private_ip=ip,
                nat_gateway=nat.id,
            )
        )
    return nat


def _private_address(repo: Repo, subnet: Subnet) -> str:
    taken = VpcAddresses(repo, subnet.vpc, subnet)
    hint = repo.counter(hint_counter(subnet.id), 0)
    found = lowest_free(IPv4Network(subnet.cidr), taken, IPv4Address(hint) if hint else None)
    if found is None:
        raise ServiceError(
            "InsufficientFreeAddressesInSubnet",
            f"There are not enough free addresses in subnet '{subnet.id}' "
            "to satisfy the requested number of NAT gateways.",
        )
    repo.set_counter(hint_counter(subnet.id), int(found) + 1)
    return str(found)


def delete_nat_gateway(repo: Repo, tenant: str, nat_id: str, now: float) -> NatGateway:
    """The gateway lets go of its addresses and shows as deleted for a while."""
    nat = repo.owned(NatGateway, nat_id, tenant)
    if nat.state == "deleted":
        return nat
    if nat.ip:
        owner = repo.get(AddressOwner, owner_key(nat.vpc, nat.ip))
        if owner is not None and owner.interface == nat.interface:
            repo.delete(AddressOwner, owner_key(nat.vpc, nat.ip))
            repo.set_counter(hint_counter(nat.subnet), 0)
    eip = repo.get(ElasticIp, nat.allocation) if nat.allocation else None
    if eip is not None and eip.nat_gateway == nat.id:
        repo.put(ElasticIp(eip.id, eip.tenant, eip.public_ip))
    deleted = replace(nat, state="deleted", deleted=now)
    repo.put(deleted)
    return deleted


def _purge_deleted(repo: Repo, tenant: str, now: float) -> None:
    for nat in repo.find(NatGateway, "tenant", tenant):
        if nat.state == "deleted" and now - nat.deleted > DELETED_VISIBLE:
            repo.delete(NatGateway, nat.id)


def describe_nat_gateways(repo: Repo, tenant: str, now: float) -> list[NatGateway]:
    """A tenant's NAT gateways; deleted ones only for DELETED_VISIBLE seconds."""
    return [
        n
        for n in repo.find(NatGateway, "tenant", tenant)
        if n.state != "deleted" or now - n.deleted <= DELETED_VISIBLE
    ]


def live_nat_in_subnet(repo: Repo, subnet_id: str) -> bool:
    return any(
        n.subnet == subnet_id and n.state != "deleted" and n.state != "failed"
        for n in repo.find(NatGateway, "vpc", _vpc_of(repo, subnet_id))
    )


def _vpc_of(repo: Repo, subnet_id: str) -> str:
    subnet = repo.get(Subnet, subnet_id)
    return "" if subnet is None else subnet.vpc
