"""Route tables, routes and associations through the real HTTP API with boto3."""

from collections.abc import Callable
from typing import Any

import botocore.exceptions
import pytest
from apikit import Api

ClientError = botocore.exceptions.ClientError


def code_of(e: pytest.ExceptionInfo[ClientError]) -> str:
    return str(e.value.response["Error"]["Code"])


def _vpc(ec2: Any, cidr: str = "10.0.0.0/16") -> tuple[str, str]:
    """A VPC with one subnet: (vpc id, subnet id)."""
    vpc = ec2.create_vpc(CidrBlock=cidr)["Vpc"]["VpcId"]
    first = cidr.split("/")[0].rsplit(".", 2)[0]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock=f"{first}.1.0/24")["Subnet"]["SubnetId"]
    return vpc, subnet


def _main(ec2: Any, vpc: str) -> dict[str, Any]:
    (table,) = ec2.describe_route_tables(
        Filters=[
            {"Name": "vpc-id", "Values": [vpc]},
            {"Name": "association.main", "Values": ["true"]},
        ]
    )["RouteTables"]
    return dict(table)


def test_a_vpc_has_a_main_table_with_the_local_route(api: Api) -> None:
    ec2 = api.ec2("alice")
    vpc, _ = _vpc(ec2)
    main = _main(ec2, vpc)
    assert main["Routes"] == [
        {
            "DestinationCidrBlock": "10.0.0.0/16",
            "GatewayId": "local",
            "Origin": "CreateRouteTable",
            "State": "active",
        }
    ]
    (association,) = main["Associations"]
    assert association["Main"] is True
    assert association["RouteTableAssociationId"].startswith("rtbassoc-")
    assert "SubnetId" not in association
    assert main["OwnerId"] == api.service.tenant("alice").account
    with pytest.raises(ClientError) as e:
        ec2.delete_route_table(RouteTableId=main["RouteTableId"])
    assert code_of(e) == "DependencyViolation"
    with pytest.raises(ClientError) as e:
        ec2.disassociate_route_table(AssociationId=association["RouteTableAssociationId"])
    assert code_of(e) == "InvalidParameterValue"


def test_create_associate_replace_disassociate_delete(api: Api) -> None:
    ec2 = api.ec2("alice")
    vpc, subnet = _vpc(ec2)
    table = ec2.create_route_table(
        VpcId=vpc,
        TagSpecifications=[
            {"ResourceType": "route-table", "Tags": [{"Key": "Name", "Value": "private"}]}
        ],
    )["RouteTable"]
    assert table["Tags"] == [{"Key": "Name", "Value": "private"}]
    assert table["Associations"] == []
    rtb = table["RouteTableId"]
    assoc = ec2.associate_route_table(RouteTableId=rtb, SubnetId=subnet)
    assert assoc["AssociationState"] == {"State": "associated"}
    with pytest.raises(ClientError) as e:
        ec2.associate_route_table(RouteTableId=rtb, SubnetId=subnet)
    assert code_of(e) == "Resource.AlreadyAssociated"
    by_subnet = ec2.describe_route_tables(
        Filters=[{"Name": "association.subnet-id", "Values": [subnet]}]
    )["RouteTables"]
    assert [t["RouteTableId"] for t in by_subnet] == [rtb]
    by_assoc = ec2.describe_route_tables(
        Filters=[
            {"Name": "association.route-table-association-id", "Values": [assoc["AssociationId"]]}
        ]
    )["RouteTables"]
    assert [t["RouteTableId"] for t in by_assoc] == [rtb]
    with pytest.raises(ClientError) as e:
        ec2.delete_route_table(RouteTableId=rtb)
    assert code_of(e) == "DependencyViolation"
    main = _main(ec2, vpc)["RouteTableId"]
    replaced = ec2.replace_route_table_association(
        AssociationId=assoc["AssociationId"], RouteTableId=main
    )["NewAssociationId"]
    assert replaced != assoc["AssociationId"]
    with pytest.raises(ClientError) as e:
        ec2.disassociate_route_table(AssociationId=assoc["AssociationId"])
    assert code_of(e) == "InvalidAssociationID.NotFound"
    ec2.disassociate_route_table(AssociationId=replaced)
    ec2.delete_route_table(RouteTableId=rtb)
    with pytest.raises(ClientError) as e:
        ec2.describe_route_tables(RouteTableIds=[rtb])
    assert code_of(e) == "InvalidRouteTableID.NotFound"


