"""VPCs, subnets, tags, regions and zones through the real HTTP API with boto3."""

from collections.abc import Callable

import boto3
import botocore.exceptions
import pytest
from apikit import Api

from openvpc.service.network import VPCS_PER_TENANT

ClientError = botocore.exceptions.ClientError


def code_of(e: pytest.ExceptionInfo[ClientError]) -> str:
    return str(e.value.response["Error"]["Code"])


def test_create_describe_delete_vpc(api: Api) -> None:
    ec2 = api.ec2("alice")
    vpc = ec2.create_vpc(
        CidrBlock="10.1.2.3/16",
        TagSpecifications=[{"ResourceType": "vpc", "Tags": [{"Key": "Name", "Value": "prod"}]}],
    )["Vpc"]
    assert vpc["CidrBlock"] == "10.1.0.0/16"  # canonical form
    assert vpc["State"] == "available"
    assert vpc["Tags"] == [{"Key": "Name", "Value": "prod"}]
    assert vpc["OwnerId"] == api.service.tenant("alice").account
    seen = ec2.describe_vpcs(VpcIds=[vpc["VpcId"]])["Vpcs"]
    assert [v["VpcId"] for v in seen] == [vpc["VpcId"]]
    by_tag = ec2.describe_vpcs(Filters=[{"Name": "tag:Name", "Values": ["pr*"]}])["Vpcs"]
    assert [v["VpcId"] for v in by_tag] == [vpc["VpcId"]]
    ec2.delete_vpc(VpcId=vpc["VpcId"])
    with pytest.raises(ClientError) as e:
        ec2.describe_vpcs(VpcIds=[vpc["VpcId"]])
    assert code_of(e) == "InvalidVpcID.NotFound"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


@pytest.mark.parametrize("cidr", ["10.0.0.0/15", "10.0.0.0/29", "127.0.0.0/16", "nonsense"])
def test_vpc_cidr_rules(api: Api, cidr: str) -> None:
    with pytest.raises(ClientError) as e:
        api.ec2("alice").create_vpc(CidrBlock=cidr)
    assert code_of(e) in ("InvalidVpc.Range", "InvalidParameterValue")


def test_vpc_quota(api: Api) -> None:
    ec2 = api.ec2("alice")
    for n in range(VPCS_PER_TENANT):
        ec2.create_vpc(CidrBlock=f"10.{n}.0.0/16")
    with pytest.raises(ClientError) as e:
        ec2.create_vpc(CidrBlock="10.99.0.0/16")
    assert code_of(e) == "VpcLimitExceeded"


def test_tenants_never_see_each_other(api: Api) -> None:
    alice, bob = api.ec2("alice"), api.ec2("bob")
    a = alice.create_vpc(
        CidrBlock="10.0.0.0/16",
        TagSpecifications=[{"ResourceType": "vpc", "Tags": [{"Key": "team", "Value": "x"}]}],
    )["Vpc"]
    b = bob.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]  # the same addresses
    assert [v["VpcId"] for v in bob.describe_vpcs()["Vpcs"]] == [b["VpcId"]]
    assert bob.describe_vpcs(Filters=[{"Name": "tag:team", "Values": ["x"]}])["Vpcs"] == []
    assert bob.describe_tags()["Tags"] == []
    calls: list[Callable[[], object]] = [
        lambda: bob.describe_vpcs(VpcIds=[a["VpcId"]]),
        lambda: bob.delete_vpc(VpcId=a["VpcId"]),
        lambda: bob.create_subnet(VpcId=a["VpcId"], CidrBlock="10.0.1.0/24"),
        lambda: bob.modify_vpc_attribute(VpcId=a["VpcId"], EnableDnsHostnames={"Value": True}),
        lambda: bob.create_tags(Resources=[a["VpcId"]], Tags=[{"Key": "k", "Value": "v"}]),
    ]
    for call in calls:
        with pytest.raises(ClientError) as e:
            call()
        assert code_of(e) == "InvalidVpcID.NotFound"
    assert alice.describe_vpcs(VpcIds=[a["VpcId"]])["Vpcs"][0]["Tags"] == [
        {"Key": "team", "Value": "x"}
    ]


def test_vpc_attributes(api: Api) -> None:
    ec2 = api.ec2("alice")
    vpc_id = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]

    def attribute(name: str, member: str) -> bool:
        return bool(ec2.describe_vpc_attribute(VpcId=vpc_id, Attribute=name)[member]["Value"])

    assert attribute("enableDnsSupport", "EnableDnsSupport") is True
    assert attribute("enableDnsHostnames", "EnableDnsHostnames") is False
    assert (
        attribute("enableNetworkAddressUsageMetrics", "EnableNetworkAddressUsageMetrics") is False
    )
    ec2.modify_vpc_attribute(VpcId=vpc_id, EnableDnsHostnames={"Value": True})
    assert attribute("enableDnsHostnames", "EnableDnsHostnames") is True
    with pytest.raises(ClientError) as e:
        ec2.describe_vpc_attribute(VpcId=vpc_id, Attribute="bogus")
    assert code_of(e) == "InvalidParameterValue"


