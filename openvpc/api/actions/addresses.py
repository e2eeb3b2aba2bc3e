"""Elastic IP actions: allocate, associate, disassociate, release and describe (VPC domain
only; an address is named by its allocation id, or by its public address where EC2 allows)."""

from __future__ import annotations

from typing import Any

from openvpc.api.common import select, tag_list
from openvpc.api.context import Call
from openvpc.api.errors import ApiError, shown
from openvpc.api.registry import action
from openvpc.model.gateways import ElasticIp
from openvpc.service.errors import ServiceError, not_found


def address_out(
    call: Call, eip: ElasticIp, subnets: dict[str, str], tags: list[tuple[str, str]]
) -> dict[str, Any]:
    """`subnets`: interface id -> its subnet, for the tenant's interfaces."""
    out: dict[str, Any] = {
        "AllocationId": eip.id,
        "PublicIp": eip.public_ip,
        "Domain": "vpc",
        "PublicIpv4Pool": "amazon",
        "NetworkBorderGroup": call.region,
        "Tags": tag_list(tags),
    }
    if eip.association:
        out.update(
            AssociationId=eip.association,
            NetworkInterfaceId=eip.interface,
            NetworkInterfaceOwnerId=call.account,
            PrivateIpAddress=eip.private_ip,
        )
        if eip.instance:
            out["InstanceId"] = eip.instance
        if eip.interface in subnets:
            out["SubnetId"] = subnets[eip.interface]
        if eip.nat_gateway:
            out["ServiceManaged"] = "nat"
    return out


def _subnets(call: Call) -> dict[str, str]:
    return {i.id: i.subnet for i in call.service.describe_interfaces(call.tenant)}


def _by_public_ip(call: Call, public_ip: str) -> ElasticIp:
    for eip in call.service.describe_addresses(call.tenant):
        if eip.public_ip == public_ip:
            return eip
    raise ServiceError("InvalidAddress.NotFound", f"Address '{shown(public_ip)}' not found.")


def _allocation(call: Call) -> str:
    """AllocationId, or the allocation of PublicIp (one of the two is required)."""
    allocation, public_ip = call.param("AllocationId"), call.param("PublicIp")
    if allocation:
        return str(allocation)
    if public_ip:
        return _by_public_ip(call, str(public_ip)).id
    raise ApiError("MissingParameter", "The request must contain the parameter AllocationId")


@action("AllocateAddress")
def allocate_address(call: Call) -> dict[str, Any]:
    if call.text("Domain", "vpc") != "vpc":
        raise ApiError(
            "InvalidParameterValue",
            f"Value ({shown(call.text('Domain'))}) for parameter domain is invalid.",
        )
    for name in ("Address", "PublicIpv4Pool", "CustomerOwnedIpv4Pool", "IpamPoolId"):
        if call.param(name):
            raise ApiError("InvalidParameterValue", f"{name} is not supported")
    tags = call.tags_for("elastic-ip")
    eip = call.service.allocate_address(call.tenant)
    if tags:
        call.service.create_tags(call.tenant, [eip.id], tags)
    return {
        "AllocationId": eip.id,
        "PublicIp": eip.public_ip,
        "Domain": "vpc",
        "PublicIpv4Pool": "amazon",
        "NetworkBorderGroup": call.region,
    }


@action("AssociateAddress")
def associate_address(call: Call) -> dict[str, Any]:
    allow = call.param("AllowReassociation")
    private_ip = call.param("PrivateIpAddress")
    instance = call.param("InstanceId")
    interface = call.param("NetworkInterfaceId")
    eip = call.service.associate_address(
        call.tenant,
        _allocation(call),
        None if instance is None else str(instance),
        None if interface is None else str(interface),
        None if private_ip is None else str(private_ip),
        allow if isinstance(allow, bool) else None,
    )
    return {"AssociationId": eip.association}


@action("DisassociateAddress")
def disassociate_address(call: Call) -> None:
    association, public_ip = call.param("AssociationId"), call.param("PublicIp")
    if not association and public_ip:
        association = _by_public_ip(call, str(public_ip)).association
        if not association:
            raise ServiceError(
                "InvalidAssociationID.NotFound",
                f"The address {shown(str(public_ip))} is not associated",
            )
    if not association:
        raise ApiError("MissingParameter", "The request must contain the parameter AssociationId")
    call.service.disassociate_address(call.tenant, str(association))


@action("ReleaseAddress")
def release_address(call: Call) -> None:
    call.service.release_address(call.tenant, _allocation(call))


@action("DescribeAddresses", mutating=False)
def describe_addresses(call: Call) -> dict[str, Any]:
    tags = call.service.all_tags(call.tenant)
    subnets = _subnets(call)
    fields = {
        "allocation-id": lambda e: e.id,
        "association-id": lambda e: e.association or None,
        "domain": lambda e: "vpc",
        "instance-id": lambda e: e.instance or None,
        "network-interface-id": lambda e: e.interface or None,
        "network-interface-owner-id": lambda e: call.account if e.association else None,
        "private-ip-address": lambda e: e.private_ip or None,
        "public-ip": lambda e: e.public_ip,
        "network-border-group": lambda e: call.region,
    }
    found = select(
        call,
        call.service.describe_addresses(call.tenant),
        fields,
        id_of=lambda e: e.id,
        ids_param="AllocationIds",
        not_found=lambda rid: not_found("allocation", rid),
        tags=tags,
    )
    wanted = call.ids("PublicIps")
    if wanted:
        known = {e.public_ip for e in found}
        for ip in wanted:
            if ip not in known:
                raise ServiceError("InvalidAddress.NotFound", f"Address '{shown(ip)}' not found.")
        found = [e for e in found if e.public_ip in wanted]
    return {"Addresses": [address_out(call, e, subnets, tags.get(e.id, [])) for e in found]}
