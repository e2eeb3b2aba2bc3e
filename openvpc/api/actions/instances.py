"""Instance actions: run, stop, start, terminate, describe and describe status.

Two openvpc extensions: Placement.HostId names the compute node (chosen, least loaded of the
subnet's zone, when absent), and the instance tag openvpc:allowed-addresses lists movable
addresses (VIPs) it may claim by gratuitous ARP.

The state the API reports joins the stored desired state with what the nodes did: `pending`
until the instance's VM exists and its node and every node running its VPC applied the
revision of its launch, `stopping` / `shutting-down` until the VM is gone.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from openvpc.api.actions.vpcs import default_zone
from openvpc.api.common import paginate, select, tag_list
from openvpc.api.context import Call, missing, tag_pairs
from openvpc.api.errors import ApiError, shown
from openvpc.api.registry import action
from openvpc.model.resources import Instance, Interface
from openvpc.service import catalogue
from openvpc.service.errors import not_found
from openvpc.service.instances import InstanceRecord, Launch

CODES = {
    "pending": 0,
    "running": 16,
    "shutting-down": 32,
    "terminated": 48,
    "stopping": 64,
    "stopped": 80,
}
# an openvpc extension: the movable addresses (VIPs) an instance may claim, comma-separated
ALLOWED_TAG = "openvpc:allowed-addresses"
_TAGGABLE = ("instance", "network-interface", "volume")  # volumes: accepted, nothing to tag


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


def _time(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def interface_in_instance(call: Call, instance: Instance, eni: Interface) -> dict[str, Any]:
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
        "Groups": [{"GroupId": g} for g in eni.groups],
        "Attachment": {
            "AttachmentId": eni.attachment,
            "DeviceIndex": eni.device_index,
            "NetworkCardIndex": 0,
            "Status": "attached",
            "DeleteOnTermination": eni.delete_on_termination,
            "AttachTime": _time(eni.attached),
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


def instance_out(call: Call, record: InstanceRecord, tags: list[tuple[str, str]]) -> dict[str, Any]:
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
        "LaunchTime": _time(instance.launched),
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
        "NetworkInterfaces": [interface_in_instance(call, instance, i) for i in record.interfaces],
        "SecurityGroups": [],
        "Tags": tag_list(tags),
    }
    if instance.state != "running":
        when = _time(instance.changed).strftime("%Y-%m-%d %H:%M:%S")
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
        out["SecurityGroups"] = [{"GroupId": g} for g in primary.groups]
    return out


def _reservations(
    call: Call, records: list[InstanceRecord], tags: dict[str, list[tuple[str, str]]]
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
            "Instances": [instance_out(call, r, tags.get(r.instance.id, [])) for r in members],
        }
        for rid, members in groups.items()
    ]


def _records(call: Call, ids: Iterable[str] | None = None) -> list[InstanceRecord]:
    records = call.service.instance_records(call.tenant, call.now)
    if ids is None:
        return records
    wanted = set(ids)
    return [r for r in records if r.instance.id in wanted]


# -- run ------------------------------------------------------------------------------------


def _launch_tags(call: Call) -> dict[str, list[tuple[str, str]]]:
    """TagSpecifications of RunInstances, by resource type (instance, network-interface)."""
    found: dict[str, list[tuple[str, str]]] = {}
    specs = call.param("TagSpecifications")
    for spec in specs if isinstance(specs, list) else []:
        kind = spec.get("ResourceType") if isinstance(spec, dict) else None
        if kind not in _TAGGABLE:
            raise ApiError(
                "InvalidParameterValue",
                f"'{shown(str(kind))}' is not a valid taggable resource type for this operation.",
            )
        assert isinstance(spec, dict)
        tags = spec.get("Tags")
        if not isinstance(tags, list) or not tags:
            raise ApiError("InvalidParameterValue", "Tag specification must have at least one tag")
        found.setdefault(str(kind), []).extend(tag_pairs(tags))
    return found


def _int(call: Call, name: str) -> int:
    value = call.required(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiError(
            "InvalidParameterValue", f"Value ({shown(str(value))}) for parameter {name} is invalid."
        )
    return value


def _launch(call: Call) -> Launch:
    """The request's one interface: instance-level parameters or NetworkInterfaces[0]."""
    subnet = call.text("SubnetId")
    ip = call.param("PrivateIpAddress")
    groups = call.ids("SecurityGroupIds")
    description, secondary, delete = "", 0, True
    if call.ids("SecurityGroups"):
        raise ApiError(
            "InvalidParameterCombination",
            "The parameter groupName cannot be used with the parameter subnet",
        )
    specs = call.param("NetworkInterfaces")
    if isinstance(specs, list) and specs:
        if subnet:
            raise ApiError(
                "InvalidParameterCombination",
                "Network interfaces and an instance-level subnet ID may not be specified on "
                "the same request",
            )
        if groups:
            raise ApiError(
                "InvalidParameterCombination",
                "Network interfaces and an instance-level security groups may not be "
                "specified on the same request",
            )
        if ip is not None:
            raise ApiError(
                "InvalidParameterCombination",
                "Network interfaces and an instance-level private IP address may not be "
                "specified on the same request",
            )
        if len(specs) > 1:
            raise ApiError(
                "UnsupportedOperation",
                "Launching with more than one network interface is not supported; attach "
                "more with AttachNetworkInterface.",
            )
        spec = specs[0]
        assert isinstance(spec, dict)
        if spec.get("DeviceIndex", 0) != 0:
            raise ApiError(
                "InvalidParameterValue", "The primary network interface must have device index 0."
            )
        if spec.get("NetworkInterfaceId"):
            raise ApiError(
                "UnsupportedOperation",
                "Launching with an existing network interface is not supported.",
            )
        subnet = str(spec.get("SubnetId") or "")
        ip = spec.get("PrivateIpAddress")
        listed = spec.get("Groups")
        groups = [str(g) for g in listed] if isinstance(listed, list) else []
        description = str(spec.get("Description") or "")
        count = spec.get("SecondaryPrivateIpAddressCount", 0)
        secondary = count if isinstance(count, int) and not isinstance(count, bool) else -1
        delete = spec.get("DeleteOnTermination", True) is not False
    if not subnet:
        raise ApiError("VPCIdNotSpecified", "No default VPC for this user")
    placement = call.param("Placement")
    node = placement.get("HostId") if isinstance(placement, dict) else None
    return Launch(
        subnet,
        image=str(call.required("ImageId")),
        instance_type=call.text("InstanceType", catalogue.DEFAULT_TYPE),
        min_count=_int(call, "MinCount"),
        max_count=_int(call, "MaxCount"),
        ip=None if ip is None else str(ip),
        groups=tuple(groups),
        first_zone=default_zone(call),
        description=description,
        secondary_count=secondary,
        delete_on_termination=delete,
        node=str(node or ""),
    )