def test_secondary_cidr_blocks(api: Api) -> None:
    ec2 = api.ec2("alice")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]
    added = ec2.associate_vpc_cidr_block(VpcId=vpc["VpcId"], CidrBlock="10.1.0.0/16")
    association = added["CidrBlockAssociation"]["AssociationId"]
    subnet = ec2.create_subnet(VpcId=vpc["VpcId"], CidrBlock="10.1.5.0/24")["Subnet"]
    for bad in ("10.0.128.0/17", "192.168.0.0/16"):  # overlapping; another private range
        with pytest.raises(ClientError) as e:
            ec2.associate_vpc_cidr_block(VpcId=vpc["VpcId"], CidrBlock=bad)
        assert code_of(e) == "InvalidVpc.Range"
    with pytest.raises(ClientError) as e:
        ec2.disassociate_vpc_cidr_block(AssociationId=association)
    assert code_of(e) == "DependencyViolation"
    primary = vpc["CidrBlockAssociationSet"][0]["AssociationId"]
    with pytest.raises(ClientError) as e:
        ec2.disassociate_vpc_cidr_block(AssociationId=primary)
    assert code_of(e) == "OperationNotPermitted"
    ec2.delete_subnet(SubnetId=subnet["SubnetId"])
    ec2.disassociate_vpc_cidr_block(AssociationId=association)
    blocks = ec2.describe_vpcs(VpcIds=[vpc["VpcId"]])["Vpcs"][0]["CidrBlockAssociationSet"]
    assert [b["CidrBlock"] for b in blocks] == ["10.0.0.0/16"]


def test_subnets(api: Api) -> None:
    ec2 = api.ec2("alice")
    vpc_id = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc_id, CidrBlock="10.0.1.0/24")["Subnet"]
    assert subnet["AvailableIpAddressCount"] == 251  # five reserved
    assert subnet["AvailabilityZone"] == "us-east-1a"
    other = ec2.create_subnet(VpcId=vpc_id, CidrBlock="10.0.2.0/28", AvailabilityZone="us-east-1b")
    assert other["Subnet"]["AvailabilityZone"] == "us-east-1b"
    for cidr, code in (
        ("10.0.1.128/25", "InvalidSubnet.Conflict"),
        ("10.1.0.0/24", "InvalidSubnet.Range"),
        ("10.0.3.0/29", "InvalidSubnet.Range"),
    ):
        with pytest.raises(ClientError) as e:
            ec2.create_subnet(VpcId=vpc_id, CidrBlock=cidr)
        assert code_of(e) == code, cidr
    with pytest.raises(ClientError) as e:
        ec2.create_subnet(VpcId=vpc_id, CidrBlock="10.0.9.0/24", AvailabilityZone="us-east-1z")
    assert code_of(e) == "InvalidParameterValue"
    found = ec2.describe_subnets(Filters=[{"Name": "availability-zone", "Values": ["us-east-1b"]}])
    assert [s["SubnetId"] for s in found["Subnets"]] == [other["Subnet"]["SubnetId"]]
    ec2.modify_subnet_attribute(SubnetId=subnet["SubnetId"], MapPublicIpOnLaunch={"Value": True})
    again = ec2.describe_subnets(SubnetIds=[subnet["SubnetId"]])["Subnets"][0]
    assert again["MapPublicIpOnLaunch"] is True
    with pytest.raises(ClientError) as e:
        ec2.delete_vpc(VpcId=vpc_id)
    assert code_of(e) == "DependencyViolation"
    with pytest.raises(ClientError) as e:
        ec2.describe_subnets(Filters=[{"Name": "no-such-filter", "Values": ["x"]}])
    assert code_of(e) == "InvalidParameterValue"


def test_paginator_walks_every_subnet(api: Api) -> None:
    ec2 = api.ec2("alice")
    vpc_id = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    made = {
        ec2.create_subnet(VpcId=vpc_id, CidrBlock=f"10.0.{n}.0/24")["Subnet"]["SubnetId"]
        for n in range(12)
    }
    pages = list(ec2.get_paginator("describe_subnets").paginate(PaginationConfig={"PageSize": 5}))
    assert [len(p["Subnets"]) for p in pages] == [5, 5, 2]
    assert {s["SubnetId"] for p in pages for s in p["Subnets"]} == made
    token = pages[0]["NextToken"]
    with pytest.raises(ClientError) as e:  # a token is bound to the tenant that got it
        api.ec2("bob").describe_subnets(MaxResults=5, NextToken=token)
    assert code_of(e) == "InvalidNextToken"


