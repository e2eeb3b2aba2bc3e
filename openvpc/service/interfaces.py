"""Network interfaces (ENIs) on their own: create and delete, attach to and detach from an
instance, their attributes, and their secondary private addresses."""

from collections.abc import Iterable, Sequence
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network

from openvpc.model.resources import AddressOwner, Instance, Interface, Subnet, Vpc
from openvpc.service import catalogue
from openvpc.service.compute import (
    VpcAddresses,
    hint_counter,
    is_secondary,
    next_mac,
    primary_address,
    remove_interface,
)
from openvpc.service.errors import ServiceError, in_use, invalid_value
from openvpc.service.ipam import assignable, lowest_free
from openvpc.service.repo import Repo, owner_key
from openvpc.service.validate import check_netns, parse_address

MAX_DESCRIPTION = 255
MAX_DEVICE_INDEX = 31


def groups_for(repo: Repo, tenant: str, vpc_id: str, group_ids: Iterable[str]) -> tuple[str, ...]:
    """The security groups of a new or changed interface. Stored as given until the security
    group service (service.security.check_groups) validates them."""
    if isinstance(group_ids, str):
        raise invalid_value("groupId", group_ids, "Expected a list of group ids.")
    return tuple(dict.fromkeys(group_ids))


def check_description(text: str) -> str:
    if not isinstance(text, str) or len(text) > MAX_DESCRIPTION:
        raise invalid_value("description", text, f"Use at most {MAX_DESCRIPTION} characters.")
    return text


def create_interface(
    repo: Repo,
    tenant: str,
    subnet_id: str,
    ip: str | None = None,
    groups: Iterable[str] = (),
    description: str = "",
    secondary_ips: Sequence[str] = (),
    secondary_count: int = 0,
) -> Interface:
    """A detached interface in a subnet, with its own MAC and address (and any secondary
    addresses asked for)."""
    subnet = repo.owned(Subnet, subnet_id, tenant)
    vpc = repo.owned(Vpc, subnet.vpc, tenant)
    check_description(description)
    group_ids = groups_for(repo, tenant, vpc.id, groups)
    _check_count(secondary_count)
    if 1 + len(secondary_ips) + secondary_count > catalogue.MAX_IPS_ANY:
        raise _limit()
    addr = primary_address(repo, subnet, VpcAddresses(repo, vpc.id, subnet), ip)
    interface = Interface(
        repo.new_id("eni", Interface),
        tenant,
        subnet.id,
        "",
        "",
        next_mac(repo),
        str(addr),
        "",
        "",
        groups=group_ids,
        description=description,
        delete_on_termination=False,
    )
    repo.put(interface)  # its address is taken before the secondary ones are chosen
    if secondary_ips or secondary_count:
        interface = assign(repo, interface, secondary_ips, secondary_count, False)
    return interface


def delete_interface(repo: Repo, tenant: str, interface_id: str) -> None:
    interface = repo.owned(Interface, interface_id, tenant)
    if interface.instance:
        raise ServiceError(
            "InvalidNetworkInterface.InUse",
            f"The networkInterface ID '{interface.id}' is currently in use.",
        )
    remove_interface(repo, interface)


