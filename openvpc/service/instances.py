"""Instances through their lifecycle: launch (the catalogue, quota and address checks, and
placement on the least loaded node of the subnet's zone), stop, start and terminate, and the
lazy purge of terminated ones an hour later."""

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv4Network

from openvpc.model.resources import (
    AddressOwner,
    ComputeNode,
    Instance,
    InstanceState,
    Interface,
    Subnet,
    Vpc,
)
from openvpc.service import catalogue
from openvpc.service.compute import remove_interface, run_instance
from openvpc.service.errors import ServiceError, invalid_value, not_found
from openvpc.service.interfaces import (
    assign,
    attached_to,
    check_description,
    detached,
    groups_for,
    modify_interface,
)
from openvpc.service.ipam import assignable, capacity
from openvpc.service.repo import Repo

KEPT_TERMINATED = 3600.0  # seconds a terminated instance stays describable
INSTANCE_QUOTA = 64  # instances (not terminated) per tenant: a plain count, not vCPUs
NETNS_PREFIX = "vm_netns_prefix"  # the setting naming VM namespaces: <prefix><instance id>
DEFAULT_NETNS_PREFIX = "ovpc-vm-"
_PREFIX = re.compile(r"[A-Za-z0-9_.-]{1,40}")
_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


@dataclass(frozen=True, slots=True)
class Launch:
    """What RunInstances asks for."""

    subnet: str
    image: str = catalogue.DEFAULT_IMAGE
    instance_type: str = catalogue.DEFAULT_TYPE
    min_count: int = 1
    max_count: int = 1
    ip: str | None = None
    groups: tuple[str, ...] = ()
    name: str = ""  # its Name tag, if any: the instance's DNS name when it is a label
    description: str = ""  # of the primary interface
    secondary_count: int = 0  # secondary private addresses of the primary interface
    delete_on_termination: bool = True  # of the primary interface
    first_zone: str = ""  # the region's first zone: what a zone of "" stands for
    node: str = ""  # the compute node to use (an openvpc extension: Placement.HostId)
    allowed_addresses: tuple[str, ...] = ()  # movable addresses (VIPs) it may claim by GARP


@dataclass(frozen=True, slots=True)
class InstanceRecord:
    """An instance as DescribeInstances needs it."""

    instance: Instance
    interfaces: tuple[Interface, ...]  # attached, by device index (none once terminated)
    vpc_nodes: tuple[str, ...]  # nodes running instances of its VPC: all must apply a change


def set_netns_prefix(repo: Repo, prefix: str) -> None:
    if not isinstance(prefix, str) or not _PREFIX.fullmatch(prefix):
        raise invalid_value("prefix", prefix, "Use 1 to 40 letters, digits, '_', '.' or '-'.")
    repo.set_text_setting(NETNS_PREFIX, prefix)


def netns_prefix(repo: Repo) -> str:
    return repo.text_setting(NETNS_PREFIX, DEFAULT_NETNS_PREFIX)


def same_zone(a: str, b: str, first: str) -> bool:
    return (a or first) == (b or first)


def instance_name(tag: str, ip: str) -> str:
    """The Name tag when it is a DNS label, else AWS's host name for the address."""
    if isinstance(tag, str) and _LABEL.fullmatch(tag):
        return tag
    return "ip-" + ip.replace(".", "-")