def test_replacing_the_main_association(api: Api) -> None:
    ec2 = api.ec2("alice")
    vpc, _ = _vpc(ec2)
    old_main = _main(ec2, vpc)
    new = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
    new_id = ec2.replace_route_table_association(
        AssociationId=old_main["Associations"][0]["RouteTableAssociationId"], RouteTableId=new
    )["NewAssociationId"]
    main = _main(ec2, vpc)
    assert main["RouteTableId"] == new
    assert main["Associations"][0]["RouteTableAssociationId"] == new_id
    ec2.delete_route_table(RouteTableId=old_main["RouteTableId"])


def test_routes_to_an_internet_gateway(api: Api) -> None:
    ec2 = api.ec2("alice")
    vpc, _ = _vpc(ec2)
    main = _main(ec2, vpc)["RouteTableId"]
    igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    with pytest.raises(ClientError) as e:
        ec2.create_route(RouteTableId=main, DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)
    assert code_of(e) == "InvalidParameterValue"
    assert "belong to different networks" in e.value.response["Error"]["Message"]
    ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc)
    assert ec2.create_route(RouteTableId=main, DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)[
        "Return"
    ]
    with pytest.raises(ClientError) as e:
        ec2.create_route(RouteTableId=main, DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)
    assert code_of(e) == "RouteAlreadyExists"
    by_gateway = ec2.describe_route_tables(Filters=[{"Name": "route.gateway-id", "Values": [igw]}])[
        "RouteTables"
    ]
    assert [t["RouteTableId"] for t in by_gateway] == [main]
    ec2.detach_internet_gateway(InternetGatewayId=igw, VpcId=vpc)
    (route,) = [r for r in _main(ec2, vpc)["Routes"] if r["DestinationCidrBlock"] == "0.0.0.0/0"]
    assert (route["GatewayId"], route["State"]) == (igw, "blackhole")
    ec2.delete_route(RouteTableId=main, DestinationCidrBlock="0.0.0.0/0")
    with pytest.raises(ClientError) as e:
        ec2.delete_route(RouteTableId=main, DestinationCidrBlock="0.0.0.0/0")
    assert code_of(e) == "InvalidRoute.NotFound"


def test_route_target_rules(api: Api) -> None:
    ec2 = api.ec2("alice")
    vpc, _ = _vpc(ec2)
    main = _main(ec2, vpc)["RouteTableId"]
    with pytest.raises(ClientError) as e:
        ec2.create_route(RouteTableId=main, DestinationCidrBlock="0.0.0.0/0")
    assert code_of(e) == "MissingParameter"
    with pytest.raises(ClientError) as e:
        ec2.create_route(
            RouteTableId=main,
            DestinationCidrBlock="0.0.0.0/0",
            GatewayId="igw-00000000000000000",
            NatGatewayId="nat-00000000000000000",
        )
    assert code_of(e) == "InvalidParameterCombination"
    for kwargs, code in (
        ({"GatewayId": "igw-00000000000000000"}, "InvalidGatewayID.NotFound"),
        ({"NatGatewayId": "nat-00000000000000000"}, "NatGatewayNotFound"),
        ({"InstanceId": "i-00000000000000000"}, "InvalidInstanceID.NotFound"),
        ({"NetworkInterfaceId": "eni-00000000000000000"}, "InvalidNetworkInterfaceID.NotFound"),
        (
            {"VpcPeeringConnectionId": "pcx-00000000000000000"},
            "InvalidVpcPeeringConnectionID.NotFound",
        ),
    ):
        with pytest.raises(ClientError) as e:
            ec2.create_route(RouteTableId=main, DestinationCidrBlock="0.0.0.0/0", **kwargs)
        assert code_of(e) == code, kwargs
    with pytest.raises(ClientError) as e:
        ec2.delete_route(RouteTableId=main, DestinationCidrBlock="10.0.0.0/16")
    assert code_of(e) == "InvalidParameterValue"
    assert e.value.response["Error"]["Message"] == (
        f"cannot remove local route 10.0.0.0/16 in route table {main}"
    )