def attach_interface(
    repo: Repo,
    tenant: str,
    interface_id: str,
    instance_id: str,
    device_index: int,
    now: float = 0.0,
) -> Interface:
    """Plug a detached interface into a running or stopped instance of the same VPC and
    zone, at a free device index (it becomes eth<index> in the VM)."""
    interface = repo.owned(Interface, interface_id, tenant)
    instance = repo.owned(Instance, instance_id, tenant)
    if isinstance(device_index, bool) or not isinstance(device_index, int):
        raise invalid_value("deviceIndex", device_index, "Expected an integer.")
    if not 1 <= device_index <= MAX_DEVICE_INDEX:
        raise invalid_value(
            "deviceIndex", device_index, f"It must be between 1 and {MAX_DEVICE_INDEX}."
        )
    if interface.instance:
        raise ServiceError("InvalidNetworkInterface.InUse", f"Interface: [{interface.id}] in use.")
    if instance.state not in ("running", "stopped"):
        raise ServiceError(
            "IncorrectInstanceState",
            f"The instance '{instance.id}' is not in a valid state for this operation.",
        )
    subnet = repo.get(Subnet, interface.subnet)
    if subnet is None or subnet.vpc != instance.vpc:
        raise ServiceError(
            "InvalidParameterCombination",
            "The network interface and the instance must be in the same VPC.",
        )
    if subnet.zone != instance.zone:
        raise ServiceError(
            "InvalidParameterCombination",
            "You may not attach a network interface to an instance if they are not in the "
            "same availability zone",
        )
    attached = attached_to(repo, instance)
    if any(i.device_index == device_index for i in attached):
        raise invalid_value(
            "deviceIndex",
            device_index,
            f"Instance '{instance.id}' already has an interface attached at device index "
            f"'{device_index}'.",
        )
    kind = catalogue.TYPES.get(instance.instance_type)
    limit = kind.max_interfaces if kind is not None else MAX_DEVICE_INDEX + 1
    if len(attached) + 1 > limit:
        raise ServiceError(
            "AttachmentLimitExceeded",
            f"Interface count {len(attached) + 1} exceeds the limit for {instance.instance_type}",
        )
    primary = repo.get(Interface, instance.interface)
    if primary is None:
        raise ServiceError("InternalError", f"instance {instance.id} has no primary interface")
    ifname = f"eth{device_index}"
    check_netns(primary.netns, ifname)
    interface = replace(
        interface,
        instance=instance.id,
        node=instance.node,
        netns=primary.netns,
        ifname=ifname,
        attachment=repo.new_id("eni-attach", Interface),
        device_index=device_index,
        delete_on_termination=False,
        attached=now,
    )
    repo.put(interface)
    return interface


def detach_interface(repo: Repo, tenant: str, attachment_id: str) -> Interface:
    """Unplug a secondary interface (the primary one, device index 0, stays)."""
    interface = by_attachment(repo, tenant, attachment_id)
    if interface.device_index == 0:
        raise ServiceError(
            "OperationNotPermitted", "The network interface at device index 0 cannot be detached."
        )
    interface = detached(interface)
    repo.put(interface)
    return interface


def detached(interface: Interface) -> Interface:
    return replace(
        interface,
        instance="",
        node="",
        netns="",
        ifname="",
        attachment="",
        device_index=0,
        delete_on_termination=False,
        attached=0.0,
    )


def by_attachment(repo: Repo, tenant: str, attachment_id: str) -> Interface:
    found = None
    if isinstance(attachment_id, str) and attachment_id:
        found = next(
            (i for i in repo.find(Interface, "tenant", tenant) if i.attachment == attachment_id),
            None,
        )
    if found is None:
        raise ServiceError(
            "InvalidAttachmentID.NotFound", f"The attachment ID '{attachment_id}' does not exist"
        )
    return found


def attached_to(repo: Repo, instance: Instance) -> list[Interface]:
    """The interfaces attached to an instance, by device index."""
    found = [
        i for i in repo.find(Interface, "tenant", instance.tenant) if i.instance == instance.id
    ]
    return sorted(found, key=lambda i: i.device_index)


def modify_interface(
    repo: Repo,
    tenant: str,
    interface_id: str,
    *,
    source_check: bool | None = None,
    groups: Iterable[str] | None = None,
    description: str | None = None,
    attachment: tuple[str, bool] | None = None,
) -> Interface:
    """Change the attributes given: source/destination check, security groups, description,
    or (attachment id, delete on termination)."""
    interface = repo.owned(Interface, interface_id, tenant)
    if source_check is not None:
        if not isinstance(source_check, bool):
            raise invalid_value("sourceDestCheck", source_check, "Expected a boolean.")
        interface = replace(interface, source_check=source_check)
    if groups is not None:
        wanted = [groups] if isinstance(groups, str) else list(groups)
        if not wanted:  # an empty list would mean the default group
            raise invalid_value("groupId", "", "At least one security group is required.")
        subnet = repo.owned(Subnet, interface.subnet, tenant)
        interface = replace(interface, groups=groups_for(repo, tenant, subnet.vpc, wanted))
    if description is not None:
        interface = replace(interface, description=check_description(description))
    if attachment is not None:
        attachment_id, delete = attachment
        if not interface.attachment or attachment_id != interface.attachment:
            raise ServiceError(
                "InvalidAttachmentID.NotFound",
                f"The attachment ID '{attachment_id}' does not exist",
            )
        interface = replace(interface, delete_on_termination=bool(delete))
    repo.put(interface)
    return interface


