"""How an instance looks through the API: the state EC2 would show, joining the stored
desired state with what the nodes did (`pending` until the instance's VM exists and its node
and every node running its VPC applied the revision of its launch; `stopping` and
`shutting-down` until the VM is gone), and its Instance and Reservation shapes."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from openvpc.api.actions.vpcs import default_zone
from openvpc.api.common import tag_list
from openvpc.api.context import Call
from openvpc.model.resources import Instance, Interface
from openvpc.service import catalogue
from openvpc.service.instances import InstanceRecord

CODES = {
    "pending": 0,
    "running": 16,
    "shutting-down": 32,
    "terminated": 48,
    "stopping": 64,
    "stopped": 80,
}


def reported_state(call: Call, instance: Instance, vpc_nodes: Iterable[str]) -> str:
    """What EC2 would show now for an instance whose desired state the store holds."""
    runtime = call.runtime
    exists = bool(instance.node) and runtime.vm_ready(instance.node, instance.interface)
    if instance.state == "running":
        for node in {instance.node, *vpc_nodes}:
            acked = runtime.acked(node)
            if acked is None or acked < instance.revision:
                return "pending"
        return "running" if exists else "pending"
    if instance.state == "stopped":
        return "stopping" if exists else "stopped"
    return "shutting-down" if exists else "terminated"


def state_out(name: str) -> dict[str, Any]:
    return {"Code": CODES[name], "Name": name}


def zone_of(call: Call, instance: Instance) -> str:
    return instance.zone or default_zone(call)


def time_of(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def group_names(call: Call) -> dict[str, str]:
    """Security group id -> name, for the caller's groups."""
    return {g.id: g.name for g in call.service.describe_security_groups(call.tenant)}


def group_list(ids: Iterable[str], names: dict[str, str]) -> list[dict[str, str]]:
    return [{"GroupId": g, "GroupName": names[g]} if g in names else {"GroupId": g} for g in ids]


def interface_in_instance(
    call: Call, instance: Instance, eni: Interface, names: dict[str, str]
) -> dict[str, Any]:
    """An attached interface as DescribeInstances nests it."""
    return {
        "NetworkInterfaceId": eni.id,
        "SubnetId": eni.subnet,
        "VpcId": instance.vpc,
        "Description": eni.description,
        "OwnerId": call.account,
        "Status": "in-use",
        "MacAddress": eni.mac,
        "PrivateIpAddress": eni.ip,
        "PrivateDnsName": _dns(instance, eni.ip),
        "SourceDestCheck": eni.source_check,
        "Groups": group_list(eni.groups, names),
        "Attachment": {
            "AttachmentId": eni.attachment,
            "DeviceIndex": eni.device_index,
            "NetworkCardIndex": 0,
            "Status": "attached",
            "DeleteOnTermination": eni.delete_on_termination,
            "AttachTime": time_of(eni.attached),
        },
        "PrivateIpAddresses": [
            {"PrivateIpAddress": ip, "PrivateDnsName": _dns(instance, ip), "Primary": ip == eni.ip}
            for ip in (eni.ip, *eni.secondary_ips)
        ],
        "InterfaceType": "interface",
        "Ipv6Addresses": [],
    }


def _dns(instance: Instance, ip: str) -> str:
    domain = instance.dns_name.split(".", 1)[1] if "." in instance.dns_name else "ec2.internal"
    return f"ip-{ip.replace('.', '-')}.{domain}"


def instance_out(
    call: Call, record: InstanceRecord, tags: list[tuple[str, str]], names: dict[str, str]
) -> dict[str, Any]:
    instance = record.instance
    state = reported_state(call, instance, record.vpc_nodes)
    primary = next((i for i in record.interfaces if i.id == instance.interface), None)
    zone = zone_of(call, instance)
    out: dict[str, Any] = {
        "InstanceId": instance.id,
        "ImageId": instance.image or catalogue.DEFAULT_IMAGE,
        "State": state_out(state),
        "PrivateDnsName": "",
        "PublicDnsName": "",
        "StateTransitionReason": "",
        "AmiLaunchIndex": instance.launch_index,
        "ProductCodes": [],
        "InstanceType": instance.instance_type or catalogue.DEFAULT_TYPE,
        "LaunchTime": time_of(instance.launched),
        "Placement": {
            "AvailabilityZone": zone,
            "GroupName": "",
            "Tenancy": "default",
            "HostId": instance.node,  # an openvpc extension: the compute node
        },
        "Monitoring": {"State": "disabled"},
        "Architecture": "x86_64",
        "RootDeviceType": "ebs",
        "RootDeviceName": "/dev/xvda",
        "BlockDeviceMappings": [],
        "VirtualizationType": "hvm",
        "Hypervisor": "xen",
        "EbsOptimized": False,
        "EnaSupport": True,
        "PlatformDetails": "Linux/UNIX",
        "UsageOperation": "RunInstances",
        "NetworkInterfaces": [
            interface_in_instance(call, instance, i, names) for i in record.interfaces
        ],
        "SecurityGroups": [],
        "Tags": tag_list(tags),
    }
    if instance.state != "running":
        when = time_of(instance.changed).strftime("%Y-%m-%d %H:%M:%S")
        out["StateTransitionReason"] = f"User initiated ({when} GMT)"
        out["StateReason"] = {
            "Code": "Client.UserInitiatedShutdown",
            "Message": "Client.UserInitiatedShutdown: User initiated shutdown",
        }
    if instance.state != "terminated":
        out["PrivateDnsName"] = instance.dns_name
        out["SubnetId"] = instance.subnet
        out["VpcId"] = instance.vpc
    if primary is not None:
        out["PrivateIpAddress"] = primary.ip
        out["SourceDestCheck"] = primary.source_check
        out["SecurityGroups"] = group_list(primary.groups, names)
    return out


def reservations(
    call: Call,
    records: list[InstanceRecord],
    tags: dict[str, list[tuple[str, str]]],
    names: dict[str, str],
) -> list[dict[str, Any]]:
    """Instances grouped by the call that launched them, in the order given."""
    groups: dict[str, list[InstanceRecord]] = {}
    for r in records:
        key = r.instance.reservation or "r-" + r.instance.id.removeprefix("i-")
        groups.setdefault(key, []).append(r)
    return [
        {
            "ReservationId": rid,
            "OwnerId": call.account,
            "Groups": [],
            "Instances": [
                instance_out(call, r, tags.get(r.instance.id, []), names) for r in members
            ],
        }
        for rid, members in groups.items()
    ]


def instance_records(call: Call, ids: Iterable[str] | None = None) -> list[InstanceRecord]:
    """The caller's describable instances (those of `ids` when given), from one read."""
    records = call.service.instance_records(call.tenant, call.now)
    if ids is None:
        return records
    wanted = set(ids)
    return [r for r in records if r.instance.id in wanted]
