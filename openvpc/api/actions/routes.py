"""Route table actions: tables, their routes (to gateways, NAT gateways, interfaces,
instances and peering connections) and their subnet associations."""

from __future__ import annotations

from typing import Any

from openvpc.api.actions.vpcs import name_of
from openvpc.api.common import paginate, select, tag_list
from openvpc.api.context import Call
from openvpc.api.errors import ApiError
from openvpc.api.registry import action
from openvpc.model.resources import Route
from openvpc.service.errors import not_found
from openvpc.service.routing import LOCAL, TableView, one_target

_ASSOCIATED = {"State": "associated"}


def _target_fields(route: Route) -> dict[str, Any]:
    """The route's target as EC2 names it: local and internet gateways are GatewayIds."""
    target = route.target
    if target == LOCAL or target.startswith("igw-"):
        return {"GatewayId": target}
    if target.startswith("nat-"):
        return {"NatGatewayId": target}
    if target.startswith("pcx-"):
        return {"VpcPeeringConnectionId": target}
    if target.startswith("eni-"):
        out: dict[str, Any] = {"NetworkInterfaceId": target}
        if route.instance:
            out["InstanceId"] = route.instance
        return out
    return {}  # an explicit blackhole (from a topology file) has no target


def table_out(call: Call, view: TableView, tags: list[tuple[str, str]]) -> dict[str, Any]:
    table = view.table
    routes = []
    for route, state in zip(table.routes, view.states, strict=True):
        routes.append(
            {
                "DestinationCidrBlock": route.destination,
                **_target_fields(route),
                **({"InstanceOwnerId": call.account} if route.instance else {}),
                "Origin": "CreateRouteTable" if route.target == LOCAL else "CreateRoute",
                "State": state,
            }
        )
    associations = [
        {
            "Main": a.subnet == "",
            "RouteTableAssociationId": a.id,
            "RouteTableId": table.id,
            **({"SubnetId": a.subnet} if a.subnet else {}),
            "AssociationState": _ASSOCIATED,
        }
        for a in view.associations
    ]
    return {
        "RouteTableId": table.id,
        "VpcId": table.vpc,
        "OwnerId": call.account,
        "Routes": routes,
        "Associations": associations,
        "PropagatingVgws": [],
        "Tags": tag_list(tags),
    }


_ABSENT = (
    "association.gateway-id",
    "route.destination-ipv6-cidr-block",
    "route.destination-prefix-list-id",
    "route.egress-only-internet-gateway-id",
    "route.transit-gateway-id",
)


def _nothing(_: object) -> None:
    return None


def _view(call: Call, rtb_id: str) -> TableView:
    for view in call.service.describe_route_table_views(call.tenant):
        if view.table.id == rtb_id:
            return view
    raise not_found("routeTable", rtb_id)


@action("CreateRouteTable")
def create_route_table(call: Call) -> dict[str, Any]:
    vpc_id = str(call.required("VpcId"))
    tags = call.tags_for("route-table")
    table = call.service.create_route_table(call.tenant, vpc_id, name_of(tags))
    if tags:
        call.service.create_tags(call.tenant, [table.id], tags)
    return {"RouteTable": table_out(call, _view(call, table.id), tags)}


@action("DeleteRouteTable")
def delete_route_table(call: Call) -> None:
    call.service.delete_route_table(call.tenant, str(call.required("RouteTableId")))