def test_replace_route(api: Api) -> None:
    ec2 = api.ec2("alice")
    vpc, _ = _vpc(ec2)
    main = _main(ec2, vpc)["RouteTableId"]
    igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc)
    eip = ec2.allocate_address(Domain="vpc")["AllocationId"]
    subnet = ec2.describe_subnets()["Subnets"][0]["SubnetId"]
    nat = ec2.create_nat_gateway(SubnetId=subnet, AllocationId=eip)["NatGateway"]["NatGatewayId"]
    ec2.create_route(RouteTableId=main, DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)
    ec2.replace_route(RouteTableId=main, DestinationCidrBlock="0.0.0.0/0", NatGatewayId=nat)
    (route,) = [r for r in _main(ec2, vpc)["Routes"] if r["DestinationCidrBlock"] == "0.0.0.0/0"]
    assert (route.get("NatGatewayId"), route.get("GatewayId"), route["State"]) == (
        nat,
        None,
        "active",
    )
    by_nat = ec2.describe_route_tables(Filters=[{"Name": "route.nat-gateway-id", "Values": [nat]}])[
        "RouteTables"
    ]
    assert [t["RouteTableId"] for t in by_nat] == [main]
    with pytest.raises(ClientError) as e:
        ec2.replace_route(RouteTableId=main, DestinationCidrBlock="10.9.0.0/16", GatewayId=igw)
    assert code_of(e) == "InvalidRoute.NotFound"
    ec2.replace_route(RouteTableId=main, DestinationCidrBlock="10.0.0.0/16", LocalTarget=True)
    with pytest.raises(ClientError) as e:
        ec2.replace_route(RouteTableId=main, DestinationCidrBlock="10.0.0.0/16", GatewayId=igw)
    assert code_of(e) == "InvalidParameterValue"


def test_a_route_to_an_instance_names_it_and_its_interface(api: Api) -> None:
    ec2 = api.ec2("alice")
    vpc, subnet = _vpc(ec2)
    main = _main(ec2, vpc)["RouteTableId"]
    instance, eni = api.service.run_instance("alice", subnet, "nat", "node1", "ns-nat")
    ec2.create_route(RouteTableId=main, DestinationCidrBlock="0.0.0.0/0", InstanceId=instance.id)
    (route,) = [r for r in _main(ec2, vpc)["Routes"] if r["DestinationCidrBlock"] == "0.0.0.0/0"]
    assert route == {
        "DestinationCidrBlock": "0.0.0.0/0",
        "InstanceId": instance.id,
        "InstanceOwnerId": api.service.tenant("alice").account,
        "NetworkInterfaceId": eni.id,
        "Origin": "CreateRoute",
        "State": "active",
    }
    found = ec2.describe_route_tables(
        Filters=[{"Name": "route.instance-id", "Values": [instance.id]}]
    )["RouteTables"]
    assert [t["RouteTableId"] for t in found] == [main]


def test_a_blackhole_route_is_an_openvpc_extension(api: Api) -> None:
    ec2 = api.ec2("alice")
    vpc, _ = _vpc(ec2)
    main = _main(ec2, vpc)["RouteTableId"]
    ec2.create_route(RouteTableId=main, DestinationCidrBlock="10.9.0.0/16", GatewayId="blackhole")
    (route,) = [r for r in _main(ec2, vpc)["Routes"] if r["DestinationCidrBlock"] == "10.9.0.0/16"]
    assert route == {
        "DestinationCidrBlock": "10.9.0.0/16",
        "Origin": "CreateRoute",
        "State": "blackhole",
    }
    blackholes = ec2.describe_route_tables(
        Filters=[{"Name": "route.state", "Values": ["blackhole"]}]
    )
    assert [t["RouteTableId"] for t in blackholes["RouteTables"]] == [main]


