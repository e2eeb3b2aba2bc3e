"""Network interface (ENI) actions: create, delete, describe, attach, detach, modify and
describe attributes, assign and unassign secondary private addresses."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from openvpc.api.actions.vpcs import default_zone
from openvpc.api.common import paginate, select, tag_list
from openvpc.api.context import Call, missing
from openvpc.api.errors import ApiError, shown
from openvpc.api.registry import action
from openvpc.model.resources import Interface, Subnet
from openvpc.service.errors import not_found

_ATTRIBUTES = {
    "description": "Description",
    "groupSet": "Groups",
    "sourceDestCheck": "SourceDestCheck",
    "attachment": "Attachment",
}


def _dns(ip: str, domain: str) -> str:
    return f"ip-{ip.replace('.', '-')}.{domain}"


def _attachment(call: Call, eni: Interface) -> dict[str, Any]:
    return {
        "AttachmentId": eni.attachment,
        "DeviceIndex": eni.device_index,
        "NetworkCardIndex": 0,
        "InstanceId": eni.instance,
        "InstanceOwnerId": call.account,
        "Status": "attached",
        "DeleteOnTermination": eni.delete_on_termination,
        "AttachTime": datetime.fromtimestamp(eni.attached, UTC),
    }


def interface_out(call: Call, record: Record, tags: list[tuple[str, str]]) -> dict[str, Any]:
    eni, subnet, domain = record
    zone = subnet.zone or default_zone(call)
    out: dict[str, Any] = {
        "NetworkInterfaceId": eni.id,
        "SubnetId": eni.subnet,
        "VpcId": subnet.vpc,
        "AvailabilityZone": zone,
        "Description": eni.description,
        "OwnerId": call.account,
        "RequesterManaged": False,
        "Status": "in-use" if eni.instance else "available",
        "MacAddress": eni.mac,
        "PrivateIpAddress": eni.ip,
        "PrivateDnsName": _dns(eni.ip, domain),
        "SourceDestCheck": eni.source_check,
        "Groups": [{"GroupId": g} for g in eni.groups],
        "PrivateIpAddresses": [
            {"PrivateIpAddress": ip, "PrivateDnsName": _dns(ip, domain), "Primary": ip == eni.ip}
            for ip in (eni.ip, *eni.secondary_ips)
        ],
        "Ipv6Addresses": [],
        "InterfaceType": "interface",
        "TagSet": tag_list(tags) or [],
    }
    if eni.instance:
        out["Attachment"] = _attachment(call, eni)
    return out


# an interface, its subnet and its VPC's DNS domain
Record = tuple[Interface, Subnet, str]


def _records(call: Call) -> list[Record]:
    domains = {v.id: v.domain for v in call.service.describe_vpcs(call.tenant)}
    return [
        (eni, subnet, domains.get(subnet.vpc, "ec2.internal"))
        for eni, subnet in call.service.interface_records(call.tenant)
    ]


def _one(call: Call, eni_id: str) -> Record:
    for record in _records(call):
        if record[0].id == eni_id:
            return record
    raise not_found("networkInterface", eni_id)


@action("CreateNetworkInterface")
def create_network_interface(call: Call) -> dict[str, Any]:
    subnet_id = str(call.required("SubnetId"))
    tags = call.tags_for("network-interface")
    ip = call.param("PrivateIpAddress")
    secondary: list[str] = []
    listed = call.param("PrivateIpAddresses")
    for spec in listed if isinstance(listed, list) else []:
        assert isinstance(spec, dict)
        address = spec.get("PrivateIpAddress")
        if not isinstance(address, str):
            raise missing("PrivateIpAddresses.PrivateIpAddress")
        if spec.get("Primary") is True:
            if ip is not None and ip != address:
                raise ApiError(
                    "InvalidParameterCombination",
                    "Only one primary private IP address can be specified.",
                )
            ip = address
        else:
            secondary.append(address)
    count = call.param("SecondaryPrivateIpAddressCount", 0)
    eni = call.service.create_interface(
        call.tenant,
        subnet_id,
        None if ip is None else str(ip),
        call.ids("Groups"),
        call.text("Description"),
        secondary,
        count if isinstance(count, int) else -1,
    )
    if tags:
        call.service.create_tags(call.tenant, [eni.id], tags)
    return {"NetworkInterface": interface_out(call, _one(call, eni.id), tags)}


@action("DeleteNetworkInterface")
def delete_network_interface(call: Call) -> None:
    call.service.delete_interface(call.tenant, str(call.required("NetworkInterfaceId")))


@action("DescribeNetworkInterfaces", mutating=False)
def describe_network_interfaces(call: Call) -> dict[str, Any]:
    if call.ids("NetworkInterfaceIds") and call.param("MaxResults") is not None:
        raise ApiError(
            "InvalidParameterCombination",
            "The parameter networkInterfaceIdSet cannot be used with the parameter maxResults",
        )
    tags = call.service.all_tags(call.tenant)

    def attached(r: Record, value: str | bool) -> str | bool | None:
        return value if r[0].instance else None

    fields = {
        "network-interface-id": lambda r: r[0].id,
        "subnet-id": lambda r: r[0].subnet,
        "vpc-id": lambda r: r[1].vpc,
        "availability-zone": lambda r: r[1].zone or default_zone(call),
        "private-ip-address": lambda r: [r[0].ip, *r[0].secondary_ips],
        "addresses.private-ip-address": lambda r: [r[0].ip, *r[0].secondary_ips],
        "private-dns-name": lambda r: _dns(r[0].ip, r[2]),
        "mac-address": lambda r: r[0].mac,
        "description": lambda r: r[0].description,
        "status": lambda r: "in-use" if r[0].instance else "available",
        "source-dest-check": lambda r: r[0].source_check,
        "group-id": lambda r: list(r[0].groups),
        "owner-id": lambda r: call.account,
        "requester-managed": lambda r: False,
        "interface-type": lambda r: "interface",
        "attachment.instance-id": lambda r: attached(r, r[0].instance),
        "attachment.attachment-id": lambda r: attached(r, r[0].attachment),
        "attachment.device-index": lambda r: attached(r, str(r[0].device_index)),
        "attachment.status": lambda r: attached(r, "attached"),
        "attachment.instance-owner-id": lambda r: attached(r, call.account),
        "attachment.delete-on-termination": lambda r: attached(r, r[0].delete_on_termination),
    }
    found = select(
        call,
        _records(call),
        fields,
        id_of=lambda r: r[0].id,
        ids_param="NetworkInterfaceIds",
        not_found=lambda rid: not_found("networkInterface", rid),
        tags=tags,
    )
    page, token = paginate(call, found, lambda r: r[0].id)
    return {
        "NetworkInterfaces": [interface_out(call, r, tags.get(r[0].id, [])) for r in page],
        "NextToken": token,
    }


def _int(call: Call, name: str) -> int:
    value = call.required(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiError(
            "InvalidParameterValue", f"Value ({shown(str(value))}) for parameter {name} is invalid."
        )
    return value


@action("AttachNetworkInterface")
def attach_network_interface(call: Call) -> dict[str, Any]:
    eni = call.service.attach_interface(
        call.tenant,
        str(call.required("NetworkInterfaceId")),
        str(call.required("InstanceId")),
        _int(call, "DeviceIndex"),
        call.now,
    )
    return {"AttachmentId": eni.attachment, "NetworkCardIndex": 0}


@action("DetachNetworkInterface")
def detach_network_interface(call: Call) -> None:
    call.service.detach_interface(call.tenant, str(call.required("AttachmentId")))


def _flag(value: Any, member: str) -> bool:
    flag = value.get("Value") if isinstance(value, dict) else None
    if not isinstance(flag, bool):
        raise missing(f"{member}.Value")
    return flag


@action("ModifyNetworkInterfaceAttribute")
def modify_network_interface_attribute(call: Call) -> None:
    eni_id = str(call.required("NetworkInterfaceId"))
    given = [m for m in _ATTRIBUTES.values() if call.param(m) not in (None, [])]
    if len(given) != 1:
        raise ApiError(
            "InvalidParameterCombination",
            "Fields for multiple attribute types specified: exactly one attribute per call.",
        )
    member = given[0]
    value = call.param(member)
    if member == "SourceDestCheck":
        call.service.modify_interface(call.tenant, eni_id, source_check=_flag(value, member))
    elif member == "Groups":
        call.service.modify_interface(call.tenant, eni_id, groups=call.ids("Groups"))
    elif member == "Description":
        text = value.get("Value") if isinstance(value, dict) else None
        if not isinstance(text, str):
            raise missing("Description.Value")
        call.service.modify_interface(call.tenant, eni_id, description=text)
    else:
        assert isinstance(value, dict)
        attachment = value.get("AttachmentId")
        delete = value.get("DeleteOnTermination")
        if not isinstance(attachment, str) or not attachment:
            raise missing("Attachment.AttachmentId")
        if not isinstance(delete, bool):
            raise missing("Attachment.DeleteOnTermination")
        call.service.modify_interface(call.tenant, eni_id, attachment=(attachment, delete))


@action("DescribeNetworkInterfaceAttribute", mutating=False)
def describe_network_interface_attribute(call: Call) -> dict[str, Any]:
    attribute = str(call.required("Attribute"))
    eni = _one(call, str(call.required("NetworkInterfaceId")))[0]
    if attribute not in _ATTRIBUTES:
        raise ApiError(
            "InvalidParameterValue",
            f"Value ({shown(attribute)}) for parameter attribute is invalid. "
            f"Use one of {', '.join(_ATTRIBUTES)}.",
        )
    out: dict[str, Any] = {"NetworkInterfaceId": eni.id}
    if attribute == "description":
        out["Description"] = {"Value": eni.description}
    elif attribute == "groupSet":
        out["Groups"] = [{"GroupId": g} for g in eni.groups]
    elif attribute == "sourceDestCheck":
        out["SourceDestCheck"] = {"Value": eni.source_check}
    elif eni.instance:
        out["Attachment"] = _attachment(call, eni)
    return out


@action("AssignPrivateIpAddresses")
def assign_private_ip_addresses(call: Call) -> dict[str, Any]:
    eni_id = str(call.required("NetworkInterfaceId"))
    ips = call.ids("PrivateIpAddresses")
    count = call.param("SecondaryPrivateIpAddressCount")
    if not ips and count is None:
        raise missing("PrivateIpAddresses or SecondaryPrivateIpAddressCount")
    if ips and count is not None:
        raise ApiError(
            "InvalidParameterCombination",
            "PrivateIpAddresses and SecondaryPrivateIpAddressCount may not both be specified.",
        )
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
        raise ApiError(
            "InvalidParameterValue",
            f"Value ({shown(str(count))}) for parameter secondaryPrivateIpAddressCount is "
            "invalid. Expected a positive integer.",
        )
    added = call.service.assign_private_ips(
        call.tenant,
        eni_id,
        ips,
        count if isinstance(count, int) else 0,
        call.param("AllowReassignment") is True,
    )
    return {
        "NetworkInterfaceId": eni_id,
        "AssignedPrivateIpAddresses": [{"PrivateIpAddress": ip} for ip in added],
    }


@action("UnassignPrivateIpAddresses")
def unassign_private_ip_addresses(call: Call) -> None:
    eni_id = str(call.required("NetworkInterfaceId"))
    ips = call.ids("PrivateIpAddresses")
    if not ips:
        raise missing("PrivateIpAddresses")
    call.service.unassign_private_ips(call.tenant, eni_id, ips)