def assign_private_ips(
    repo: Repo,
    tenant: str,
    interface_id: str,
    ips: Sequence[str] = (),
    count: int = 0,
    allow_reassignment: bool = False,
) -> tuple[str, ...]:
    """Add secondary private addresses (these or `count` free ones); returns those added."""
    interface = repo.owned(Interface, interface_id, tenant)
    _check_count(count)
    before = set(interface.secondary_ips)
    after = assign(repo, interface, ips, count, allow_reassignment)
    return tuple(ip for ip in after.secondary_ips if ip not in before)


def unassign_private_ips(repo: Repo, tenant: str, interface_id: str, ips: Sequence[str]) -> None:
    interface = repo.owned(Interface, interface_id, tenant)
    subnet = repo.owned(Subnet, interface.subnet, tenant)
    if isinstance(ips, str) or not ips:
        raise invalid_value("privateIpAddress", ips, "Expected a list of addresses.")
    gone = {str(parse_address(ip, "privateIpAddress")) for ip in ips}
    if not gone <= set(interface.secondary_ips):
        raise ServiceError(
            "InvalidParameterValue",
            f"Some of the specified addresses are not assigned to interface {interface.id}",
        )
    for ip in gone:
        repo.delete(AddressOwner, owner_key(subnet.vpc, ip))
    repo.put(
        replace(interface, secondary_ips=tuple(a for a in interface.secondary_ips if a not in gone))
    )
    repo.set_counter(hint_counter(subnet.id), 0)


def _check_count(count: int) -> None:
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise invalid_value("secondaryPrivateIpAddressCount", count, "Expected a count >= 0.")


def _limit() -> ServiceError:
    return ServiceError(
        "PrivateIpAddressLimitExceeded", "Number of private addresses will exceed limit."
    )


def assign(
    repo: Repo,
    interface: Interface,
    wanted: Sequence[str],
    count: int,
    reassign: bool,
) -> Interface:
    """Give `interface` the addresses `wanted` and `count` free ones of its subnet as
    secondary addresses (each owned by it, so IPAM steps around it and hosts route it)."""
    if isinstance(wanted, str):
        raise invalid_value("privateIpAddress", wanted, "Expected a list of addresses.")
    subnet = repo.owned(Subnet, interface.subnet, interface.tenant)
    net = IPv4Network(subnet.cidr)
    instance = repo.get(Instance, interface.instance) if interface.instance else None
    limit = catalogue.max_ips(instance.instance_type) if instance else catalogue.MAX_IPS_ANY
    if 1 + len(interface.secondary_ips) + len(wanted) + count > limit:
        raise _limit()
    taken = VpcAddresses(repo, subnet.vpc, subnet)
    added: list[str] = []
    for text in wanted:
        addr = parse_address(text, "privateIpAddress")
        if addr not in net:
            raise invalid_value(
                "privateIpAddress", addr, f"It does not fall within the subnet's range {net}."
            )
        if not assignable(net, addr):
            raise invalid_value("privateIpAddress", addr, "It is in the subnet's reserved range.")
        mine = str(addr) == interface.ip or str(addr) in (*interface.secondary_ips, *added)
        if mine or (addr in taken and not (reassign and _take(repo, subnet, addr))):
            raise in_use(str(addr))
        taken.extra.add(addr)
        added.append(str(addr))
    for _ in range(count):
        found = lowest_free(net, taken)
        if found is None:
            raise ServiceError(
                "InsufficientFreeAddressesInSubnet",
                f"There are not enough free addresses in subnet '{subnet.id}' to satisfy "
                "the requested number of addresses.",
            )
        taken.extra.add(found)
        added.append(str(found))
    for ip in added:
        repo.put(AddressOwner(subnet.vpc, ip, interface.id, interface.tenant))
    interface = replace(interface, secondary_ips=(*interface.secondary_ips, *added))
    repo.put(interface)
    return interface


def _take(repo: Repo, subnet: Subnet, addr: IPv4Address) -> bool:
    """AllowReassignment: take a secondary address from another interface of the subnet."""
    if not is_secondary(repo, subnet.vpc, addr):
        return False
    owner = repo.get(AddressOwner, owner_key(subnet.vpc, str(addr)))
    holder = None if owner is None else repo.get(Interface, owner.interface)
    if holder is None or holder.subnet != subnet.id:
        return False
    kept = tuple(a for a in holder.secondary_ips if a != str(addr))
    repo.put(replace(holder, secondary_ips=kept))
    return True
