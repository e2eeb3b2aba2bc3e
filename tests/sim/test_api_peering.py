"""VPC peering connections through the real HTTP API with boto3, within one tenant and
across two."""

from collections.abc import Callable
from typing import Any

import botocore.exceptions
import pytest
from apikit import Api
from ec2kit import default_group

ClientError = botocore.exceptions.ClientError


def code_of(e: pytest.ExceptionInfo[ClientError]) -> str:
    return str(e.value.response["Error"]["Code"])


def _vpc(ec2: Any, cidr: str) -> str:
    return str(ec2.create_vpc(CidrBlock=cidr)["Vpc"]["VpcId"])


def test_across_tenants(api: Api) -> None:
    alice, bob = api.ec2("alice"), api.ec2("bob")
    mine = _vpc(alice, "10.0.0.0/16")
    theirs = _vpc(bob, "10.1.0.0/16")
    bob_account = api.service.tenant("bob").account
    alice_account = api.service.tenant("alice").account
    pcx = alice.create_vpc_peering_connection(
        VpcId=mine,
        PeerVpcId=theirs,
        PeerOwnerId=bob_account,
        TagSpecifications=[
            {"ResourceType": "vpc-peering-connection", "Tags": [{"Key": "Name", "Value": "p"}]}
        ],
    )["VpcPeeringConnection"]
    pcx_id = pcx["VpcPeeringConnectionId"]
    assert pcx["Status"]["Code"] == "pending-acceptance"
    assert (pcx["RequesterVpcInfo"]["OwnerId"], pcx["RequesterVpcInfo"]["VpcId"]) == (
        alice_account,
        mine,
    )
    assert (pcx["AccepterVpcInfo"]["OwnerId"], pcx["AccepterVpcInfo"]["VpcId"]) == (
        bob_account,
        theirs,
    )
    assert "ExpirationTime" in pcx
    # both sides see it; bob sees it without alice's tags
    (seen,) = bob.describe_vpc_peering_connections()["VpcPeeringConnections"]
    assert seen["VpcPeeringConnectionId"] == pcx_id
    assert "Tags" not in seen or seen["Tags"] == []
    pending = bob.describe_vpc_peering_connections(
        Filters=[{"Name": "status-code", "Values": ["pending-acceptance"]}]
    )["VpcPeeringConnections"]
    assert [p["VpcPeeringConnectionId"] for p in pending] == [pcx_id]
    with pytest.raises(ClientError) as e:
        alice.accept_vpc_peering_connection(VpcPeeringConnectionId=pcx_id)
    assert code_of(e) == "OperationNotPermitted"
    accepted = bob.accept_vpc_peering_connection(VpcPeeringConnectionId=pcx_id)
    assert accepted["VpcPeeringConnection"]["Status"]["Code"] == "active"
    alice.get_waiter("vpc_peering_connection_exists").wait(
        VpcPeeringConnectionIds=[pcx_id], WaiterConfig={"Delay": 1, "MaxAttempts": 3}
    )
    # each side routes through it from its own tables
    for ec2, vpc, dest in ((alice, mine, "10.1.0.0/16"), (bob, theirs, "10.0.0.0/16")):
        (main,) = ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [vpc]}])[
            "RouteTables"
        ]
        ec2.create_route(
            RouteTableId=main["RouteTableId"],
            DestinationCidrBlock=dest,
            VpcPeeringConnectionId=pcx_id,
        )
    with pytest.raises(ClientError) as e:
        bob.accept_vpc_peering_connection(VpcPeeringConnectionId=pcx_id)
    assert code_of(e) == "InvalidStateTransition"
    assert bob.delete_vpc_peering_connection(VpcPeeringConnectionId=pcx_id)["Return"]
    (gone,) = alice.describe_vpc_peering_connections(VpcPeeringConnectionIds=[pcx_id])[
        "VpcPeeringConnections"
    ]
    assert gone["Status"]["Code"] == "deleted"
    (main,) = alice.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [mine]}])[
        "RouteTables"
    ]
    (route,) = [r for r in main["Routes"] if r["DestinationCidrBlock"] == "10.1.0.0/16"]
    assert (route["VpcPeeringConnectionId"], route["State"]) == (pcx_id, "blackhole")


def test_reject_and_overlap(api: Api) -> None:
    alice, bob = api.ec2("alice"), api.ec2("bob")
    mine = _vpc(alice, "10.0.0.0/16")
    theirs = _vpc(bob, "10.1.0.0/16")
    overlapping = _vpc(bob, "10.0.0.0/16")
    bob_account = api.service.tenant("bob").account
    pcx_id = alice.create_vpc_peering_connection(
        VpcId=mine, PeerVpcId=theirs, PeerOwnerId=bob_account
    )["VpcPeeringConnection"]["VpcPeeringConnectionId"]
    with pytest.raises(ClientError) as e:
        alice.reject_vpc_peering_connection(VpcPeeringConnectionId=pcx_id)
    assert code_of(e) == "OperationNotPermitted"
    assert bob.reject_vpc_peering_connection(VpcPeeringConnectionId=pcx_id)["Return"]
    rejected = alice.describe_vpc_peering_connections(
        Filters=[{"Name": "status-code", "Values": ["rejected"]}]
    )["VpcPeeringConnections"]
    assert [p["VpcPeeringConnectionId"] for p in rejected] == [pcx_id]
    failed = alice.create_vpc_peering_connection(
        VpcId=mine, PeerVpcId=overlapping, PeerOwnerId=bob_account
    )["VpcPeeringConnection"]
    assert failed["Status"]["Code"] == "failed"


