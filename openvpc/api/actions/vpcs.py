"""VPC and subnet actions: create, delete, describe, attributes and secondary CIDR blocks.

A VPC's forwarding mode and encapsulation are chosen at creation by the tags
openvpc:forwarding-mode and openvpc:encapsulation (the Amazon l3 model by default).
"""

from __future__ import annotations

from ipaddress import IPv4Network
from typing import Any

from openvpc.api.common import paginate, select, tag_list
from openvpc.api.context import Call
from openvpc.api.errors import ApiError, shown
from openvpc.api.registry import action
from openvpc.model.resources import Subnet, Vpc
from openvpc.service.errors import ServiceError, not_found
from openvpc.service.ipam import reserved
from openvpc.service.network import primary_association, vpc_attribute
from openvpc.service.validate import check_resource_name

MODE_TAG = "openvpc:forwarding-mode"
ENCAP_TAG = "openvpc:encapsulation"
_ATTRIBUTES = {
    "EnableDnsSupport": "enableDnsSupport",
    "EnableDnsHostnames": "enableDnsHostnames",
    "EnableNetworkAddressUsageMetrics": "enableNetworkAddressUsageMetrics",
}


def name_of(tags: list[tuple[str, str]]) -> str:
    """The Name tag when it fits a resource name (it names VRFs in dumps), else ""."""
    name = dict(tags).get("Name", "")
    try:
        check_resource_name(name, "name")
    except ServiceError:
        return ""
    return name


# -- VPCs -------------------------------------------------------------------------------------


def vpc_out(call: Call, vpc: Vpc, tags: list[tuple[str, str]]) -> dict[str, Any]:
    blocks = [(primary_association(vpc), vpc.cidr), *vpc.secondary]
    return {
        "VpcId": vpc.id,
        "OwnerId": call.account,
        "InstanceTenancy": "default",
        "CidrBlock": vpc.cidr,
        "CidrBlockAssociationSet": [
            {"AssociationId": a, "CidrBlock": c, "CidrBlockState": {"State": "associated"}}
            for a, c in blocks
        ],
        "IsDefault": False,
        "State": "available",
        "DhcpOptionsId": "default",
        "Tags": tag_list(tags),
    }


@action("CreateVpc")
def create_vpc(call: Call) -> dict[str, Any]:
    cidr = str(call.required("CidrBlock"))
    tenancy = call.text("InstanceTenancy", "default")
    if tenancy not in ("default", "dedicated"):
        raise ApiError(
            "InvalidParameterValue",
            f"Value ({shown(tenancy)}) for parameter instanceTenancy is invalid.",
        )
    tags = call.tags_for("vpc")
    chosen = dict(tags)
    vpc = call.service.create_vpc(
        call.tenant,
        name_of(tags),
        cidr,
        chosen.get(MODE_TAG, "l3"),
        chosen.get(ENCAP_TAG, call.default_encap),
    )
    if tags:
        call.service.create_tags(call.tenant, [vpc.id], tags)
    return {"Vpc": vpc_out(call, vpc, tags)}


@action("DeleteVpc")
def delete_vpc(call: Call) -> None:
    call.service.delete_vpc(call.tenant, str(call.required("VpcId")))


def _vpc_not_found(vpc_id: str) -> ServiceError:
    return not_found("vpc", vpc_id)


@action("DescribeVpcs", mutating=False)
def describe_vpcs(call: Call) -> dict[str, Any]:
    tags = call.service.all_tags(call.tenant)

    def blocks(v: Vpc) -> list[str]:
        return [v.cidr, *(c for _, c in v.secondary)]

    fields = {
        "vpc-id": lambda v: v.id,
        "cidr": lambda v: v.cidr,
        "cidr-block-association.cidr-block": blocks,
        "cidr-block-association.association-id": lambda v: [
            primary_association(v),
            *(a for a, _ in v.secondary),
        ],
        "cidr-block-association.state": lambda v: "associated",
        "dhcp-options-id": lambda v: "default",
        "is-default": lambda v: False,
        "owner-id": lambda v: call.account,
        "state": lambda v: "available",
    }
    found = select(
        call,
        call.service.describe_vpcs(call.tenant),
        fields,
        id_of=lambda v: v.id,
        ids_param="VpcIds",
        not_found=_vpc_not_found,
        tags=tags,
    )
    page, token = paginate(call, found, lambda v: v.id)
    return {"Vpcs": [vpc_out(call, v, tags.get(v.id, [])) for v in page], "NextToken": token}


