"""VPC peering on a real lab, driven with boto3, on both datapaths: across tenants after
acceptance, traffic only once both sides' route tables point at the connection, a group may
admit the peer's group, peering is not transitive, and a deleted connection leaves a blackhole
route that drops."""

from collections.abc import Iterator
from typing import Any

import pytest
from conftest import LabHandle, datapath_lab
from ec2kit import default_group


def _vpc(name: str, second: int, vm: str, node: str) -> dict[str, Any]:
    return {
        "name": name,
        "cidr": f"10.{second}.0.0/16",
        "subnets": [{"name": "s", "cidr": f"10.{second}.1.0/24"}],
        "vms": [{"name": vm, "subnet": "s", "node": node}],
    }


TOPOLOGY: dict[str, Any] = {
    "underlay": "l3",
    "nodes": ["a", "b"],
    "tenants": [
        {"name": "red", "vpcs": [_vpc("va", 11, "a1", "a"), _vpc("vc", 13, "c1", "b")]},
        {"name": "blue", "vpcs": [_vpc("vb", 12, "b1", "b")]},
    ],
}


@pytest.fixture(scope="module", params=["ebpf", "python"])
def lab(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LabHandle]:
    with datapath_lab(request, tmp_path_factory, TOPOLOGY, "pcx") as h:
        yield h


class Side:
    """One VPC as its tenant sees it: client, VPC id, main route table, default group."""

    def __init__(self, ec2: Any, cidr: str) -> None:
        self.ec2, self.cidr = ec2, cidr
        (vpc,) = [v for v in ec2.describe_vpcs()["Vpcs"] if v["CidrBlock"] == cidr]
        self.vpc, self.owner = vpc["VpcId"], vpc["OwnerId"]
        filters = [{"Name": "vpc-id", "Values": [self.vpc]}]
        (table,) = ec2.describe_route_tables(Filters=filters)["RouteTables"]
        self.table = table["RouteTableId"]
        self.group = default_group(ec2, self.vpc)

    def peer(self, other: "Side") -> str:
        """A connection requested by this side, accepted by the other."""
        pcx = self.ec2.create_vpc_peering_connection(
            VpcId=self.vpc, PeerVpcId=other.vpc, PeerOwnerId=other.owner
        )["VpcPeeringConnection"]["VpcPeeringConnectionId"]
        other.ec2.accept_vpc_peering_connection(VpcPeeringConnectionId=pcx)
        return str(pcx)

    def route(self, other: "Side", pcx: str) -> None:
        self.ec2.create_route(
            RouteTableId=self.table, DestinationCidrBlock=other.cidr, VpcPeeringConnectionId=pcx
        )

    def admit(self, **source: Any) -> None:
        """Everything in from `source` (IpRanges or UserIdGroupPairs) on the default group."""
        self.ec2.authorize_security_group_ingress(
            GroupId=self.group, IpPermissions=[{"IpProtocol": "-1", **source}]
        )


def test_peering_across_tenants_non_transitive_and_blackholed_when_deleted(lab: LabHandle) -> None:
    h = lab
    red, blue = h.ec2("red"), h.ec2("blue")
    a, c, b = Side(red, "10.11.0.0/16"), Side(red, "10.13.0.0/16"), Side(blue, "10.12.0.0/16")
    b1, c1 = h.ip("b1"), h.ip("c1")

    ab = a.peer(b)
    # blue's group admits red's group across the peering (a cross-tenant group reference)
    b.admit(UserIdGroupPairs=[{"GroupId": a.group, "UserId": a.owner}])
    h.wait_in_sync()
    assert not h.ping("a1", b1, wait=1.0)  # accepted, but no route on either side
    a.route(b, ab)
    h.wait_in_sync()
    assert not h.ping("a1", b1, wait=1.0)  # the requests arrive; the replies have no way back
    b.route(a, ab)
    h.wait_in_sync()
    assert h.ping("a1", b1, count=2)

    # B-C peered and routed both ways, A routes C's range to A-B: A still cannot reach C
    bc = b.peer(c)
    b.route(c, bc)
    c.route(b, bc)
    c.admit(IpRanges=[{"CidrIp": "10.0.0.0/8"}])
    a.route(c, ab)
    h.wait_in_sync()
    assert h.ping("b1", c1, count=2)
    assert not h.ping("a1", c1, wait=1.0)

    red.delete_vpc_peering_connection(VpcPeeringConnectionId=ab)
    h.wait_in_sync()
    (table,) = red.describe_route_tables(RouteTableIds=[a.table])["RouteTables"]
    states = {r["DestinationCidrBlock"]: r["State"] for r in table["Routes"]}
    assert states["10.12.0.0/16"] == "blackhole"
    assert not h.ping("a1", b1, wait=1.0)
    assert h.ping("b1", c1)  # the other connection goes on