@action("RunInstances")
def run_instances(call: Call) -> dict[str, Any]:
    tags = _launch_tags(call)
    launch = _launch(call)
    chosen = dict(tags.get("instance", []))
    allowed = [a.strip() for a in chosen.get(ALLOWED_TAG, "").split(",") if a.strip()]
    launch = replace(launch, name=chosen.get("Name", ""), allowed_addresses=tuple(allowed))
    made = call.service.run_instances(call.tenant, launch, call.now)
    for kind, index in (("instance", 0), ("network-interface", 1)):
        if tags.get(kind):
            ids = [pair[index].id for pair in made]
            call.service.create_tags(call.tenant, ids, tags[kind])
    ids = [i.id for i, _ in made]
    records = sorted(_records(call, ids), key=lambda r: r.instance.launch_index)
    instance_tags = tags.get("instance", [])
    return {
        "ReservationId": made[0][0].reservation,
        "OwnerId": call.account,
        "Groups": [],
        "Instances": [instance_out(call, r, instance_tags) for r in records],
    }


# -- stop, start, terminate -------------------------------------------------------------------


def _changes(call: Call, member: str, verb: str) -> dict[str, Any]:
    ids = call.ids("InstanceIds")
    if not ids:
        raise missing("InstanceIds")
    before = {r.instance.id: r for r in _records(call, ids)}
    change = getattr(call.service, f"{verb}_instances")
    pairs: list[tuple[Instance, Instance]] = change(call.tenant, ids, call.now)
    after = {r.instance.id: r for r in _records(call, ids)}
    out = []
    for old, new in pairs:
        prior = before.get(old.id)
        now = after.get(new.id)
        old_state = reported_state(call, old, prior.vpc_nodes if prior else ())
        new_state = reported_state(call, new, now.vpc_nodes if now else ())
        out.append(
            {
                "InstanceId": new.id,
                "PreviousState": state_out(old_state),
                "CurrentState": state_out(new_state),
            }
        )
    return {member: out}


@action("StopInstances")
def stop_instances(call: Call) -> dict[str, Any]:
    return _changes(call, "StoppingInstances", "stop")


@action("StartInstances")
def start_instances(call: Call) -> dict[str, Any]:
    return _changes(call, "StartingInstances", "start")


@action("TerminateInstances")
def terminate_instances(call: Call) -> dict[str, Any]:
    return _changes(call, "TerminatingInstances", "terminate")


# -- describe ---------------------------------------------------------------------------------


def _no_ids_with_max(call: Call, ids_param: str, wire: str) -> None:
    if call.ids(ids_param) and call.param("MaxResults") is not None:
        raise ApiError(
            "InvalidParameterCombination",
            f"The parameter {wire} cannot be used with the parameter maxResults",
        )