def _owned_vpc(call: Call, vpc_id: str) -> Vpc:
    for vpc in call.service.describe_vpcs(call.tenant):
        if vpc.id == vpc_id:
            return vpc
    raise _vpc_not_found(vpc_id)


@action("ModifyVpcAttribute")
def modify_vpc_attribute(call: Call) -> None:
    vpc_id = str(call.required("VpcId"))
    given = [(k, v) for k, v in _ATTRIBUTES.items() if call.param(k) is not None]
    if len(given) != 1:
        raise ApiError(
            "InvalidParameterCombination",
            "Fields for multiple attribute types specified: exactly one attribute per call.",
        )
    member, attribute = given[0]
    value = call.param(member)
    flag = value.get("Value") if isinstance(value, dict) else None
    if not isinstance(flag, bool):
        raise ApiError("MissingParameter", f"The request must contain the parameter {member}.Value")
    call.service.set_vpc_attribute(call.tenant, vpc_id, attribute, flag)


@action("DescribeVpcAttribute", mutating=False)
def describe_vpc_attribute(call: Call) -> dict[str, Any]:
    attribute = str(call.required("Attribute"))
    vpc = _owned_vpc(call, str(call.required("VpcId")))
    member = next((k for k, v in _ATTRIBUTES.items() if v == attribute), None)
    if member is None:
        raise ApiError(
            "InvalidParameterValue",
            f"Value ({shown(attribute)}) for parameter attribute is invalid. "
            f"Use one of {', '.join(_ATTRIBUTES.values())}.",
        )
    return {"VpcId": vpc.id, member: {"Value": vpc_attribute(vpc, attribute)}}


@action("AssociateVpcCidrBlock")
def associate_vpc_cidr_block(call: Call) -> dict[str, Any]:
    vpc_id = str(call.required("VpcId"))
    vpc, association = call.service.associate_vpc_cidr(
        call.tenant, vpc_id, str(call.required("CidrBlock"))
    )
    cidr = dict(vpc.secondary)[association]
    return {"VpcId": vpc.id, "CidrBlockAssociation": _block(association, cidr, "associated")}


@action("DisassociateVpcCidrBlock")
def disassociate_vpc_cidr_block(call: Call) -> dict[str, Any]:
    association = str(call.required("AssociationId"))
    vpc, cidr = call.service.disassociate_vpc_cidr(call.tenant, association)
    return {"VpcId": vpc.id, "CidrBlockAssociation": _block(association, cidr, "disassociated")}


def _block(association: str, cidr: str, state: str) -> dict[str, Any]:
    return {"AssociationId": association, "CidrBlock": cidr, "CidrBlockState": {"State": state}}


# -- subnets ----------------------------------------------------------------------------------


def zones(call: Call) -> list[str]:
    """The region's availability zones: one per distinct zone of the compute nodes."""
    return sorted({node.zone or default_zone(call) for node in call.service.describe_nodes()}) or [
        default_zone(call)
    ]


def default_zone(call: Call) -> str:
    return f"{call.region}a"


def zone_id(call: Call, zone: str, names: list[str]) -> str:
    """The zone's id ("us-east-1-az2"), by its place among the region's `zones`."""
    index = names.index(zone) + 1 if zone in names else 0
    return f"{call.region}-az{index}"


def subnet_out(
    call: Call,
    subnet: Subnet,
    tags: list[tuple[str, str]],
    used: dict[str, int],
    known_zones: list[str],
) -> dict[str, Any]:
    net = IPv4Network(subnet.cidr)
    zone = subnet.zone or default_zone(call)
    return {
        "SubnetId": subnet.id,
        "SubnetArn": f"arn:aws:ec2:{call.region}:{call.account}:subnet/{subnet.id}",
        "VpcId": subnet.vpc,
        "OwnerId": call.account,
        "CidrBlock": subnet.cidr,
        "AvailabilityZone": zone,
        "AvailabilityZoneId": zone_id(call, zone, known_zones),
        "AvailableIpAddressCount": net.num_addresses - len(reserved(net)) - used.get(subnet.id, 0),
        "DefaultForAz": False,
        "MapPublicIpOnLaunch": subnet.map_public_ip,
        "AssignIpv6AddressOnCreation": False,
        "State": "available",
        "Tags": tag_list(tags),
    }