def test_within_one_tenant_and_errors(api: Api) -> None:
    ec2 = api.ec2("alice")
    a, b = _vpc(ec2, "10.0.0.0/16"), _vpc(ec2, "10.1.0.0/16")
    pcx_id = ec2.create_vpc_peering_connection(VpcId=a, PeerVpcId=b)["VpcPeeringConnection"][
        "VpcPeeringConnectionId"
    ]
    with pytest.raises(ClientError) as e:
        ec2.create_vpc_peering_connection(VpcId=b, PeerVpcId=a)
    assert code_of(e) == "VpcPeeringConnectionAlreadyExists"
    ec2.accept_vpc_peering_connection(VpcPeeringConnectionId=pcx_id)
    with pytest.raises(ClientError) as e:
        ec2.create_vpc_peering_connection(VpcId=a, PeerVpcId="vpc-00000000000000000")
    assert code_of(e) == "InvalidVpcID.NotFound"
    with pytest.raises(ClientError) as e:
        ec2.describe_vpc_peering_connections(VpcPeeringConnectionIds=["pcx-00000000000000000"])
    assert code_of(e) == "InvalidVpcPeeringConnectionID.NotFound"
    with pytest.raises(ClientError) as e:
        ec2.delete_vpc_peering_connection(VpcPeeringConnectionId="pcx-00000000000000000")
    assert code_of(e) == "InvalidVpcPeeringConnectionID.NotFound"


def test_nobody_else_sees_a_connection(api: Api) -> None:
    alice, bob = api.ec2("alice"), api.ec2("bob")
    a, b = _vpc(alice, "10.0.0.0/16"), _vpc(alice, "10.1.0.0/16")
    pcx_id = alice.create_vpc_peering_connection(
        VpcId=a,
        PeerVpcId=b,
        TagSpecifications=[
            {"ResourceType": "vpc-peering-connection", "Tags": [{"Key": "k", "Value": "v"}]}
        ],
    )["VpcPeeringConnection"]["VpcPeeringConnectionId"]
    assert bob.describe_vpc_peering_connections()["VpcPeeringConnections"] == []
    assert (
        bob.describe_vpc_peering_connections(Filters=[{"Name": "tag:k", "Values": ["v"]}])[
            "VpcPeeringConnections"
        ]
        == []
    )
    calls: list[Callable[[], object]] = [
        lambda: bob.describe_vpc_peering_connections(VpcPeeringConnectionIds=[pcx_id]),
        lambda: bob.accept_vpc_peering_connection(VpcPeeringConnectionId=pcx_id),
        lambda: bob.reject_vpc_peering_connection(VpcPeeringConnectionId=pcx_id),
        lambda: bob.delete_vpc_peering_connection(VpcPeeringConnectionId=pcx_id),
    ]
    for call in calls:
        with pytest.raises(ClientError) as e:
            call()
        assert code_of(e) == "InvalidVpcPeeringConnectionID.NotFound"
    bob_vpc = _vpc(bob, "10.5.0.0/16")
    with pytest.raises(ClientError) as e:  # nor may bob ask from alice's VPC
        bob.create_vpc_peering_connection(VpcId=a, PeerVpcId=bob_vpc)
    assert code_of(e) == "InvalidVpcID.NotFound"


def test_pages(api: Api) -> None:
    ec2 = api.ec2("alice")
    hub = _vpc(ec2, "10.0.0.0/16")
    spokes = [_vpc(ec2, f"10.{n}.0.0/16") for n in range(1, 5)]
    made = [
        ec2.create_vpc_peering_connection(VpcId=hub, PeerVpcId=s)["VpcPeeringConnection"][
            "VpcPeeringConnectionId"
        ]
        for s in spokes
    ]
    bob_vpc = _vpc(api.ec2("bob"), "10.9.0.0/16")
    made.append(
        api.ec2("bob").create_vpc_peering_connection(
            VpcId=bob_vpc,
            PeerVpcId=hub,
            PeerOwnerId=api.service.tenant("alice").account,
        )["VpcPeeringConnection"]["VpcPeeringConnectionId"]
    )
    pages = list(
        ec2.get_paginator("describe_vpc_peering_connections").paginate(
            PaginationConfig={"PageSize": 5}
        )
    )
    seen = [p["VpcPeeringConnectionId"] for page in pages for p in page["VpcPeeringConnections"]]
    assert sorted(seen) == sorted(made)


def test_a_group_may_name_a_peer_vpcs_group_only_while_peered(api: Api) -> None:
    alice, bob = api.ec2("alice"), api.ec2("bob")
    mine, theirs = _vpc(alice, "10.0.0.0/16"), _vpc(bob, "10.1.0.0/16")

    bob_group, alice_group = default_group(bob, theirs), default_group(alice, mine)
    pair = {"GroupId": alice_group, "UserId": api.service.tenant("alice").account}

    def admit() -> None:
        bob.authorize_security_group_ingress(
            GroupId=bob_group, IpPermissions=[{"IpProtocol": "-1", "UserIdGroupPairs": [pair]}]
        )

    with pytest.raises(ClientError) as e:
        admit()  # not peered: alice's group does not exist for bob
    assert code_of(e) == "InvalidGroup.NotFound"
    pcx = alice.create_vpc_peering_connection(
        VpcId=mine, PeerVpcId=theirs, PeerOwnerId=api.service.tenant("bob").account
    )["VpcPeeringConnection"]["VpcPeeringConnectionId"]
    with pytest.raises(ClientError) as e:
        admit()  # requested, not accepted
    assert code_of(e) == "InvalidGroup.NotFound"
    bob.accept_vpc_peering_connection(VpcPeeringConnectionId=pcx)
    admit()
    (group,) = bob.describe_security_groups(GroupIds=[bob_group])["SecurityGroups"]
    named = [p["GroupId"] for r in group["IpPermissions"] for p in r["UserIdGroupPairs"]]
    assert alice_group in named
