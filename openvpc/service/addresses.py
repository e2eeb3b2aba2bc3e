"""Elastic IPs: public addresses from the operator's pool, allocated to a tenant and mapped
onto a private address of an interface in a VPC that has an internet gateway."""

from dataclasses import replace
from ipaddress import IPv4Network

from openvpc.model.gateways import ElasticIp, InternetGateway, NatGateway
from openvpc.model.internet import INTERNET_NETNS_SUFFIX, InternetEdge, edge_addresses
from openvpc.model.resources import ComputeNode, Instance, Interface, Subnet
from openvpc.service.errors import ServiceError, in_use, invalid_value, not_found
from openvpc.service.instances import netns_prefix
from openvpc.service.repo import Repo
from openvpc.service.validate import parse_address, parse_cidr

PUBLIC_POOL = "public_pool"
INTERNET_NODE = "internet_node"  # the gateway node: its vRouter holds the internet port
DEFAULT_PUBLIC_POOL = "198.51.100.0/24"  # TEST-NET-2: never routed on the internet
MAX_ADDRESSES = 5  # per tenant, AWS's default quota


def public_pool(repo: Repo) -> IPv4Network:
    return IPv4Network(repo.text_setting(PUBLIC_POOL, DEFAULT_PUBLIC_POOL))


def set_public_pool(repo: Repo, cidr: str) -> None:
    """The block Elastic IPs are allocated from; addresses already allocated keep theirs."""
    net = parse_cidr(cidr, "publicPool")
    if net.prefixlen > 30:
        raise invalid_value("publicPool", cidr, "The pool needs at least a /30.")
    repo.set_text_setting(PUBLIC_POOL, str(net))


def set_internet_node(repo: Repo, node: str) -> None:
    """Name the gateway node ("" for none): the compiler gives it the internet port."""
    if node and repo.get(ComputeNode, node) is None:
        raise ServiceError("InvalidHostID.NotFound", f"The host ID '{node}' does not exist")
    repo.set_text_setting(INTERNET_NODE, node)


def internet_edge(repo: Repo) -> InternetEdge | None:
    """The internet port, where a gateway node is set: in a namespace named after the VMs'
    prefix, with the pool's last two hosts (docs/internet.md)."""
    node = repo.text_setting(INTERNET_NODE, "")
    if not node:
        return None
    pool = public_pool(repo)
    ip, gateway = edge_addresses(str(pool))
    netns = netns_prefix(repo) + INTERNET_NETNS_SUFFIX
    return InternetEdge(node, netns, ip, gateway, pool.prefixlen)


def live(repo: Repo, eip: ElasticIp) -> ElasticIp:
    """The address as it stands: an association whose interface went away (its instance
    was terminated) is over, as EC2 ends it."""
    if eip.association and not eip.nat_gateway and repo.get(Interface, eip.interface) is None:
        return ElasticIp(eip.id, eip.tenant, eip.public_ip)
    return eip


def allocate(repo: Repo, tenant: str) -> ElasticIp:
    repo.tenant(tenant)
    if len(repo.find(ElasticIp, "tenant", tenant)) >= MAX_ADDRESSES:
        raise ServiceError(
            "AddressLimitExceeded", "The maximum number of addresses has been reached."
        )
    pool = public_pool(repo)
    taken = {e.public_ip for e in repo.all(ElasticIp)}
    edge = internet_edge(repo)
    if edge is not None:
        taken |= {edge.ip, edge.gateway}
    hosts = pool.hosts() if pool.prefixlen < 31 else iter(pool)
    free = next((str(a) for a in hosts if str(a) not in taken), None)
    if free is None:
        raise ServiceError(
            "InsufficientAddressCapacity", "There are no free addresses in the public pool."
        )
    eip = ElasticIp(repo.new_id("eipalloc", ElasticIp), tenant, free)
    repo.put(eip)
    return eip


