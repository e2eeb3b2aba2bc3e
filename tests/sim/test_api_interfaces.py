"""Network interfaces through the real HTTP API with boto3: create, describe, attach, detach,
attributes, secondary addresses, error codes, paginators, waiters and tenant isolation."""

import time
from collections.abc import Callable
from typing import Any

import botocore.exceptions
import pytest
from apikit import Api

from openvpc.service.catalogue import DEFAULT_IMAGE

ClientError = botocore.exceptions.ClientError
FAST = {"Delay": 1, "MaxAttempts": 10}


def code_of(e: pytest.ExceptionInfo[ClientError]) -> str:
    return str(e.value.response["Error"]["Code"])


def _subnet(ec2: Any, cidr: str = "10.0.1.0/24") -> tuple[str, str]:
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    return vpc, str(ec2.create_subnet(VpcId=vpc, CidrBlock=cidr)["Subnet"]["SubnetId"])


def _instance(ec2: Any, subnet: str, kind: str = "t3.small") -> dict[str, Any]:
    out = ec2.run_instances(
        ImageId=DEFAULT_IMAGE, MinCount=1, MaxCount=1, SubnetId=subnet, InstanceType=kind
    )
    return dict(out["Instances"][0])


def _eni(ec2: Any, eni_id: str) -> dict[str, Any]:
    out = ec2.describe_network_interfaces(NetworkInterfaceIds=[eni_id])
    return dict(out["NetworkInterfaces"][0])


def test_create_describe_delete(api: Api) -> None:
    ec2 = api.ec2("alice")
    vpc, subnet = _subnet(ec2)
    eni = ec2.create_network_interface(
        SubnetId=subnet,
        Description="spare",
        SecondaryPrivateIpAddressCount=2,
        TagSpecifications=[
            {"ResourceType": "network-interface", "Tags": [{"Key": "Name", "Value": "n"}]}
        ],
    )["NetworkInterface"]
    assert (eni["Status"], eni["VpcId"], eni["SubnetId"]) == ("available", vpc, subnet)
    assert eni["PrivateIpAddress"] == "10.0.1.4" and eni["Description"] == "spare"
    assert [(a["PrivateIpAddress"], a["Primary"]) for a in eni["PrivateIpAddresses"]] == [
        ("10.0.1.4", True),
        ("10.0.1.5", False),
        ("10.0.1.6", False),
    ]
    assert eni["TagSet"] == [{"Key": "Name", "Value": "n"}]
    assert eni["AvailabilityZone"] == "us-east-1a" and eni["SourceDestCheck"] is True
    assert eni["MacAddress"].startswith("02:")
    eid = eni["NetworkInterfaceId"]
    ec2.get_waiter("network_interface_available").wait(NetworkInterfaceIds=[eid], WaiterConfig=FAST)
    ec2.delete_network_interface(NetworkInterfaceId=eid)
    with pytest.raises(ClientError) as e:
        ec2.describe_network_interfaces(NetworkInterfaceIds=[eid])
    assert code_of(e) == "InvalidNetworkInterfaceID.NotFound"
    with pytest.raises(ClientError) as e:
        ec2.delete_network_interface(NetworkInterfaceId=eid)
    assert code_of(e) == "InvalidNetworkInterfaceID.NotFound"


def test_create_with_listed_addresses_and_refusals(api: Api) -> None:
    ec2 = api.ec2("alice")
    _, subnet = _subnet(ec2)
    eni = ec2.create_network_interface(
        SubnetId=subnet,
        PrivateIpAddresses=[
            {"PrivateIpAddress": "10.0.1.10", "Primary": True},
            {"PrivateIpAddress": "10.0.1.11", "Primary": False},
        ],
    )["NetworkInterface"]
    assert eni["PrivateIpAddress"] == "10.0.1.10"
    assert [a["PrivateIpAddress"] for a in eni["PrivateIpAddresses"]] == ["10.0.1.10", "10.0.1.11"]
    refusals: list[tuple[dict[str, Any], str]] = [
        ({"PrivateIpAddress": "10.0.1.11"}, "InvalidIPAddress.InUse"),
        ({"PrivateIpAddress": "10.0.1.255"}, "InvalidParameterValue"),
        ({"PrivateIpAddress": "10.9.0.4"}, "InvalidParameterValue"),
        ({"SecondaryPrivateIpAddressCount": 40}, "PrivateIpAddressLimitExceeded"),
        ({"Description": "x" * 256}, "InvalidParameterValue"),
    ]
    for args, code in refusals:
        with pytest.raises(ClientError) as e:
            ec2.create_network_interface(SubnetId=subnet, **args)
        assert code_of(e) == code, args
    with pytest.raises(ClientError) as e:
        ec2.create_network_interface(SubnetId="subnet-00000000000000000")
    assert code_of(e) == "InvalidSubnetID.NotFound"


