"""Instances and their interfaces: address and MAC assignment, movable addresses (VIPs)
and the gratuitous-ARP claims that move them."""

from collections.abc import Iterable
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network

from openvpc.model.resources import (
    AddressOwner,
    ComputeNode,
    Instance,
    Interface,
    Route,
    RouteTable,
    Subnet,
    Vpc,
)
from openvpc.service import routing
from openvpc.service.errors import ServiceError, in_use, invalid_value
from openvpc.service.ipam import assignable, lowest_free, mac_for, reserved
from openvpc.service.repo import Repo, owner_key
from openvpc.service.validate import check_host_name, check_netns, parse_address


def run_instance(
    repo: Repo,
    tenant: str,
    subnet_id: str,
    name: str,
    node: str,
    netns: str,
    ip: str | None = None,
    allowed_addresses: Iterable[str] = (),
    ifname: str = "eth0",
) -> tuple[Instance, Interface]:
    """An instance on `node` with one interface in the subnet; claims each allowed address
    that has no owner yet."""
    subnet = repo.owned(Subnet, subnet_id, tenant)
    vpc = repo.owned(Vpc, subnet.vpc, tenant)
    check_host_name(name)
    check_netns(netns, ifname)
    if not isinstance(node, str) or repo.get(ComputeNode, node) is None:
        raise invalid_value("node", node, "No compute node has that name.")
    if any((i.node, i.ifname) == (node, ifname) for i in repo.find(Interface, "netns", netns)):
        raise ServiceError(
            "InvalidParameterValue",
            f"Namespace {netns} on {node} already holds an interface named {ifname}.",
        )
    taken = VpcAddresses(repo, vpc.id, subnet)
    allowed = _allowed_addresses(repo, vpc, taken, allowed_addresses)
    if ip is not None and str(parse_address(ip, "privateIpAddress")) in allowed:
        raise invalid_value("allowedAddresses", ip, "It is the interface's own address.")
    # an address may not be both, so IPAM steps around the new movable ones too
    taken.extra = {IPv4Address(a) for a in allowed}
    addr = _primary_address(repo, subnet, IPv4Network(subnet.cidr), taken, ip)
    eni = repo.new_id("eni", Interface)
    instance = Instance(repo.new_id("i", Instance), tenant, name, node, eni)
    mac_n = repo.counter("mac", 1)
    repo.set_counter("mac", mac_n + 1)
    interface = Interface(
        eni,
        tenant,
        subnet.id,
        instance.id,
        node,
        mac_for(mac_n),
        str(addr),
        netns,
        ifname,
        allowed_addresses=allowed,
    )
    repo.put(instance)
    repo.put(interface)
    for vip in allowed:
        if repo.get(AddressOwner, owner_key(vpc.id, vip)) is None:
            repo.put(AddressOwner(vpc.id, vip, eni, tenant))
    return instance, interface


class VpcAddresses:
    """The addresses of a VPC in use (interfaces' own, owned movable ones, and `extra`),
    tested one at a time by indexed lookups rather than gathered by a scan. `in` asks about
    an address of `subnet`; `primary` about one of `within` (subnets never overlap in a VPC,
    so an interface holding an address is in the subnet that contains it)."""

    def __init__(self, repo: Repo, vpc: str, subnet: Subnet) -> None:
        self.repo = repo
        self.vpc = vpc
        self.subnet = subnet
        self.extra: set[IPv4Address] = set()

    def primary(self, addr: IPv4Address, within: Subnet) -> bool:
        """Whether an interface of subnet `within` has `addr` as its own."""
        return bool(self.repo.find(Interface, "ip", str(addr), subnet=within.id))

    def __contains__(self, addr: object) -> bool:
        if not isinstance(addr, IPv4Address):
            return False
        return (
            addr in self.extra
            or self.repo.get(AddressOwner, owner_key(self.vpc, str(addr))) is not None
            or self.primary(addr, self.subnet)
        )


def hint_counter(subnet_id: str) -> str:
    """Every assignable address of the subnet below this counter is known to be in use."""
    return f"ipam/{subnet_id}"