def test_tags_create_describe_delete(api: Api) -> None:
    ec2 = api.ec2("alice")
    vpc_id = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    ec2.create_tags(
        Resources=[vpc_id], Tags=[{"Key": "a", "Value": "1"}, {"Key": "b", "Value": "2"}]
    )
    tags = ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [vpc_id]}])["Tags"]
    assert {(t["Key"], t["Value"], t["ResourceType"]) for t in tags} == {
        ("a", "1", "vpc"),
        ("b", "2", "vpc"),
    }
    ec2.delete_tags(Resources=[vpc_id], Tags=[{"Key": "a"}])
    assert [t["Key"] for t in ec2.describe_tags()["Tags"]] == ["b"]
    with pytest.raises(ClientError) as e:
        ec2.create_tags(Resources=[vpc_id], Tags=[{"Key": "aws:x", "Value": "1"}])
    assert code_of(e) == "InvalidParameterValue"
    with pytest.raises(ClientError) as e:
        ec2.create_tags(Resources=[vpc_id], Tags=[{"Key": f"k{n}", "Value": ""} for n in range(50)])
    assert code_of(e) == "TagLimitExceeded"
    ec2.delete_vpc(VpcId=vpc_id)
    assert ec2.describe_tags()["Tags"] == []  # tags go with their resource


def test_dry_run_and_unsupported(api: Api) -> None:
    ec2 = api.ec2("alice")
    with pytest.raises(ClientError) as e:
        ec2.create_vpc(CidrBlock="10.0.0.0/16", DryRun=True)
    assert code_of(e) == "DryRunOperation"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    assert ec2.describe_vpcs()["Vpcs"] == []
    with pytest.raises(ClientError) as e:
        ec2.describe_vpn_gateways()
    assert code_of(e) == "UnsupportedOperation"


def test_regions_zones_and_caller_identity(api: Api) -> None:
    ec2 = api.ec2("alice")
    assert [r["RegionName"] for r in ec2.describe_regions()["Regions"]] == ["us-east-1"]
    zones = ec2.describe_availability_zones()["AvailabilityZones"]
    assert [z["ZoneName"] for z in zones] == ["us-east-1a", "us-east-1b"]
    identity = api.client("alice", "sts").get_caller_identity()
    assert identity["Account"] == api.service.tenant("alice").account
    assert identity["Account"] != api.service.tenant("bob").account
    assert identity["Arn"].endswith(":user/alice")


def test_wrong_secret_and_unknown_key_fail_alike(api: Api) -> None:
    key, _ = api.keys["alice"]
    for key_id, secret in ((key, "x" * 40), ("AKIAAAAAAAAAAAAAAAAA", "y" * 40)):
        ec2 = boto3.client(
            "ec2",
            endpoint_url=api.endpoint,
            region_name="us-east-1",
            aws_access_key_id=key_id,
            aws_secret_access_key=secret,
        )
        with pytest.raises(ClientError) as e:
            ec2.describe_vpcs()
        assert code_of(e) == "AuthFailure"
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 401


def test_forwarding_mode_and_encapsulation_are_chosen_by_tags(api: Api) -> None:
    ec2 = api.ec2("alice")
    tags = [
        {"Key": "openvpc:forwarding-mode", "Value": "l2_l3"},
        {"Key": "openvpc:encapsulation", "Value": "mplsogre"},
    ]
    made = ec2.create_vpc(
        CidrBlock="10.0.0.0/16", TagSpecifications=[{"ResourceType": "vpc", "Tags": tags}]
    )["Vpc"]
    plain = ec2.create_vpc(CidrBlock="10.1.0.0/16")["Vpc"]
    stored = {v.id: (v.mode, v.encap) for v in api.service.describe_vpcs("alice")}
    assert stored[made["VpcId"]] == ("l2_l3", "mplsogre")
    assert stored[plain["VpcId"]] == ("l3", "vxlan")  # Amazon's model by default
    for key, value in (("openvpc:forwarding-mode", "l4"), ("openvpc:encapsulation", "ipip")):
        with pytest.raises(ClientError) as e:
            ec2.create_vpc(
                CidrBlock="10.2.0.0/16",
                TagSpecifications=[{"ResourceType": "vpc", "Tags": [{"Key": key, "Value": value}]}],
            )
        assert code_of(e) == "InvalidParameterValue"