def test_attach_and_detach(api: Api) -> None:
    ec2 = api.ec2("alice")
    _, subnet = _subnet(ec2)
    inst = _instance(ec2, subnet)
    iid = inst["InstanceId"]
    eid = ec2.create_network_interface(SubnetId=subnet)["NetworkInterface"]["NetworkInterfaceId"]
    out = ec2.attach_network_interface(NetworkInterfaceId=eid, InstanceId=iid, DeviceIndex=1)
    attachment = out["AttachmentId"]
    assert attachment.startswith("eni-attach-")
    eni = _eni(ec2, eid)
    assert eni["Status"] == "in-use"
    assert eni["Attachment"]["InstanceId"] == iid and eni["Attachment"]["DeviceIndex"] == 1
    assert abs(eni["Attachment"]["AttachTime"].timestamp() - time.time()) < 60
    described = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
    assert [n["NetworkInterfaceId"] for n in described["NetworkInterfaces"]][1:] == [eid]
    found = ec2.describe_network_interfaces(
        Filters=[{"Name": "attachment.instance-id", "Values": [iid]}]
    )["NetworkInterfaces"]
    assert len(found) == 2
    with pytest.raises(ClientError) as e:
        ec2.delete_network_interface(NetworkInterfaceId=eid)
    assert code_of(e) == "InvalidNetworkInterface.InUse"
    with pytest.raises(ClientError) as e:
        ec2.attach_network_interface(NetworkInterfaceId=eid, InstanceId=iid, DeviceIndex=2)
    assert code_of(e) == "InvalidNetworkInterface.InUse"
    primary = inst["NetworkInterfaces"][0]["Attachment"]["AttachmentId"]
    with pytest.raises(ClientError) as e:
        ec2.detach_network_interface(AttachmentId=primary)
    assert code_of(e) == "OperationNotPermitted"
    ec2.detach_network_interface(AttachmentId=attachment)
    assert _eni(ec2, eid)["Status"] == "available" and "Attachment" not in _eni(ec2, eid)
    with pytest.raises(ClientError) as e:
        ec2.detach_network_interface(AttachmentId=attachment)
    assert code_of(e) == "InvalidAttachmentID.NotFound"
    other = ec2.create_network_interface(SubnetId=subnet)["NetworkInterface"]
    ec2.attach_network_interface(NetworkInterfaceId=eid, InstanceId=iid, DeviceIndex=1)
    with pytest.raises(ClientError) as e:
        ec2.attach_network_interface(
            NetworkInterfaceId=other["NetworkInterfaceId"], InstanceId=iid, DeviceIndex=1
        )
    assert code_of(e) == "InvalidParameterValue"
    with pytest.raises(ClientError) as e:
        ec2.attach_network_interface(
            NetworkInterfaceId=other["NetworkInterfaceId"],
            InstanceId="i-00000000000000000",
            DeviceIndex=2,
        )
    assert code_of(e) == "InvalidInstanceID.NotFound"
    ec2.terminate_instances(InstanceIds=[iid])  # the attached one is detached, not deleted
    assert _eni(ec2, eid)["Status"] == "available"