def test_describe_filters_and_pages(api: Api) -> None:
    ec2 = api.ec2("alice")
    vpc, _ = _vpc(ec2)
    made = [ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"] for _ in range(6)]
    main = _main(ec2, vpc)["RouteTableId"]
    pages = list(
        ec2.get_paginator("describe_route_tables").paginate(PaginationConfig={"PageSize": 5})
    )
    assert [len(p["RouteTables"]) for p in pages] == [5, 2]
    seen = [t["RouteTableId"] for p in pages for t in p["RouteTables"]]
    assert sorted(seen) == sorted([*made, main])
    not_main = ec2.describe_route_tables(
        Filters=[{"Name": "association.main", "Values": ["false"]}]
    )["RouteTables"]
    assert sorted(t["RouteTableId"] for t in not_main) == sorted(made)
    by_dest = ec2.describe_route_tables(
        Filters=[{"Name": "route.destination-cidr-block", "Values": ["10.0.0.0/16"]}]
    )["RouteTables"]
    assert len(by_dest) == 7
    with pytest.raises(ClientError) as e:
        ec2.describe_route_tables(Filters=[{"Name": "route.bogus", "Values": ["x"]}])
    assert code_of(e) == "InvalidParameterValue"
    with pytest.raises(ClientError) as e:  # 5-100, the server checks too
        api.ec2("alice", parameter_validation=False).describe_route_tables(MaxResults=101)
    assert code_of(e) == "InvalidParameterValue"


def test_tenants_never_see_each_others_tables(api: Api) -> None:
    alice, bob = api.ec2("alice"), api.ec2("bob")
    vpc, subnet = _vpc(alice)
    table = alice.create_route_table(
        VpcId=vpc,
        TagSpecifications=[{"ResourceType": "route-table", "Tags": [{"Key": "k", "Value": "v"}]}],
    )["RouteTable"]["RouteTableId"]
    assoc = alice.associate_route_table(RouteTableId=table, SubnetId=subnet)["AssociationId"]
    main_assoc = _main(alice, vpc)["Associations"][0]["RouteTableAssociationId"]
    bob_vpc, _ = _vpc(bob)  # the same addresses
    bob_table = bob.create_route_table(VpcId=bob_vpc)["RouteTable"]["RouteTableId"]
    assert all(t["VpcId"] == bob_vpc for t in bob.describe_route_tables()["RouteTables"])
    assert (
        bob.describe_route_tables(Filters=[{"Name": "tag:k", "Values": ["v"]}])["RouteTables"] == []
    )
    assert (
        bob.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["RouteTables"]
        == []
    )
    calls: list[tuple[Callable[[], object], str]] = [
        (lambda: bob.describe_route_tables(RouteTableIds=[table]), "InvalidRouteTableID.NotFound"),
        (lambda: bob.delete_route_table(RouteTableId=table), "InvalidRouteTableID.NotFound"),
        (
            lambda: bob.create_route(
                RouteTableId=table, DestinationCidrBlock="0.0.0.0/0", GatewayId="local"
            ),
            "InvalidRouteTableID.NotFound",
        ),
        (
            lambda: bob.associate_route_table(RouteTableId=bob_table, SubnetId=subnet),
            "InvalidSubnetID.NotFound",
        ),
        (
            lambda: bob.disassociate_route_table(AssociationId=assoc),
            "InvalidAssociationID.NotFound",
        ),
        (
            lambda: bob.replace_route_table_association(
                AssociationId=main_assoc, RouteTableId=bob_table
            ),
            "InvalidAssociationID.NotFound",
        ),
    ]
    for call, code in calls:
        with pytest.raises(ClientError) as e:
            call()
        assert code_of(e) == code
