"""Internet gateways, NAT gateways and Elastic IPs through the real HTTP API with boto3."""

from collections.abc import Callable
from typing import Any

import botocore.exceptions
import pytest
from apikit import Api

ClientError = botocore.exceptions.ClientError


def code_of(e: pytest.ExceptionInfo[ClientError]) -> str:
    return str(e.value.response["Error"]["Code"])


def _vpc(ec2: Any) -> tuple[str, str]:
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    return vpc, subnet


def _public(ec2: Any, vpc: str) -> str:
    igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc)
    return str(igw)


def _instance(api: Api, tenant: str, subnet: str) -> tuple[str, str]:
    """(instance id, interface id) of a VM made through the service (RunInstances is another
    area's action)."""
    vpc_subnet = api.service.describe_subnets(tenant)
    assert any(s.id == subnet for s in vpc_subnet)
    n = len(api.service.describe_instances(tenant))
    instance, iface = api.service.run_instance(tenant, subnet, f"vm{n}", "node1", f"ns-{tenant}{n}")
    return instance.id, iface.id


# -- internet gateways --------------------------------------------------------------------
def test_internet_gateway_lifecycle(api: Api) -> None:
    ec2 = api.ec2("alice")
    vpc, _ = _vpc(ec2)
    igw = ec2.create_internet_gateway(
        TagSpecifications=[
            {"ResourceType": "internet-gateway", "Tags": [{"Key": "Name", "Value": "gw"}]}
        ]
    )["InternetGateway"]
    igw_id = igw["InternetGatewayId"]
    assert igw_id.startswith("igw-")
    assert (igw["Attachments"], igw["Tags"]) == ([], [{"Key": "Name", "Value": "gw"}])
    assert igw["OwnerId"] == api.service.tenant("alice").account
    ec2.attach_internet_gateway(InternetGatewayId=igw_id, VpcId=vpc)
    (seen,) = ec2.describe_internet_gateways(
        Filters=[{"Name": "attachment.vpc-id", "Values": [vpc]}]
    )["InternetGateways"]
    assert seen["Attachments"] == [{"State": "available", "VpcId": vpc}]
    with pytest.raises(ClientError) as e:
        ec2.delete_internet_gateway(InternetGatewayId=igw_id)
    assert code_of(e) == "DependencyViolation"
    with pytest.raises(ClientError) as e:
        ec2.delete_vpc(VpcId=vpc)
    assert code_of(e) == "DependencyViolation"
    second = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    with pytest.raises(ClientError) as e:
        ec2.attach_internet_gateway(InternetGatewayId=second, VpcId=vpc)
    assert code_of(e) == "Resource.AlreadyAssociated"
    with pytest.raises(ClientError) as e:
        ec2.detach_internet_gateway(InternetGatewayId=second, VpcId=vpc)
    assert code_of(e) == "Gateway.NotAttached"
    ec2.detach_internet_gateway(InternetGatewayId=igw_id, VpcId=vpc)
    ec2.delete_internet_gateway(InternetGatewayId=igw_id)
    with pytest.raises(ClientError) as e:
        ec2.describe_internet_gateways(InternetGatewayIds=[igw_id])
    assert code_of(e) == "InvalidInternetGatewayID.NotFound"
    assert e.value.response["Error"]["Message"] == (
        f"The internetGateway ID '{igw_id}' does not exist"
    )