def test_attach_limits_and_other_vpcs(api: Api) -> None:
    ec2 = api.ec2("alice")
    _, subnet = _subnet(ec2)
    iid = _instance(ec2, subnet, "t3.micro")["InstanceId"]  # two interfaces at most
    ids = [
        ec2.create_network_interface(SubnetId=subnet)["NetworkInterface"]["NetworkInterfaceId"]
        for _ in range(2)
    ]
    ec2.attach_network_interface(NetworkInterfaceId=ids[0], InstanceId=iid, DeviceIndex=1)
    with pytest.raises(ClientError) as e:
        ec2.attach_network_interface(NetworkInterfaceId=ids[1], InstanceId=iid, DeviceIndex=2)
    assert code_of(e) == "AttachmentLimitExceeded"
    _, far = _subnet(ec2, "10.0.1.0/24")
    eid = ec2.create_network_interface(SubnetId=far)["NetworkInterface"]["NetworkInterfaceId"]
    with pytest.raises(ClientError) as e:
        ec2.attach_network_interface(NetworkInterfaceId=eid, InstanceId=iid, DeviceIndex=1)
    assert code_of(e) == "InvalidParameterCombination"


def test_modify_and_describe_attributes(api: Api) -> None:
    ec2 = api.ec2("alice")
    _, subnet = _subnet(ec2)
    inst = _instance(ec2, subnet)
    eid = inst["NetworkInterfaces"][0]["NetworkInterfaceId"]
    ec2.modify_network_interface_attribute(NetworkInterfaceId=eid, SourceDestCheck={"Value": False})
    ec2.modify_network_interface_attribute(NetworkInterfaceId=eid, Description={"Value": "nat"})
    attachment = inst["NetworkInterfaces"][0]["Attachment"]["AttachmentId"]
    ec2.modify_network_interface_attribute(
        NetworkInterfaceId=eid,
        Attachment={"AttachmentId": attachment, "DeleteOnTermination": False},
    )

    def attribute(name: str) -> dict[str, Any]:
        return dict(
            ec2.describe_network_interface_attribute(NetworkInterfaceId=eid, Attribute=name)
        )

    assert attribute("sourceDestCheck")["SourceDestCheck"] == {"Value": False}
    assert attribute("description")["Description"] == {"Value": "nat"}
    assert attribute("attachment")["Attachment"]["DeleteOnTermination"] is False
    described = ec2.describe_instances(InstanceIds=[inst["InstanceId"]])["Reservations"][0]
    assert described["Instances"][0]["SourceDestCheck"] is False
    with pytest.raises(ClientError) as e:
        ec2.modify_network_interface_attribute(
            NetworkInterfaceId=eid, SourceDestCheck={"Value": True}, Description={"Value": "x"}
        )
    assert code_of(e) == "InvalidParameterCombination"
    with pytest.raises(ClientError) as e:
        attribute("nonsense")
    assert code_of(e) == "InvalidParameterValue"
    ec2.terminate_instances(InstanceIds=[inst["InstanceId"]])  # it stays: delete-on-termination off
    assert _eni(ec2, eid)["Status"] == "available"


def test_assign_and_unassign_private_addresses(api: Api) -> None:
    ec2 = api.ec2("alice")
    _, subnet = _subnet(ec2)
    eid = _instance(ec2, subnet, "t3.small")["NetworkInterfaces"][0]["NetworkInterfaceId"]
    out = ec2.assign_private_ip_addresses(NetworkInterfaceId=eid, SecondaryPrivateIpAddressCount=2)
    assert [a["PrivateIpAddress"] for a in out["AssignedPrivateIpAddresses"]] == [
        "10.0.1.5",
        "10.0.1.6",
    ]
    with pytest.raises(ClientError) as e:  # t3.small: four addresses per interface
        ec2.assign_private_ip_addresses(NetworkInterfaceId=eid, SecondaryPrivateIpAddressCount=2)
    assert code_of(e) == "PrivateIpAddressLimitExceeded"
    other = ec2.create_network_interface(SubnetId=subnet)["NetworkInterface"]
    with pytest.raises(ClientError) as e:
        ec2.assign_private_ip_addresses(
            NetworkInterfaceId=other["NetworkInterfaceId"], PrivateIpAddresses=["10.0.1.5"]
        )
    assert code_of(e) == "InvalidIPAddress.InUse"
    ec2.assign_private_ip_addresses(
        NetworkInterfaceId=other["NetworkInterfaceId"],
        PrivateIpAddresses=["10.0.1.5"],
        AllowReassignment=True,
    )
    found = ec2.describe_network_interfaces(
        Filters=[{"Name": "private-ip-address", "Values": ["10.0.1.5"]}]
    )["NetworkInterfaces"]
    assert [n["NetworkInterfaceId"] for n in found] == [other["NetworkInterfaceId"]]
    with pytest.raises(ClientError) as e:
        ec2.unassign_private_ip_addresses(NetworkInterfaceId=eid, PrivateIpAddresses=["10.0.1.5"])
    assert code_of(e) == "InvalidParameterValue"
    ec2.unassign_private_ip_addresses(NetworkInterfaceId=eid, PrivateIpAddresses=["10.0.1.6"])
    assert [a["PrivateIpAddress"] for a in _eni(ec2, eid)["PrivateIpAddresses"]] == ["10.0.1.4"]
    with pytest.raises(ClientError) as e:
        ec2.assign_private_ip_addresses(NetworkInterfaceId=eid)
    assert code_of(e) == "MissingParameter"


