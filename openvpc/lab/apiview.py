"""A tenant's resources read back through the EC2 API (as any client would read them) into the
shared model: what `apply` compares a topology with, and what the showcase expects of the
network. Only the fields those two need are filled in."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from openvpc.api.actions.vpcs import ENCAP_TAG, MODE_TAG
from openvpc.model.resources import (
    Association,
    Instance,
    Interface,
    Route,
    RouteTable,
    Snapshot,
    Subnet,
    Vpc,
)
from openvpc.service.validate import check_encap, check_mode

LIVE = ("pending", "running", "stopping", "stopped")  # instance states that hold an address


def name_tag(item: dict[str, Any]) -> str:
    return next((str(t["Value"]) for t in item.get("Tags") or [] if t["Key"] == "Name"), "")


def tag(item: dict[str, Any], key: str) -> str | None:
    return next((str(t["Value"]) for t in item.get("Tags") or [] if t["Key"] == key), None)


@dataclass
class TenantView:
    """One tenant's VPCs, subnets, route tables (with associations) and live instances."""

    tenant: str
    vpcs: list[Vpc] = field(default_factory=list)
    subnets: list[Subnet] = field(default_factory=list)
    tables: list[RouteTable] = field(default_factory=list)
    associations: list[Association] = field(default_factory=list)
    association_ids: dict[str, str] = field(default_factory=dict)  # subnet -> rtbassoc id
    main_tables: dict[str, str] = field(default_factory=dict)  # VPC -> its main table
    instances: list[Instance] = field(default_factory=list)
    interfaces: list[Interface] = field(default_factory=list)


def read(ec2: Any, tenant: str) -> TenantView:
    """Everything of the tenant the showcase and `apply` look at, through paginators."""
    view = TenantView(tenant)
    for page in ec2.get_paginator("describe_vpcs").paginate():
        for v in page["Vpcs"]:
            mode = tag(v, MODE_TAG) or "l3"
            encap = tag(v, ENCAP_TAG) or "vxlan"
            view.vpcs.append(
                Vpc(
                    v["VpcId"],
                    tenant,
                    name_tag(v),
                    v["CidrBlock"],
                    check_mode(mode),
                    check_encap(encap),
                )
            )
    for page in ec2.get_paginator("describe_subnets").paginate():
        for s in page["Subnets"]:
            view.subnets.append(
                Subnet(s["SubnetId"], tenant, s["VpcId"], name_tag(s), s["CidrBlock"])
            )
    for page in ec2.get_paginator("describe_route_tables").paginate():
        for t in page["RouteTables"]:
            view.tables.append(_table(t, tenant))
            for a in t.get("Associations") or []:
                if a.get("Main"):
                    view.main_tables[t["VpcId"]] = t["RouteTableId"]
                elif a.get("SubnetId"):
                    view.associations.append(Association(a["SubnetId"], t["RouteTableId"], tenant))
                    view.association_ids[a["SubnetId"]] = a["RouteTableAssociationId"]
    for page in ec2.get_paginator("describe_instances").paginate():
        for reservation in page["Reservations"]:
            for i in reservation["Instances"]:
                if i["State"]["Name"] not in LIVE:
                    continue
                eni = i["NetworkInterfaces"][0]
                node = str(i.get("Placement", {}).get("HostId", ""))
                view.instances.append(
                    Instance(i["InstanceId"], tenant, name_tag(i), node, eni["NetworkInterfaceId"])
                )
                view.interfaces.append(
                    Interface(
                        eni["NetworkInterfaceId"],
                        tenant,
                        eni["SubnetId"],
                        i["InstanceId"],
                        node,
                        eni.get("MacAddress", ""),
                        eni["PrivateIpAddress"],
                        "",
                    )
                )
    view.vpcs = [replace(v, main_route_table=view.main_tables.get(v.id, "")) for v in view.vpcs]
    return view


def _table(t: dict[str, Any], tenant: str) -> RouteTable:
    routes = []
    for r in t.get("Routes") or []:
        destination = r.get("DestinationCidrBlock")
        if destination is None:
            continue
        if r.get("State") == "blackhole":
            target = "blackhole"
        elif r.get("GatewayId") == "local":
            target = "local"
        else:
            target = str(
                r.get("NetworkInterfaceId")
                or r.get("GatewayId")
                or r.get("NatGatewayId")
                or r.get("VpcPeeringConnectionId")
                or r.get("InstanceId")
                or "blackhole"
            )
        routes.append(Route(destination, target))
    return RouteTable(t["RouteTableId"], tenant, t["VpcId"], name_tag(t), 0, None, tuple(routes))


def snapshot(views: list[TenantView]) -> Snapshot:
    """The tenants' resources as one Snapshot: what the connectivity matrix expects from."""
    return Snapshot(
        revision=0,
        vpcs=tuple(v for view in views for v in view.vpcs),
        subnets=tuple(s for view in views for s in view.subnets),
        route_tables=tuple(t for view in views for t in view.tables),
        associations=tuple(a for view in views for a in view.associations),
        instances=tuple(i for view in views for i in view.instances),
        interfaces=tuple(i for view in views for i in view.interfaces),
    )