def run_instances(
    repo: Repo, tenant: str, launch: Launch, now: float
) -> list[tuple[Instance, Interface]]:
    """Between min_count and max_count instances, as many as quota, addresses and nodes allow;
    each on the least loaded node of the subnet's zone with one interface in the subnet."""
    purge_terminated(repo, tenant, now)
    subnet = repo.owned(Subnet, launch.subnet, tenant)
    vpc = repo.owned(Vpc, subnet.vpc, tenant)
    low, high = _counts(launch)
    catalogue.check_image(launch.image)
    catalogue.instance_type(launch.instance_type)
    if launch.ip is not None and high > 1:
        raise ServiceError(
            "InvalidParameterCombination",
            "Cannot specify a private IP address when launching more than one instance.",
        )
    groups = groups_for(repo, tenant, vpc.id, launch.groups)
    live = sum(1 for i in repo.find(Instance, "tenant", tenant) if i.state != "terminated")
    room = INSTANCE_QUOTA - live
    if room < low:
        raise ServiceError(
            "InstanceLimitExceeded",
            f"Your quota allows for {max(room, 0)} more running instance(s). "
            f"You requested at least {low}.",
        )
    check_description(launch.description)
    extra = launch.secondary_count
    if isinstance(extra, bool) or not isinstance(extra, int) or extra < 0:
        raise invalid_value("SecondaryPrivateIpAddressCount", extra, "Expected a count >= 0.")
    if 1 + extra > catalogue.max_ips(launch.instance_type):
        raise ServiceError(
            "PrivateIpAddressLimitExceeded", "Number of private addresses will exceed limit."
        )
    free = free_addresses(repo, subnet) // (1 + extra)
    if free < low:
        raise ServiceError(
            "InsufficientFreeAddressesInSubnet",
            f"There are not enough free addresses in subnet '{subnet.id}' "
            "to satisfy the requested number of instances.",
        )
    nodes = [
        n.name for n in repo.all(ComputeNode) if same_zone(n.zone, subnet.zone, launch.first_zone)
    ]
    if launch.node:
        _check_node(repo, launch.node, nodes)
        nodes = [launch.node]
    if not nodes:
        raise ServiceError(
            "InsufficientInstanceCapacity",
            f"We currently do not have sufficient {launch.instance_type} capacity in the "
            "Availability Zone you requested.",
        )
    load = Counter(i.node for i in repo.all(Instance) if i.state != "terminated")
    prefix = netns_prefix(repo)
    reservation = repo.new_id("r", Instance)
    made = []
    for index in range(min(high, room, free)):
        node = min(nodes, key=lambda n: (load[n], n))
        load[node] += 1
        instance_id = repo.new_id("i", Instance)
        instance, interface = run_instance(
            repo,
            tenant,
            subnet.id,
            "",
            node,
            prefix + instance_id,
            launch.ip,
            launch.allowed_addresses,
            instance_id=instance_id,
        )
        instance = replace(
            instance,
            name=instance_name(launch.name, interface.ip),
            image=launch.image,
            instance_type=launch.instance_type,
            launched=now,
            changed=now,
            reservation=reservation,
            launch_index=index,
        )
        interface = replace(
            interface,
            groups=groups,
            description=launch.description,
            delete_on_termination=launch.delete_on_termination,
            attached=now,
        )
        repo.put(instance)
        repo.put(interface)
        if launch.secondary_count:
            interface = assign(repo, interface, (), launch.secondary_count, False)
        made.append((instance, interface))
    return made


def _check_node(repo: Repo, node: str, in_zone: list[str]) -> None:
    if not isinstance(node, str) or repo.get(ComputeNode, node) is None:
        raise ServiceError("InvalidHostID.NotFound", f"The host ID '{node}' does not exist")
    if node not in in_zone:
        raise invalid_value(
            "HostId", node, "The host is not in the availability zone of the subnet."
        )