def test_describe_filters_and_pages(api: Api) -> None:
    ec2 = api.ec2("alice")
    vpc, subnet = _subnet(ec2)
    ids = sorted(
        ec2.create_network_interface(SubnetId=subnet, Description=f"n{k}")["NetworkInterface"][
            "NetworkInterfaceId"
        ]
        for k in range(6)
    )

    def found(name: str, *values: str) -> list[str]:
        out = ec2.describe_network_interfaces(Filters=[{"Name": name, "Values": list(values)}])
        return sorted(n["NetworkInterfaceId"] for n in out["NetworkInterfaces"])

    assert found("vpc-id", vpc) == ids
    assert found("subnet-id", subnet) == ids
    assert found("status", "available") == ids
    assert found("status", "in-use") == []
    assert found("description", "n1") == [n for n in ids if _eni(ec2, n)["Description"] == "n1"]
    assert found("network-interface-id", ids[0]) == ids[:1]
    pages = list(
        ec2.get_paginator("describe_network_interfaces").paginate(PaginationConfig={"PageSize": 5})
    )
    assert [len(p["NetworkInterfaces"]) for p in pages] == [5, 1]
    with pytest.raises(ClientError) as e:
        ec2.describe_network_interfaces(NetworkInterfaceIds=ids[:1], MaxResults=5)
    assert code_of(e) == "InvalidParameterCombination"


def test_tenants_never_see_each_others_interfaces(api: Api) -> None:
    alice, bob = api.ec2("alice"), api.ec2("bob")
    _, subnet = _subnet(alice)
    eni = alice.create_network_interface(
        SubnetId=subnet,
        TagSpecifications=[
            {"ResourceType": "network-interface", "Tags": [{"Key": "k", "Value": "v"}]}
        ],
    )["NetworkInterface"]
    eid = eni["NetworkInterfaceId"]
    _, bob_subnet = _subnet(bob)
    bob_iid = _instance(bob, bob_subnet)["InstanceId"]
    assert len(bob.describe_network_interfaces()["NetworkInterfaces"]) == 1
    for name, value in (("network-interface-id", eid), ("tag:k", "v"), ("subnet-id", subnet)):
        out = bob.describe_network_interfaces(Filters=[{"Name": name, "Values": [value]}])
        assert out["NetworkInterfaces"] == []
    calls: list[Callable[[], Any]] = [
        lambda: bob.describe_network_interfaces(NetworkInterfaceIds=[eid]),
        lambda: bob.delete_network_interface(NetworkInterfaceId=eid),
        lambda: bob.attach_network_interface(
            NetworkInterfaceId=eid, InstanceId=bob_iid, DeviceIndex=1
        ),
        lambda: bob.modify_network_interface_attribute(
            NetworkInterfaceId=eid, SourceDestCheck={"Value": False}
        ),
        lambda: bob.describe_network_interface_attribute(
            NetworkInterfaceId=eid, Attribute="description"
        ),
        lambda: bob.assign_private_ip_addresses(
            NetworkInterfaceId=eid, SecondaryPrivateIpAddressCount=1
        ),
    ]
    for call in calls:
        with pytest.raises(ClientError) as e:
            call()
        assert code_of(e) == "InvalidNetworkInterfaceID.NotFound"
    with pytest.raises(ClientError) as e:
        bob.create_network_interface(SubnetId=subnet)
    assert code_of(e) == "InvalidSubnetID.NotFound"
    assert _eni(alice, eid)["Status"] == "available"
