"""VPC peering connection actions. Both sides' tenants see a connection, each with its own
tags; the accepter may be another tenant (PeerOwnerId names its account)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from openvpc.api.common import paginate, select, tag_list
from openvpc.api.context import Call
from openvpc.api.errors import ApiError, shown
from openvpc.api.registry import action
from openvpc.model.gateways import VpcPeeringConnection
from openvpc.service.errors import not_found


def _side(call: Call, account: str, vpc: str, cidr: str) -> dict[str, Any]:
    info: dict[str, Any] = {"OwnerId": account, "VpcId": vpc, "Region": call.region}
    if cidr:
        info["CidrBlock"] = cidr
        info["CidrBlockSet"] = [{"CidrBlock": cidr}]
    return info


def pcx_out(
    call: Call,
    pcx: VpcPeeringConnection,
    accounts: dict[str, str],
    tags: list[tuple[str, str]],
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "VpcPeeringConnectionId": pcx.id,
        "RequesterVpcInfo": _side(call, accounts.get(pcx.tenant, ""), pcx.vpc, pcx.cidr),
        "AccepterVpcInfo": _side(
            call,
            accounts.get(pcx.accepter_tenant) or pcx.accepter_account,
            pcx.accepter_vpc,
            pcx.accepter_cidr,
        ),
        "Status": {"Code": pcx.status, "Message": pcx.message},
        "Tags": tag_list(tags),
    }
    if pcx.expires and pcx.status in ("pending-acceptance", "expired"):
        out["ExpirationTime"] = datetime.fromtimestamp(pcx.expires, UTC)
    return out


def _one(call: Call, pcx_id: str) -> VpcPeeringConnection:
    for pcx in call.service.describe_vpc_peering_connections(call.tenant, now=call.now):
        if pcx.id == pcx_id:
            return pcx
    raise not_found("vpcPeeringConnection", pcx_id)


def _out(call: Call, pcx: VpcPeeringConnection) -> dict[str, Any]:
    tags = call.service.tags_of(call.tenant, pcx.id)
    return {"VpcPeeringConnection": pcx_out(call, pcx, call.service.tenant_accounts(), tags)}


@action("CreateVpcPeeringConnection")
def create_vpc_peering_connection(call: Call) -> dict[str, Any]:
    region = call.text("PeerRegion")
    if region and region != call.region:
        raise ApiError(
            "InvalidParameterValue",
            f"Value ({shown(region)}) for parameter peerRegion is invalid. Only {call.region} "
            "is served.",
        )
    vpc_id = str(call.required("VpcId"))
    peer_vpc = str(call.required("PeerVpcId"))
    owner = call.text("PeerOwnerId") or None
    tags = call.tags_for("vpc-peering-connection")
    pcx = call.service.create_vpc_peering_connection(
        call.tenant, vpc_id, peer_vpc, owner, now=call.now
    )
    if tags:
        call.service.create_tags(call.tenant, [pcx.id], tags)
    return {"VpcPeeringConnection": pcx_out(call, pcx, call.service.tenant_accounts(), tags)}


@action("AcceptVpcPeeringConnection")
def accept_vpc_peering_connection(call: Call) -> dict[str, Any]:
    pcx = call.service.accept_vpc_peering_connection(
        call.tenant, str(call.required("VpcPeeringConnectionId")), now=call.now
    )
    return _out(call, pcx)


@action("RejectVpcPeeringConnection")
def reject_vpc_peering_connection(call: Call) -> dict[str, Any]:
    call.service.reject_vpc_peering_connection(
        call.tenant, str(call.required("VpcPeeringConnectionId")), now=call.now
    )
    return {"Return": True}


@action("DeleteVpcPeeringConnection")
def delete_vpc_peering_connection(call: Call) -> dict[str, Any]:
    call.service.delete_vpc_peering_connection(
        call.tenant, str(call.required("VpcPeeringConnectionId")), now=call.now
    )
    return {"Return": True}


@action("DescribeVpcPeeringConnections", mutating=False)
def describe_vpc_peering_connections(call: Call) -> dict[str, Any]:
    tags = call.service.all_tags(call.tenant)
    accounts = call.service.tenant_accounts()
    fields = {
        "vpc-peering-connection-id": lambda p: p.id,
        "status-code": lambda p: p.status,
        "status-message": lambda p: p.message,
        "requester-vpc-info.vpc-id": lambda p: p.vpc,
        "requester-vpc-info.cidr-block": lambda p: p.cidr,
        "requester-vpc-info.owner-id": lambda p: accounts.get(p.tenant, ""),
        "accepter-vpc-info.vpc-id": lambda p: p.accepter_vpc,
        "accepter-vpc-info.cidr-block": lambda p: p.accepter_cidr or None,
        "accepter-vpc-info.owner-id": lambda p: (
            accounts.get(p.accepter_tenant) or p.accepter_account
        ),
    }
    found = select(
        call,
        call.service.describe_vpc_peering_connections(call.tenant, now=call.now),
        fields,
        id_of=lambda p: p.id,
        ids_param="VpcPeeringConnectionIds",
        not_found=lambda rid: not_found("vpcPeeringConnection", rid),
        tags=tags,
    )
    page, token = paginate(call, found, lambda p: p.id)
    return {
        "VpcPeeringConnections": [pcx_out(call, p, accounts, tags.get(p.id, [])) for p in page],
        "NextToken": token,
    }
