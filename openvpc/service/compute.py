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
    Subnet,
    Vpc,
)
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
    *,
    instance_id: str | None = None,
) -> tuple[Instance, Interface]:
    """An instance on `node` with one interface in the subnet; claims each allowed address
    that has no owner yet. `instance_id` is one the caller took from `repo.new_id`."""
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
    addr = primary_address(repo, subnet, taken, ip)
    eni = repo.new_id("eni", Interface)
    instance = Instance(
        instance_id or repo.new_id("i", Instance),
        tenant,
        name,
        node,
        eni,
        zone=subnet.zone,
        revision=repo.tx.revision + 1,  # the revision this transaction commits
        dns_name=f"ip-{str(addr).replace('.', '-')}.{vpc.domain}",
        subnet=subnet.id,
        vpc=vpc.id,
    )
    interface = Interface(
        eni,
        tenant,
        subnet.id,
        instance.id,
        node,
        next_mac(repo),
        str(addr),
        netns,
        ifname,
        allowed_addresses=allowed,
        attachment=repo.new_id("eni-attach", Interface),
    )
    repo.put(instance)
    repo.put(interface)
    for vip in allowed:
        if repo.get(AddressOwner, owner_key(vpc.id, vip)) is None:
            repo.put(AddressOwner(vpc.id, vip, eni, tenant))
    return instance, interface


def next_mac(repo: Repo) -> str:
    n = repo.counter("mac", 1)
    repo.set_counter("mac", n + 1)
    return mac_for(n)


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


def is_secondary(repo: Repo, vpc: str, addr: IPv4Address | str) -> bool:
    """Whether `addr` is an interface's secondary private address (never movable by GARP)."""
    owner = repo.get(AddressOwner, owner_key(vpc, str(addr)))
    if owner is None:
        return False
    holder = repo.get(Interface, owner.interface)
    return holder is not None and str(addr) in holder.secondary_ips


def hint_counter(subnet_id: str) -> str:
    """Every assignable address of the subnet below this counter is known to be in use."""
    return f"ipam/{subnet_id}"


def primary_address(repo: Repo, subnet: Subnet, used: VpcAddresses, ip: str | None) -> IPv4Address:
    """The address asked for, checked, or the lowest free one of the subnet."""
    net = IPv4Network(subnet.cidr)
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
        if (home is not None and taken.primary(addr, home)) or is_secondary(repo, vpc.id, addr):
            raise in_use(str(addr))
        if str(addr) in result:
            raise invalid_value("allowedAddresses", addr, "It is listed twice.")
        result.append(str(addr))
    return tuple(result)


def remove_interface(repo: Repo, interface: Interface) -> None:
    """Delete an interface and free its addresses. Routes through it keep its id and show as
    blackholes (routing.route_state), as EC2 shows them; its secondary addresses go with it,
    and each movable address it owned passes to another interface listing it."""
    repo.delete(Interface, interface.id)
    # its addresses (in any subnet of the VPC) may now be free below a subnet's hint:
    # lowest-free starts over in each
    subnet = repo.get(Subnet, interface.subnet)
    for other in [] if subnet is None else repo.find(Subnet, "vpc", subnet.vpc):
        repo.set_counter(hint_counter(other.id), 0)
    owned = [
        o
        for o in ([] if subnet is None else repo.find(AddressOwner, "vpc", subnet.vpc))
        if o.interface == interface.id
    ]
    if not owned:
        return
    remaining = repo.all(Interface)
    for owner in owned:
        heir = None
        if owner.ip not in interface.secondary_ips:
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
    if subnet is None or is_secondary(repo, subnet.vpc, addr):
        return False
    repo.put(AddressOwner(subnet.vpc, addr, interface.id, interface.tenant))
    return True