def _counts(launch: Launch) -> tuple[int, int]:
    low, high = launch.min_count, launch.max_count
    for param, value in (("MinCount", low), ("MaxCount", high)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise invalid_value(param, value, "It must be a positive integer.")
    if high < low:
        raise invalid_value("MaxCount", high, "It must not be less than MinCount.")
    return low, high


def free_addresses(repo: Repo, subnet: Subnet) -> int:
    """Assignable addresses of the subnet no interface holds and no one owns."""
    net = IPv4Network(subnet.cidr)
    used = {
        ip
        for i in repo.find(Interface, "tenant", subnet.tenant)
        if i.subnet == subnet.id
        for ip in (i.ip, *i.secondary_ips)
    }
    used |= {o.ip for o in repo.find(AddressOwner, "vpc", subnet.vpc)}
    return capacity(net) - sum(1 for ip in used if assignable(net, IPv4Address(ip)))


def purge_terminated(repo: Repo, tenant: str, now: float) -> None:
    for instance in repo.find(Instance, "tenant", tenant):
        if _expired(instance, now):
            repo.delete(Instance, instance.id)


def _expired(instance: Instance, now: float) -> bool:
    return instance.state == "terminated" and now - instance.changed >= KEPT_TERMINATED


def _instances(repo: Repo, tenant: str, ids: Iterable[str], now: float) -> list[Instance]:
    """The tenant's instances by id (each once), all checked before anything changes."""
    if isinstance(ids, str):
        raise invalid_value("InstanceId", ids, "Expected a list of instance ids.")
    found = []
    for instance_id in dict.fromkeys(ids):
        instance = repo.owned(Instance, instance_id, tenant)
        if _expired(instance, now):
            raise not_found("instance", instance_id)
        found.append(instance)
    if not found:
        raise ServiceError("MissingParameter", "The request must contain the parameter InstanceId")
    return found


def stop_instances(
    repo: Repo, tenant: str, ids: Iterable[str], now: float
) -> list[tuple[Instance, Instance]]:
    """(before, after) per instance; stopping a stopped one changes nothing."""
    purge_terminated(repo, tenant, now)
    found = _instances(repo, tenant, ids, now)
    for instance in found:
        if instance.state == "terminated":
            raise ServiceError(
                "IncorrectInstanceState",
                f"This instance '{instance.id}' is not in a state from which it can be stopped.",
            )
    return [_change(repo, i, "stopped", now) for i in found]


def start_instances(
    repo: Repo, tenant: str, ids: Iterable[str], now: float
) -> list[tuple[Instance, Instance]]:
    """(before, after) per instance; a started instance is pending until its node (and every
    node of its VPC) applied this revision."""
    purge_terminated(repo, tenant, now)
    found = _instances(repo, tenant, ids, now)
    for instance in found:
        if instance.state == "terminated":
            raise ServiceError(
                "IncorrectInstanceState",
                f"The instance '{instance.id}' is not in a state from which it can be started.",
            )
    return [_change(repo, i, "running", now) for i in found]


def _change(
    repo: Repo, instance: Instance, state: InstanceState, now: float
) -> tuple[Instance, Instance]:
    if instance.state == state:
        return instance, instance
    after = replace(instance, state=state, changed=now)
    if state == "running":  # what the nodes must apply before it is running again
        after = replace(after, revision=repo.tx.revision + 1)
    repo.put(after)
    return instance, after


def terminate_instances(
    repo: Repo, tenant: str, ids: Iterable[str], now: float
) -> list[tuple[Instance, Instance]]:
    """(before, after) per instance; idempotent. Its interfaces marked delete-on-termination
    (the primary one is, unless launched otherwise) go in the same transaction, the others
    are detached."""
    purge_terminated(repo, tenant, now)
    found = _instances(repo, tenant, ids, now)
    result = []
    for instance in found:
        if instance.state == "terminated":
            result.append((instance, instance))
            continue
        for interface in attached_to(repo, instance):
            if interface.delete_on_termination:
                remove_interface(repo, interface)
            else:
                repo.put(detached(interface))
        after = replace(instance, state="terminated", changed=now)
        repo.put(after)
        result.append((instance, after))
    return result


def reboot_instances(repo: Repo, tenant: str, ids: Iterable[str], now: float) -> None:
    """Checks only: a VM of the lab has nothing to reboot."""
    for instance in _instances(repo, tenant, ids, now):
        if instance.state == "terminated":
            raise ServiceError(
                "IncorrectInstanceState",
                f"The instance '{instance.id}' is not in a state from which it can be rebooted.",
            )


def modify_instance(
    repo: Repo,
    tenant: str,
    instance_id: str,
    now: float,
    *,
    instance_type: str | None = None,
    source_check: bool | None = None,
    groups: Iterable[str] | None = None,
) -> Instance:
    """ModifyInstanceAttribute: the type of a stopped instance, or the source/destination
    check or security groups of its primary interface."""
    (instance,) = _instances(repo, tenant, [instance_id], now)
    if instance_type is not None:
        kind = catalogue.instance_type(instance_type)
        if instance.state != "stopped":
            raise ServiceError(
                "IncorrectInstanceState",
                f"The instance '{instance.id}' is not in the 'stopped' state.",
            )
        attached = attached_to(repo, instance)
        if len(attached) > kind.max_interfaces or any(
            1 + len(i.secondary_ips) > kind.max_ips for i in attached
        ):
            raise ServiceError(
                "InvalidParameterCombination",
                f"The instance's network interfaces or addresses exceed what {kind.name} allows.",
            )
        instance = replace(instance, instance_type=kind.name)
        repo.put(instance)
    if source_check is not None or groups is not None:
        primary = next((i for i in attached_to(repo, instance) if i.id == instance.interface), None)
        if primary is None:
            raise ServiceError(
                "IncorrectInstanceState",
                f"The instance '{instance.id}' is not in a valid state for this operation.",
            )
        modify_interface(repo, tenant, primary.id, source_check=source_check, groups=groups)
    return instance


def describe(repo: Repo, tenant: str, now: float) -> list[InstanceRecord]:
    """Every instance of the tenant still describable, sorted by id."""
    instances = [i for i in repo.find(Instance, "tenant", tenant) if not _expired(i, now)]
    interfaces: dict[str, list[Interface]] = {}
    for interface in repo.find(Interface, "tenant", tenant):
        if interface.instance:
            interfaces.setdefault(interface.instance, []).append(interface)
    nodes: dict[str, tuple[str, ...]] = {}
    for vpc in {i.vpc for i in instances}:
        running = repo.find(Instance, "vpc", vpc) if vpc else []
        nodes[vpc] = tuple(sorted({i.node for i in running if i.state == "running"}))
    return [
        InstanceRecord(
            i,
            tuple(sorted(interfaces.get(i.id, ()), key=lambda f: f.device_index)),
            nodes.get(i.vpc, ()),
        )
        for i in instances
    ]