def _primary_address(
    repo: Repo, subnet: Subnet, net: IPv4Network, used: VpcAddresses, ip: str | None
) -> IPv4Address:
    if ip is None:
        hint = repo.counter(hint_counter(subnet.id), 0)
        found = lowest_free(net, used, IPv4Address(hint) if hint else None)
        if found is None:
            raise ServiceError(
                "InsufficientFreeAddressesInSubnet",
                f"There are not enough free addresses in subnet '{subnet.id}' "
                "to satisfy the requested number of instances.",
            )
        repo.set_counter(hint_counter(subnet.id), int(found) + 1)
        return found
    addr = parse_address(ip, "privateIpAddress")
    if addr not in net:
        raise ServiceError(
            "InvalidParameterValue",
            f"Address {addr} does not fall within the subnet's address range {net}",
        )
    if not assignable(net, addr):
        raise ServiceError(
            "InvalidParameterValue", f"Address {addr} is in subnet's reserved address range"
        )
    if addr in used:
        raise in_use(str(addr))
    return addr


def _allowed_addresses(
    repo: Repo, vpc: Vpc, taken: VpcAddresses, wanted: Iterable[str]
) -> tuple[str, ...]:
    """Movable addresses: inside the VPC, never reserved, never another interface's own."""
    if isinstance(wanted, str):  # a lone string would be read as single characters
        raise invalid_value("allowedAddresses", wanted, "Expected a list of addresses.")
    wanted = list(wanted)
    if not wanted:
        return ()
    vpc_net = IPv4Network(vpc.cidr)
    off_limits = set(reserved(vpc_net))
    subnets = repo.find(Subnet, "vpc", vpc.id)
    for s in subnets:
        off_limits |= reserved(IPv4Network(s.cidr))
    result: list[str] = []
    for text in wanted:
        addr = parse_address(text, "allowedAddresses")
        if addr not in vpc_net:
            raise invalid_value("allowedAddresses", addr, f"It is outside the VPC's {vpc_net}.")
        if addr in off_limits:
            raise invalid_value("allowedAddresses", addr, "It is a reserved address.")
        home = next((s for s in subnets if addr in IPv4Network(s.cidr)), None)
        if home is not None and taken.primary(addr, home):
            raise in_use(str(addr))
        if str(addr) in result:
            raise invalid_value("allowedAddresses", addr, "It is listed twice.")
        result.append(str(addr))
    return tuple(result)


def terminate_instance(repo: Repo, tenant: str, instance_id: str) -> None:
    """Remove an instance and its interface. Routes through the interface become blackholes
    (as EC2 shows them); each address it owned passes to another interface listing it."""
    instance = repo.owned(Instance, instance_id, tenant)
    interface = repo.get(Interface, instance.interface)
    repo.delete(Instance, instance.id)
    if interface is None:
        return
    repo.delete(Interface, interface.id)
    # its own address and movable ones it owned (in any subnet of the VPC) may now be free
    # below a subnet's hint: lowest-free starts over in each
    subnet = repo.get(Subnet, interface.subnet)
    for other in [] if subnet is None else repo.find(Subnet, "vpc", subnet.vpc):
        repo.set_counter(hint_counter(other.id), 0)
    for table in repo.all(RouteTable):
        if any(r.target == interface.id for r in table.routes):
            routes = tuple(
                Route(r.destination, routing.BLACKHOLE) if r.target == interface.id else r
                for r in table.routes
            )
            repo.put(replace(table, routes=routes))
    remaining = repo.all(Interface)
    for owner in repo.all(AddressOwner):
        if owner.interface != interface.id:
            continue
        heir = next((i for i in remaining if _may_own(repo, i, owner.vpc, owner.ip)), None)
        if heir is None:
            repo.delete(AddressOwner, owner_key(owner.vpc, owner.ip))
        else:
            repo.put(replace(owner, interface=heir.id))


def _may_own(repo: Repo, interface: Interface, vpc: str, ip: str) -> bool:
    if ip not in interface.allowed_addresses:
        return False
    subnet = repo.get(Subnet, interface.subnet)
    return subnet is not None and subnet.vpc == vpc


def learn_address(repo: Repo, node: str, interface_id: str, ip: str) -> bool:
    """A VM on `node` claimed `ip` by gratuitous ARP: move the address to its interface if
    the interface lives there and may own it."""
    interface = repo.get(Interface, interface_id) if isinstance(interface_id, str) else None
    if interface is None or interface.node != node:
        return False
    try:
        addr = str(IPv4Address(ip))
    except (ValueError, TypeError):
        return False
    if addr not in interface.allowed_addresses:
        return False
    subnet = repo.get(Subnet, interface.subnet)
    if subnet is None:
        return False
    repo.put(AddressOwner(subnet.vpc, addr, interface.id, interface.tenant))
    return True