@action("DescribeRouteTables", mutating=False)
def describe_route_tables(call: Call) -> dict[str, Any]:
    tags = call.service.all_tags(call.tenant)

    def routes(v: TableView) -> list[Route]:
        return list(v.table.routes)

    def targets(v: TableView, field: str) -> list[str]:
        return [str(t) for r in v.table.routes if (t := _target_fields(r).get(field))]

    fields = {
        "route-table-id": lambda v: v.table.id,
        "vpc-id": lambda v: v.table.vpc,
        "owner-id": lambda v: call.account,
        "association.main": lambda v: v.main,
        "association.subnet-id": lambda v: [a.subnet for a in v.associations if a.subnet],
        "association.route-table-association-id": lambda v: [a.id for a in v.associations],
        "association.route-table-id": lambda v: [v.table.id for _ in v.associations],
        "route.destination-cidr-block": lambda v: [r.destination for r in routes(v)],
        "route.gateway-id": lambda v: targets(v, "GatewayId"),
        "route.nat-gateway-id": lambda v: targets(v, "NatGatewayId"),
        "route.instance-id": lambda v: targets(v, "InstanceId"),
        "route.network-interface-id": lambda v: targets(v, "NetworkInterfaceId"),
        "route.vpc-peering-connection-id": lambda v: targets(v, "VpcPeeringConnectionId"),
        "route.state": lambda v: list(v.states),
        "route.origin": lambda v: [
            "CreateRouteTable" if r.target == LOCAL else "CreateRoute" for r in routes(v)
        ],
        # kinds openvpc does not have: known names that match nothing
        **{name: _nothing for name in _ABSENT},
    }
    found = select(
        call,
        call.service.describe_route_table_views(call.tenant),
        fields,
        id_of=lambda v: v.table.id,
        ids_param="RouteTableIds",
        not_found=lambda rid: not_found("routeTable", rid),
        tags=tags,
    )
    page, token = paginate(call, found, lambda v: v.table.id, bounds=(5, 100))
    return {
        "RouteTables": [table_out(call, v, tags.get(v.table.id, [])) for v in page],
        "NextToken": token,
    }


@action("AssociateRouteTable")
def associate_route_table(call: Call) -> dict[str, Any]:
    if call.param("GatewayId"):
        raise ApiError(
            "InvalidParameterValue", "Gateway route table associations are not supported"
        )
    association = call.service.associate_route_table(
        call.tenant, str(call.required("RouteTableId")), str(call.required("SubnetId"))
    )
    return {"AssociationId": association.id, "AssociationState": _ASSOCIATED}


@action("DisassociateRouteTable")
def disassociate_route_table(call: Call) -> None:
    call.service.disassociate_route_table(call.tenant, str(call.required("AssociationId")))


@action("ReplaceRouteTableAssociation")
def replace_route_table_association(call: Call) -> dict[str, Any]:
    new_id = call.service.replace_route_table_association(
        call.tenant, str(call.required("AssociationId")), str(call.required("RouteTableId"))
    )
    return {"NewAssociationId": new_id, "AssociationState": _ASSOCIATED}


_UNSUPPORTED_TARGETS = (
    "EgressOnlyInternetGatewayId",
    "TransitGatewayId",
    "LocalGatewayId",
    "CarrierGatewayId",
    "CoreNetworkArn",
    "OdbNetworkArn",
    "VpcEndpointId",
)


def _destination(call: Call) -> str:
    for name in ("DestinationIpv6CidrBlock", "DestinationPrefixListId"):
        if call.param(name):
            raise ApiError("InvalidParameterValue", f"{name} is not supported: IPv4 only")
    return str(call.required("DestinationCidrBlock"))


def _target(call: Call, local_allowed: bool = False) -> str:
    for name in _UNSUPPORTED_TARGETS:
        if call.param(name):
            raise ApiError(
                "InvalidParameterValue", f"Route targets of type {name} are not supported"
            )
    gateway = call.param("GatewayId")
    if local_allowed and call.param("LocalTarget") is True:
        if gateway:
            raise ApiError(
                "InvalidParameterCombination",
                "The parameters localTarget and gatewayId cannot be specified together",
            )
        gateway = LOCAL
    return one_target(
        gateway=_text(gateway),
        nat_gateway=_text(call.param("NatGatewayId")),
        instance=_text(call.param("InstanceId")),
        interface=_text(call.param("NetworkInterfaceId")),
        peering=_text(call.param("VpcPeeringConnectionId")),
    )


def _text(value: object) -> str | None:
    return None if value is None else str(value)


@action("CreateRoute")
def create_route(call: Call) -> dict[str, Any]:
    rtb_id = str(call.required("RouteTableId"))
    destination = _destination(call)
    call.service.create_route(call.tenant, rtb_id, destination, _target(call))
    return {"Return": True}


@action("ReplaceRoute")
def replace_route(call: Call) -> None:
    rtb_id = str(call.required("RouteTableId"))
    destination = _destination(call)
    call.service.replace_route(call.tenant, rtb_id, destination, _target(call, True))


@action("DeleteRoute")
def delete_route(call: Call) -> None:
    rtb_id = str(call.required("RouteTableId"))
    call.service.delete_route(call.tenant, rtb_id, _destination(call))
