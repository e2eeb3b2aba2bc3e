"""Internet gateway and NAT gateway actions."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from openvpc.api.common import paginate, select, tag_list
from openvpc.api.context import Call
from openvpc.api.errors import ApiError, shown
from openvpc.api.registry import action
from openvpc.model.gateways import InternetGateway, NatGateway
from openvpc.service.errors import not_found

# -- internet gateways ----------------------------------------------------------------------


def igw_out(call: Call, igw: InternetGateway, tags: list[tuple[str, str]]) -> dict[str, Any]:
    attachments = [{"State": "available", "VpcId": igw.vpc}] if igw.vpc else []
    return {
        "InternetGatewayId": igw.id,
        "OwnerId": call.account,
        "Attachments": attachments,
        "Tags": tag_list(tags),
    }


@action("CreateInternetGateway")
def create_internet_gateway(call: Call) -> dict[str, Any]:
    tags = call.tags_for("internet-gateway")
    igw = call.service.create_internet_gateway(call.tenant)
    if tags:
        call.service.create_tags(call.tenant, [igw.id], tags)
    return {"InternetGateway": igw_out(call, igw, tags)}


@action("DeleteInternetGateway")
def delete_internet_gateway(call: Call) -> None:
    call.service.delete_internet_gateway(call.tenant, str(call.required("InternetGatewayId")))


@action("AttachInternetGateway")
def attach_internet_gateway(call: Call) -> None:
    call.service.attach_internet_gateway(
        call.tenant, str(call.required("InternetGatewayId")), str(call.required("VpcId"))
    )


@action("DetachInternetGateway")
def detach_internet_gateway(call: Call) -> None:
    call.service.detach_internet_gateway(
        call.tenant, str(call.required("InternetGatewayId")), str(call.required("VpcId"))
    )


@action("DescribeInternetGateways", mutating=False)
def describe_internet_gateways(call: Call) -> dict[str, Any]:
    tags = call.service.all_tags(call.tenant)
    fields = {
        "internet-gateway-id": lambda g: g.id,
        "owner-id": lambda g: call.account,
        "attachment.vpc-id": lambda g: g.vpc or None,
        "attachment.state": lambda g: "available" if g.vpc else None,
    }
    found = select(
        call,
        call.service.describe_internet_gateways(call.tenant),
        fields,
        id_of=lambda g: g.id,
        ids_param="InternetGatewayIds",
        not_found=lambda rid: not_found("internetGateway", rid),
        tags=tags,
    )
    page, token = paginate(call, found, lambda g: g.id)
    return {
        "InternetGateways": [igw_out(call, g, tags.get(g.id, [])) for g in page],
        "NextToken": token,
    }


# -- NAT gateways ---------------------------------------------------------------------------

_FAILURES = {"Gateway.NotAttached": "Network {vpc} has no Internet gateway attached"}


def _time(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def nat_out(
    call: Call, nat: NatGateway, public: dict[str, tuple[str, str]], tags: list[tuple[str, str]]
) -> dict[str, Any]:
    """`public`: allocation id -> (public address, association id) of the tenant's EIPs."""
    address: dict[str, Any] = {"NetworkInterfaceId": nat.interface, "IsPrimary": True}
    if nat.ip:
        address["PrivateIp"] = nat.ip
    if nat.allocation:
        address["AllocationId"] = nat.allocation
        ip, association = public.get(nat.allocation, ("", ""))
        if ip and nat.state in ("pending", "available"):
            address["PublicIp"] = ip
            if association:
                address["AssociationId"] = association
    address["Status"] = {"available": "succeeded", "pending": "associating"}.get(
        nat.state, "disassociating" if nat.state == "deleting" else "failed"
    )
    out: dict[str, Any] = {
        "NatGatewayId": nat.id,
        "SubnetId": nat.subnet,
        "VpcId": nat.vpc,
        "State": nat.state,
        "ConnectivityType": "public" if nat.allocation else "private",
        "CreateTime": _time(nat.created),
        "NatGatewayAddresses": [address] if nat.state != "failed" else [],
        "Tags": tag_list(tags),
    }
    if nat.state == "deleted":
        out["DeleteTime"] = _time(nat.deleted)
    if nat.failure:
        out["FailureCode"] = nat.failure
        out["FailureMessage"] = _FAILURES.get(nat.failure, nat.failure).format(vpc=nat.vpc)
    return out


def _public(call: Call) -> dict[str, tuple[str, str]]:
    return {
        e.id: (e.public_ip, e.association) for e in call.service.describe_addresses(call.tenant)
    }


@action("CreateNatGateway")
def create_nat_gateway(call: Call) -> dict[str, Any]:
    for name in ("VpcId", "AvailabilityZoneAddresses", "SecondaryAllocationIds"):
        if call.param(name):
            raise ApiError("InvalidParameterValue", f"{name} is not supported")
    if call.param("PrivateIpAddress") or call.param("SecondaryPrivateIpAddresses"):
        raise ApiError("InvalidParameterValue", "Choosing the private address is not supported")
    connectivity = call.text("ConnectivityType", "public")
    if connectivity not in ("public", "private"):
        raise ApiError(
            "InvalidParameterValue",
            f"Value ({shown(connectivity)}) for parameter connectivityType is invalid.",
        )
    subnet_id = str(call.required("SubnetId"))
    allocation = call.param("AllocationId")
    tags = call.tags_for("natgateway")
    nat = call.service.create_nat_gateway(
        call.tenant,
        subnet_id,
        None if allocation is None else str(allocation),
        connectivity,
        now=call.now,
    )
    if tags:
        call.service.create_tags(call.tenant, [nat.id], tags)
    out: dict[str, Any] = {"NatGateway": nat_out(call, nat, _public(call), tags)}
    token = call.param("ClientToken")
    if token:
        out["ClientToken"] = str(token)
    return out


@action("DeleteNatGateway")
def delete_nat_gateway(call: Call) -> dict[str, Any]:
    nat = call.service.delete_nat_gateway(
        call.tenant, str(call.required("NatGatewayId")), now=call.now
    )
    return {"NatGatewayId": nat.id}


@action("DescribeNatGateways", mutating=False)
def describe_nat_gateways(call: Call) -> dict[str, Any]:
    tags = call.service.all_tags(call.tenant)
    # this action's filter list is "Filter" in botocore's model; select reads "Filters"
    params = {k: v for k, v in call.params.items() if k != "Filter"}
    if call.param("Filter") is not None:
        params["Filters"] = call.params["Filter"]
    call = replace(call, params=params)
    fields = {
        "nat-gateway-id": lambda n: n.id,
        "state": lambda n: n.state,
        "subnet-id": lambda n: n.subnet,
        "vpc-id": lambda n: n.vpc,
    }
    found = select(
        call,
        call.service.describe_nat_gateways(call.tenant, now=call.now),
        fields,
        id_of=lambda n: n.id,
        ids_param="NatGatewayIds",
        not_found=lambda rid: not_found("natGateway", rid),
        tags=tags,
    )
    page, token = paginate(call, found, lambda n: n.id)
    public = _public(call)
    return {
        "NatGateways": [nat_out(call, n, public, tags.get(n.id, [])) for n in page],
        "NextToken": token,
    }