def test_internet_gateway_quota_and_page(api: Api) -> None:
    ec2 = api.ec2("alice")
    made = [ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"] for _ in range(5)]
    with pytest.raises(ClientError) as e:
        ec2.create_internet_gateway()
    assert code_of(e) == "InternetGatewayLimitExceeded"
    page = ec2.describe_internet_gateways(MaxResults=5)
    assert [g["InternetGatewayId"] for g in page["InternetGateways"]] == sorted(made)
    assert "NextToken" not in page


# -- Elastic IPs --------------------------------------------------------------------------
def test_addresses(api: Api) -> None:
    ec2 = api.ec2("alice")
    vpc, subnet = _vpc(ec2)
    instance, eni = _instance(api, "alice", subnet)
    eip = ec2.allocate_address(
        Domain="vpc",
        TagSpecifications=[{"ResourceType": "elastic-ip", "Tags": [{"Key": "k", "Value": "v"}]}],
    )
    assert eip["PublicIp"] == "198.51.100.1"
    alloc = eip["AllocationId"]
    with pytest.raises(ClientError) as e:
        ec2.associate_address(AllocationId=alloc, InstanceId=instance)
    assert code_of(e) == "Gateway.NotAttached"
    _public(ec2, vpc)
    assoc = ec2.associate_address(AllocationId=alloc, InstanceId=instance)["AssociationId"]
    (seen,) = ec2.describe_addresses(AllocationIds=[alloc])["Addresses"]
    assert (seen["AssociationId"], seen["InstanceId"], seen["NetworkInterfaceId"]) == (
        assoc,
        instance,
        eni,
    )
    assert seen["PrivateIpAddress"] == "10.0.1.4"
    assert seen["Tags"] == [{"Key": "k", "Value": "v"}]
    by_filter = ec2.describe_addresses(Filters=[{"Name": "instance-id", "Values": [instance]}])
    assert [a["AllocationId"] for a in by_filter["Addresses"]] == [alloc]
    by_ip = ec2.describe_addresses(PublicIps=["198.51.100.1"])["Addresses"]
    assert [a["AllocationId"] for a in by_ip] == [alloc]
    with pytest.raises(ClientError) as e:
        ec2.release_address(AllocationId=alloc)
    assert code_of(e) == "InvalidIPAddress.InUse"
    ec2.disassociate_address(AssociationId=assoc)
    with pytest.raises(ClientError) as e:
        ec2.disassociate_address(AssociationId=assoc)
    assert code_of(e) == "InvalidAssociationID.NotFound"
    ec2.release_address(AllocationId=alloc)
    with pytest.raises(ClientError) as e:
        ec2.release_address(AllocationId=alloc)
    assert code_of(e) == "InvalidAllocationID.NotFound"


def test_address_quota(api: Api) -> None:
    ec2 = api.ec2("alice")
    for _ in range(5):
        ec2.allocate_address(Domain="vpc")
    with pytest.raises(ClientError) as e:
        ec2.allocate_address(Domain="vpc")
    assert code_of(e) == "AddressLimitExceeded"


def test_an_address_moves_unless_told_not_to(api: Api) -> None:
    ec2 = api.ec2("alice")
    vpc, subnet = _vpc(ec2)
    _public(ec2, vpc)
    first, _ = _instance(api, "alice", subnet)
    second, eni2 = _instance(api, "alice", subnet)
    alloc = ec2.allocate_address(Domain="vpc")["AllocationId"]
    ec2.associate_address(AllocationId=alloc, InstanceId=first)
    with pytest.raises(ClientError) as e:
        ec2.associate_address(AllocationId=alloc, NetworkInterfaceId=eni2, AllowReassociation=False)
    assert code_of(e) == "Resource.AlreadyAssociated"
    ec2.associate_address(AllocationId=alloc, NetworkInterfaceId=eni2)
    (seen,) = ec2.describe_addresses()["Addresses"]
    assert seen["InstanceId"] == second


# -- NAT gateways -------------------------------------------------------------------------
def test_nat_gateway_lifecycle_and_waiter(api: Api) -> None:
    ec2 = api.ec2("alice")
    vpc, subnet = _vpc(ec2)
    _public(ec2, vpc)
    alloc = ec2.allocate_address(Domain="vpc")["AllocationId"]
    nat = ec2.create_nat_gateway(
        SubnetId=subnet,
        AllocationId=alloc,
        TagSpecifications=[{"ResourceType": "natgateway", "Tags": [{"Key": "Name", "Value": "n"}]}],
    )["NatGateway"]
    nat_id = nat["NatGatewayId"]
    assert (nat["VpcId"], nat["SubnetId"], nat["ConnectivityType"]) == (vpc, subnet, "public")
    (address,) = nat["NatGatewayAddresses"]
    assert (address["AllocationId"], address["PrivateIp"], address["PublicIp"]) == (
        alloc,
        "10.0.1.4",
        "198.51.100.1",
    )
    ec2.get_waiter("nat_gateway_available").wait(
        NatGatewayIds=[nat_id], WaiterConfig={"Delay": 1, "MaxAttempts": 5}
    )
    (held,) = ec2.describe_addresses()["Addresses"]
    assert held["NetworkInterfaceId"] == address["NetworkInterfaceId"]
    with pytest.raises(ClientError) as e:
        ec2.create_nat_gateway(SubnetId=subnet, AllocationId=alloc)
    assert code_of(e) == "Resource.AlreadyAssociated"
    with pytest.raises(ClientError) as e:
        ec2.delete_subnet(SubnetId=subnet)
    assert code_of(e) == "DependencyViolation"
    found = ec2.describe_nat_gateways(Filter=[{"Name": "vpc-id", "Values": [vpc]}])["NatGateways"]
    assert [n["NatGatewayId"] for n in found] == [nat_id]
    assert found[0]["Tags"] == [{"Key": "Name", "Value": "n"}]
    assert ec2.delete_nat_gateway(NatGatewayId=nat_id)["NatGatewayId"] == nat_id
    (gone,) = ec2.describe_nat_gateways(NatGatewayIds=[nat_id])["NatGateways"]
    assert gone["State"] == "deleted" and "DeleteTime" in gone
    ec2.get_waiter("nat_gateway_deleted").wait(
        NatGatewayIds=[nat_id], WaiterConfig={"Delay": 1, "MaxAttempts": 5}
    )
    ec2.release_address(AllocationId=alloc)  # free again
    ec2.delete_subnet(SubnetId=subnet)


def test_nat_gateway_errors(api: Api) -> None:
    ec2 = api.ec2("alice")
    _, subnet = _vpc(ec2)
    alloc = ec2.allocate_address(Domain="vpc")["AllocationId"]
    failed = ec2.create_nat_gateway(SubnetId=subnet, AllocationId=alloc)["NatGateway"]
    assert (failed["State"], failed["FailureCode"]) == ("failed", "Gateway.NotAttached")
    with pytest.raises(ClientError) as e:
        ec2.create_nat_gateway(SubnetId=subnet)
    assert code_of(e) == "MissingParameter"
    with pytest.raises(ClientError) as e:
        ec2.create_nat_gateway(SubnetId=subnet, AllocationId="eipalloc-00000000000000000")
    assert code_of(e) == "InvalidAllocationID.NotFound"
    with pytest.raises(ClientError) as e:
        ec2.describe_nat_gateways(NatGatewayIds=["nat-00000000000000000"])
    assert code_of(e) == "NatGatewayNotFound"
    with pytest.raises(ClientError) as e:
        ec2.delete_nat_gateway(NatGatewayId="nat-00000000000000000")
    assert code_of(e) == "NatGatewayNotFound"
    private = ec2.create_nat_gateway(SubnetId=subnet, ConnectivityType="private")["NatGateway"]
    assert (private["State"], private["ConnectivityType"]) == ("available", "private")


def test_nat_gateway_pages(api: Api) -> None:
    ec2 = api.ec2("alice")
    _, subnet = _vpc(ec2)
    made = [
        ec2.create_nat_gateway(SubnetId=subnet, ConnectivityType="private")["NatGateway"][
            "NatGatewayId"
        ]
        for _ in range(7)
    ]
    pages = list(
        ec2.get_paginator("describe_nat_gateways").paginate(PaginationConfig={"PageSize": 5})
    )
    assert [len(p["NatGateways"]) for p in pages] == [5, 2]
    assert [n["NatGatewayId"] for p in pages for n in p["NatGateways"]] == sorted(made)
    with pytest.raises(ClientError) as e:
        ec2.describe_nat_gateways(MaxResults=5, NextToken="bogus")
    assert code_of(e) == "InvalidNextToken"


def test_a_repeated_client_token_makes_one_nat_gateway(api: Api) -> None:
    ec2 = api.ec2("alice")
    _, subnet = _vpc(ec2)
    first = ec2.create_nat_gateway(SubnetId=subnet, ConnectivityType="private", ClientToken="t1")
    again = ec2.create_nat_gateway(SubnetId=subnet, ConnectivityType="private", ClientToken="t1")
    assert first["NatGateway"]["NatGatewayId"] == again["NatGateway"]["NatGatewayId"]
    assert len(ec2.describe_nat_gateways()["NatGateways"]) == 1


# -- isolation ----------------------------------------------------------------------------
def test_tenants_never_see_each_others_gateways_and_addresses(api: Api) -> None:
    alice, bob = api.ec2("alice"), api.ec2("bob")
    vpc, subnet = _vpc(alice)
    igw = _public(alice, vpc)
    alloc = alice.allocate_address(
        Domain="vpc",
        TagSpecifications=[{"ResourceType": "elastic-ip", "Tags": [{"Key": "k", "Value": "v"}]}],
    )["AllocationId"]
    nat = alice.create_nat_gateway(SubnetId=subnet, AllocationId=alloc)["NatGateway"]
    bob_vpc, bob_subnet = _vpc(bob)
    bob_alloc = bob.allocate_address(Domain="vpc")["AllocationId"]
    assert bob.describe_internet_gateways()["InternetGateways"] == []
    assert bob.describe_nat_gateways()["NatGateways"] == []
    assert [a["AllocationId"] for a in bob.describe_addresses()["Addresses"]] == [bob_alloc]
    assert bob.describe_addresses(Filters=[{"Name": "tag:k", "Values": ["v"]}])["Addresses"] == []
    calls: list[tuple[Callable[[], object], str]] = [
        (
            lambda: bob.describe_internet_gateways(InternetGatewayIds=[igw]),
            "InvalidInternetGatewayID.NotFound",
        ),
        (
            lambda: bob.attach_internet_gateway(InternetGatewayId=igw, VpcId=bob_vpc),
            "InvalidInternetGatewayID.NotFound",
        ),
        (
            lambda: bob.delete_internet_gateway(InternetGatewayId=igw),
            "InvalidInternetGatewayID.NotFound",
        ),
        (lambda: bob.release_address(AllocationId=alloc), "InvalidAllocationID.NotFound"),
        (
            lambda: bob.describe_addresses(AllocationIds=[alloc]),
            "InvalidAllocationID.NotFound",
        ),
        (
            lambda: bob.create_nat_gateway(SubnetId=bob_subnet, AllocationId=alloc),
            "InvalidAllocationID.NotFound",
        ),
        (
            lambda: bob.describe_nat_gateways(NatGatewayIds=[nat["NatGatewayId"]]),
            "NatGatewayNotFound",
        ),
        (
            lambda: bob.delete_nat_gateway(NatGatewayId=nat["NatGatewayId"]),
            "NatGatewayNotFound",
        ),
    ]
    for call, code in calls:
        with pytest.raises(ClientError) as e:
            call()
        assert code_of(e) == code