def _instance_not_found(instance_id: str) -> Exception:
    return not_found("instance", instance_id)


@action("DescribeInstances", mutating=False)
def describe_instances(call: Call) -> dict[str, Any]:
    _no_ids_with_max(call, "InstanceIds", "instancesSet")
    tags = call.service.all_tags(call.tenant)
    records = _records(call)
    states = {r.instance.id: reported_state(call, r.instance, r.vpc_nodes) for r in records}

    def addresses(r: InstanceRecord) -> list[str]:
        return [ip for i in r.interfaces for ip in (i.ip, *i.secondary_ips)]

    fields = {
        "instance-id": lambda r: r.instance.id,
        "instance-state-name": lambda r: states[r.instance.id],
        "instance-state-code": lambda r: str(CODES[states[r.instance.id]]),
        "vpc-id": lambda r: r.instance.vpc if r.instance.state != "terminated" else None,
        "subnet-id": lambda r: r.instance.subnet if r.instance.state != "terminated" else None,
        "private-ip-address": lambda r: [i.ip for i in r.interfaces[:1]],
        "network-interface.addresses.private-ip-address": addresses,
        "private-dns-name": lambda r: r.instance.dns_name,
        "availability-zone": lambda r: zone_of(call, r.instance),
        "network-interface.network-interface-id": lambda r: [i.id for i in r.interfaces],
        "network-interface.subnet-id": lambda r: [i.subnet for i in r.interfaces],
        "network-interface.vpc-id": lambda r: [r.instance.vpc for _ in r.interfaces],
        "network-interface.mac-address": lambda r: [i.mac for i in r.interfaces],
        "instance.group-id": lambda r: [g for i in r.interfaces[:1] for g in i.groups],
        "image-id": lambda r: r.instance.image or catalogue.DEFAULT_IMAGE,
        "instance-type": lambda r: r.instance.instance_type or catalogue.DEFAULT_TYPE,
        "reservation-id": lambda r: r.instance.reservation,
        "host-id": lambda r: r.instance.node,
        "owner-id": lambda r: call.account,
        "architecture": lambda r: "x86_64",
    }
    found = select(
        call,
        records,
        fields,
        id_of=lambda r: r.instance.id,
        ids_param="InstanceIds",
        not_found=_instance_not_found,
        tags=tags,
    )
    page, token = paginate(call, found, lambda r: r.instance.id)
    return {"Reservations": _reservations(call, page, tags), "NextToken": token}


def _check(state: str) -> dict[str, Any]:
    if state == "running":
        return {"Status": "ok", "Details": [{"Name": "reachability", "Status": "passed"}]}
    if state == "pending":
        return {
            "Status": "initializing",
            "Details": [{"Name": "reachability", "Status": "initializing"}],
        }
    return {"Status": "not-applicable"}


@action("DescribeInstanceStatus", mutating=False)
def describe_instance_status(call: Call) -> dict[str, Any]:
    _no_ids_with_max(call, "InstanceIds", "instancesSet")
    records = _records(call)
    states = {r.instance.id: reported_state(call, r.instance, r.vpc_nodes) for r in records}
    fields = {
        "availability-zone": lambda r: zone_of(call, r.instance),
        "instance-state-name": lambda r: states[r.instance.id],
        "instance-state-code": lambda r: str(CODES[states[r.instance.id]]),
        "instance-status.status": lambda r: _check(states[r.instance.id])["Status"],
        "system-status.status": lambda r: _check(states[r.instance.id])["Status"],
    }
    found = select(
        call,
        records,
        fields,
        id_of=lambda r: r.instance.id,
        ids_param="InstanceIds",
        not_found=_instance_not_found,
    )
    if not call.param("IncludeAllInstances"):
        found = [r for r in found if states[r.instance.id] == "running"]
    page, token = paginate(call, found, lambda r: r.instance.id)
    return {
        "InstanceStatuses": [
            {
                "InstanceId": r.instance.id,
                "AvailabilityZone": zone_of(call, r.instance),
                "InstanceState": state_out(states[r.instance.id]),
                "InstanceStatus": _check(states[r.instance.id]),
                "SystemStatus": _check(states[r.instance.id]),
            }
            for r in page
        ],
        "NextToken": token,
    }


@action("RebootInstances")
def reboot_instances(call: Call) -> None:
    ids = call.ids("InstanceIds")
    if not ids:
        raise missing("InstanceIds")
    call.service.reboot_instances(call.tenant, ids, call.now)