def associate(
    repo: Repo,
    tenant: str,
    allocation_id: str,
    instance_id: str | None = None,
    interface_id: str | None = None,
    private_ip: str | None = None,
    allow_reassociation: bool | None = None,
) -> ElasticIp:
    """Map the address onto an instance's primary interface or onto an interface (its
    primary address unless `private_ip` names another of its addresses). An address already
    associated elsewhere moves, unless `allow_reassociation` is False; the target's VPC needs
    an internet gateway."""
    eip = live(repo, repo.owned(ElasticIp, allocation_id, tenant))
    if bool(instance_id) == bool(interface_id):
        if not instance_id:
            raise ServiceError(
                "MissingParameter", "Either instanceId or networkInterfaceId must be specified"
            )
        raise ServiceError(
            "InvalidParameterCombination",
            "The parameters instanceId and networkInterfaceId cannot be specified together",
        )
    instance = ""
    if instance_id:
        found = repo.owned(Instance, instance_id, tenant)
        if found.state == "terminated":  # described for a while, associated with nothing
            raise not_found("instance", found.id)
        instance, interface_id = found.id, found.interface
    iface = repo.owned(Interface, str(interface_id), tenant)
    instance = instance or iface.instance
    ip = iface.ip
    if private_ip:
        ip = str(parse_address(private_ip, "privateIpAddress"))
        if ip != iface.ip and ip not in iface.allowed_addresses:
            raise invalid_value(
                "privateIpAddress", private_ip, f"It is not an address of {iface.id}."
            )
    subnet = repo.get(Subnet, iface.subnet)
    vpc = "" if subnet is None else subnet.vpc
    if not repo.find(InternetGateway, "vpc", vpc):
        raise ServiceError(
            "Gateway.NotAttached", f"Network {vpc} is not attached to any internet gateway"
        )
    if eip.nat_gateway:
        raise ServiceError(
            "Resource.AlreadyAssociated",
            f"Elastic IP address [{eip.id}] is already associated with {eip.nat_gateway}",
        )
    if eip.association and allow_reassociation is False and eip.interface != iface.id:
        raise ServiceError(
            "Resource.AlreadyAssociated",
            f"Elastic IP address [{eip.id}] is already associated",
        )
    # one public address per private address: another one mapped there lets go
    for other in repo.find(ElasticIp, "interface", iface.id):
        if other.id != eip.id and other.private_ip == ip:
            repo.put(ElasticIp(other.id, other.tenant, other.public_ip))
    moved = replace(
        eip,
        association=repo.new_id("eipassoc", ElasticIp),
        interface=iface.id,
        private_ip=ip,
        instance=instance,
    )
    repo.put(moved)
    return moved


def disassociate(repo: Repo, tenant: str, association_id: str) -> None:
    found = None
    if isinstance(association_id, str) and association_id:
        for eip in repo.find(ElasticIp, "tenant", tenant):
            if live(repo, eip).association == association_id:
                found = eip
    if found is None:
        raise not_found("association", str(association_id))
    if found.nat_gateway:
        raise ServiceError(
            "OperationNotPermitted",
            f"The address {found.public_ip} is held by {found.nat_gateway}; delete the NAT "
            "gateway to release it",
        )
    repo.put(ElasticIp(found.id, found.tenant, found.public_ip))


def release(repo: Repo, tenant: str, allocation_id: str) -> None:
    eip = live(repo, repo.owned(ElasticIp, allocation_id, tenant))
    if eip.association or eip.nat_gateway:
        raise in_use(eip.public_ip)
    repo.delete(ElasticIp, eip.id)


def describe(repo: Repo, tenant: str) -> list[ElasticIp]:
    return [live(repo, e) for e in repo.find(ElasticIp, "tenant", tenant)]


def mapped_in(repo: Repo, vpc: str) -> list[ElasticIp]:
    """Addresses mapped onto interfaces (or NAT gateways) of a VPC."""
    result = []
    for eip in repo.all(ElasticIp):
        eip = live(repo, eip)
        if eip.nat_gateway:
            nat = repo.get(NatGateway, eip.nat_gateway)
            if nat is not None and nat.vpc == vpc:
                result.append(eip)
        elif eip.interface:
            iface = repo.get(Interface, eip.interface)
            subnet = None if iface is None else repo.get(Subnet, iface.subnet)
            if subnet is not None and subnet.vpc == vpc:
                result.append(eip)
    return result
