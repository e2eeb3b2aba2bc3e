"""Instance actions that read: DescribeInstances, DescribeInstanceStatus, and the instance
attributes (DescribeInstanceAttribute, and ModifyInstanceAttribute for the type of a stopped
instance and its primary interface's source/destination check and groups)."""

from __future__ import annotations

from typing import Any

from openvpc.api.actions.instance_view import (
    CODES,
    group_list,
    group_names,
    instance_records,
    reported_state,
    reservations,
    state_out,
    zone_of,
)
from openvpc.api.common import paginate, select
from openvpc.api.context import Call, missing
from openvpc.api.errors import ApiError, shown
from openvpc.api.registry import action
from openvpc.service import catalogue
from openvpc.service.errors import not_found
from openvpc.service.instances import InstanceRecord


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
    records = instance_records(call)
    states = {r.instance.id: reported_state(call, r.instance, r.vpc_nodes) for r in records}
    names = group_names(call)

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
        "instance.group-name": lambda r: [
            names.get(g, "") for i in r.interfaces[:1] for g in i.groups
        ],
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
    return {"Reservations": reservations(call, page, tags, names), "NextToken": token}


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
    records = instance_records(call)
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
    record = next((r for r in instance_records(call) if r.instance.id == instance_id), None)
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
        "groupSet": ("Groups", group_list(primary.groups if primary else (), group_names(call))),
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
