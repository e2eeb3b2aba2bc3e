"""DescribeRegions and DescribeAvailabilityZones: this endpoint is one region, and each
distinct zone of its compute nodes is an availability zone."""

from __future__ import annotations

from typing import Any

from openvpc.api.actions.vpcs import zone_id, zones
from openvpc.api.common import select
from openvpc.api.context import Call
from openvpc.api.errors import ApiError, shown
from openvpc.api.registry import action


@action("DescribeRegions", mutating=False)
def describe_regions(call: Call) -> dict[str, Any]:
    for name in call.ids("RegionNames"):
        if name != call.region:
            raise ApiError("InvalidParameterValue", f"Invalid region: {shown(name)}")
    region = {
        "RegionName": call.region,
        "Endpoint": f"ec2.{call.region}.amazonaws.com",
        "OptInStatus": "opt-in-not-required",
    }
    fields = {
        "region-name": lambda r: r["RegionName"],
        "endpoint": lambda r: r["Endpoint"],
        "opt-in-status": lambda r: r["OptInStatus"],
    }
    return {"Regions": select(call, [region], fields, id_of=lambda r: str(r["RegionName"]))}


@action("DescribeAvailabilityZones", mutating=False)
def describe_availability_zones(call: Call) -> dict[str, Any]:
    known = zones(call)
    for name in call.ids("ZoneNames"):
        if name not in known:
            raise ApiError(
                "InvalidParameterValue",
                f"The zone '{shown(name)}' does not exist in region {call.region}.",
            )
    for zid in call.ids("ZoneIds"):
        if zid not in {zone_id(call, z, known) for z in known}:
            raise ApiError(
                "InvalidParameterValue",
                f"The zone ID '{shown(zid)}' does not exist in region {call.region}.",
            )
    items = [
        {
            "ZoneName": z,
            "ZoneId": zone_id(call, z, known),
            "RegionName": call.region,
            "State": "available",
            "ZoneType": "availability-zone",
            "GroupName": call.region,
            "NetworkBorderGroup": call.region,
            "OptInStatus": "opt-in-not-required",
            "Messages": [],
        }
        for z in known
        if (not call.ids("ZoneNames") or z in call.ids("ZoneNames"))
        and (not call.ids("ZoneIds") or zone_id(call, z, known) in call.ids("ZoneIds"))
    ]
    fields = {
        "zone-name": lambda z: z["ZoneName"],
        "zone-id": lambda z: z["ZoneId"],
        "region-name": lambda z: z["RegionName"],
        "state": lambda z: z["State"],
        "zone-type": lambda z: z["ZoneType"],
        "group-name": lambda z: z["GroupName"],
        "opt-in-status": lambda z: z["OptInStatus"],
    }
    return {"AvailabilityZones": select(call, items, fields, id_of=lambda z: str(z["ZoneName"]))}