def _used(call: Call) -> dict[str, int]:
    """Addresses in use per subnet: each interface's own and its secondary ones."""
    used: dict[str, int] = {}
    for iface in call.service.describe_interfaces(call.tenant):
        used[iface.subnet] = used.get(iface.subnet, 0) + 1 + len(iface.secondary_ips)
    return used


@action("CreateSubnet")
def create_subnet(call: Call) -> dict[str, Any]:
    vpc_id = str(call.required("VpcId"))
    cidr = str(call.required("CidrBlock"))
    zone = call.text("AvailabilityZone")
    known = zones(call)
    if zone and zone not in known:
        raise ApiError(
            "InvalidParameterValue",
            f"Value ({shown(zone)}) for parameter availabilityZone is invalid. Subnets can "
            f"currently only be created in the following availability zones: {', '.join(known)}.",
        )
    zone = zone or known[0]
    tags = call.tags_for("subnet")
    stored_zone = "" if zone == default_zone(call) else zone
    subnet = call.service.create_subnet(call.tenant, vpc_id, name_of(tags), cidr, stored_zone)
    if tags:
        call.service.create_tags(call.tenant, [subnet.id], tags)
    return {"Subnet": subnet_out(call, subnet, tags, {}, known)}


@action("DeleteSubnet")
def delete_subnet(call: Call) -> None:
    call.service.delete_subnet(call.tenant, str(call.required("SubnetId")))


@action("DescribeSubnets", mutating=False)
def describe_subnets(call: Call) -> dict[str, Any]:
    tags = call.service.all_tags(call.tenant)
    used = _used(call)
    known = zones(call)

    def free(s: Subnet) -> int:
        return int(subnet_out(call, s, [], used, known)["AvailableIpAddressCount"])

    fields = {
        "subnet-id": lambda s: s.id,
        "vpc-id": lambda s: s.vpc,
        "cidr-block": lambda s: s.cidr,
        "cidr": lambda s: s.cidr,
        "cidrBlock": lambda s: s.cidr,
        "availability-zone": lambda s: s.zone or default_zone(call),
        "availability-zone-id": lambda s: zone_id(call, s.zone or default_zone(call), known),
        "available-ip-address-count": free,
        "default-for-az": lambda s: False,
        "defaultForAz": lambda s: False,
        "map-public-ip-on-launch": lambda s: s.map_public_ip,
        "owner-id": lambda s: call.account,
        "state": lambda s: "available",
        "subnet-arn": lambda s: f"arn:aws:ec2:{call.region}:{call.account}:subnet/{s.id}",
    }
    found = select(
        call,
        call.service.describe_subnets(call.tenant),
        fields,
        id_of=lambda s: s.id,
        ids_param="SubnetIds",
        not_found=lambda rid: not_found("subnet", rid),
        tags=tags,
    )
    page, token = paginate(call, found, lambda s: s.id)
    return {
        "Subnets": [subnet_out(call, s, tags.get(s.id, []), used, known) for s in page],
        "NextToken": token,
    }


@action("ModifySubnetAttribute")
def modify_subnet_attribute(call: Call) -> None:
    subnet_id = str(call.required("SubnetId"))
    value = call.param("MapPublicIpOnLaunch")
    flag = value.get("Value") if isinstance(value, dict) else None
    if not isinstance(flag, bool):
        others = sorted(k for k in call.params if k not in ("SubnetId", "DryRun"))
        raise ApiError(
            "InvalidParameterValue",
            "Only MapPublicIpOnLaunch can be modified here"
            + (f"; not {', '.join(others)}." if others else "."),
        )
    call.service.set_map_public_ip(call.tenant, subnet_id, flag)