# attribute name (as Attribute and DescribeInstanceAttribute name it) -> request member
_ATTRIBUTES = {
    "instanceType": "InstanceType",
    "sourceDestCheck": "SourceDestCheck",
    "groupSet": "Groups",
    "disableApiTermination": "DisableApiTermination",
    "disableApiStop": "DisableApiStop",
    "instanceInitiatedShutdownBehavior": "InstanceInitiatedShutdownBehavior",
    "userData": "UserData",
    "kernel": "Kernel",
    "ramdisk": "Ramdisk",
    "ebsOptimized": "EbsOptimized",
    "sriovNetSupport": "SriovNetSupport",
    "enaSupport": "EnaSupport",
    "blockDeviceMapping": "BlockDeviceMappings",
    "enclaveOptions": "EnclaveOptions",
    "rootDeviceName": "",
    "productCodes": "",
}
_MODIFIABLE = ("instanceType", "sourceDestCheck", "groupSet")


def _attribute_value(call: Call) -> tuple[str, Any]:
    """The one attribute a ModifyInstanceAttribute request changes, and its value."""
    given: list[tuple[str, Any]] = [
        (name, call.param(member))
        for name, member in _ATTRIBUTES.items()
        if member and call.param(member) not in (None, [])
    ]
    if call.param("Attribute") is not None:  # the older Attribute=name&Value=value form
        given.append((call.text("Attribute"), {"Value": call.param("Value")}))
    if len(given) != 1:
        raise ApiError(
            "InvalidParameterCombination",
            "Fields for multiple attribute types specified: exactly one attribute per call.",
        )
    name, value = given[0]
    if name not in _ATTRIBUTES:
        raise ApiError(
            "InvalidParameterValue",
            f"Value ({shown(name)}) for parameter attribute is invalid. Unknown attribute.",
        )
    if name not in _MODIFIABLE:
        raise ApiError("UnsupportedOperation", f"The attribute {name} cannot be modified here.")
    return name, value


@action("ModifyInstanceAttribute")
def modify_instance_attribute(call: Call) -> None:
    instance_id = str(call.required("InstanceId"))
    name, value = _attribute_value(call)
    if name == "groupSet":
        groups = value if isinstance(value, list) else [value.get("Value")]
        call.service.modify_instance(
            call.tenant, instance_id, call.now, groups=[str(g) for g in groups if g]
        )
        return
    inner = value.get("Value") if isinstance(value, dict) else None
    if name == "instanceType":
        if not isinstance(inner, str) or not inner:
            raise missing("InstanceType.Value")
        call.service.modify_instance(call.tenant, instance_id, call.now, instance_type=inner)
        return
    flag = inner if isinstance(inner, bool) else {"true": True, "false": False}.get(str(inner))
    if flag is None:
        raise missing("SourceDestCheck.Value")
    call.service.modify_instance(call.tenant, instance_id, call.now, source_check=flag)


@action("DescribeInstanceAttribute", mutating=False)
def describe_instance_attribute(call: Call) -> dict[str, Any]:
    attribute = str(call.required("Attribute"))
    instance_id = str(call.required("InstanceId"))
    record = next((r for r in _records(call) if r.instance.id == instance_id), None)
    if record is None:
        raise _instance_not_found(instance_id)
    if attribute not in _ATTRIBUTES:
        raise ApiError(
            "InvalidParameterValue",
            f"Value ({shown(attribute)}) for parameter attribute is invalid. "
            f"Use one of {', '.join(_ATTRIBUTES)}.",
        )
    instance = record.instance
    primary = next((i for i in record.interfaces if i.id == instance.interface), None)
    values: dict[str, tuple[str, Any]] = {
        "instanceType": (
            "InstanceType",
            {"Value": instance.instance_type or catalogue.DEFAULT_TYPE},
        ),
        "sourceDestCheck": (
            "SourceDestCheck",
            {"Value": primary.source_check if primary else True},
        ),
        "groupSet": ("Groups", [{"GroupId": g} for g in (primary.groups if primary else ())]),
        "disableApiTermination": ("DisableApiTermination", {"Value": False}),
        "disableApiStop": ("DisableApiStop", {"Value": False}),
        "instanceInitiatedShutdownBehavior": (
            "InstanceInitiatedShutdownBehavior",
            {"Value": "stop"},
        ),
        "userData": ("UserData", {}),
        "kernel": ("KernelId", {}),
        "ramdisk": ("RamdiskId", {}),
        "ebsOptimized": ("EbsOptimized", {"Value": False}),
        "sriovNetSupport": ("SriovNetSupport", {}),
        "enaSupport": ("EnaSupport", {"Value": True}),
        "blockDeviceMapping": ("BlockDeviceMappings", []),
        "enclaveOptions": ("EnclaveOptions", {"Enabled": False}),
        "rootDeviceName": ("RootDeviceName", {"Value": "/dev/xvda"}),
        "productCodes": ("ProductCodes", []),
    }
    member, value = values[attribute]
    return {"InstanceId": instance.id, member: value}
