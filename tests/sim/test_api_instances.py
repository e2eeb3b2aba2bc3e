"""Instances through the real HTTP API with boto3: run, describe, stop, start, terminate,
status, waiters, paginators, filters, error codes and tenant isolation."""

from typing import Any

import botocore.exceptions
import pytest
from apikit import Api

from openvpc.service.catalogue import DEFAULT_IMAGE
from openvpc.service.instances import INSTANCE_QUOTA

ClientError = botocore.exceptions.ClientError
AMI = DEFAULT_IMAGE
FAST = {"Delay": 1, "MaxAttempts": 10}


def code_of(e: pytest.ExceptionInfo[ClientError]) -> str:
    return str(e.value.response["Error"]["Code"])


def _subnet(ec2: Any, cidr: str = "10.0.1.0/24", zone: str | None = None) -> str:
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    args = {"AvailabilityZone": zone} if zone else {}
    return str(ec2.create_subnet(VpcId=vpc, CidrBlock=cidr, **args)["Subnet"]["SubnetId"])


def _run(ec2: Any, subnet: str, count: int = 1, **kw: Any) -> list[dict[str, Any]]:
    out = ec2.run_instances(
        ImageId=AMI, MinCount=count, MaxCount=count, SubnetId=subnet, InstanceType="t3.small", **kw
    )
    return list(out["Instances"])


def _ids(reservations: list[dict[str, Any]]) -> list[str]:
    return sorted(i["InstanceId"] for r in reservations for i in r["Instances"])


def _state(ec2: Any, iid: str) -> str:
    out = ec2.describe_instances(InstanceIds=[iid])["Reservations"]
    return str(out[0]["Instances"][0]["State"]["Name"])


def test_run_is_pending_then_running_and_terminates(api: Api) -> None:
    ec2 = api.ec2("alice")
    subnet = _subnet(ec2)
    out = ec2.run_instances(
        ImageId=AMI,
        MinCount=2,
        MaxCount=2,
        SubnetId=subnet,
        InstanceType="t3.small",
        TagSpecifications=[
            {"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": "web"}]},
            {"ResourceType": "network-interface", "Tags": [{"Key": "role", "Value": "front"}]},
        ],
    )
    assert out["ReservationId"].startswith("r-")
    assert out["OwnerId"] == api.service.tenant("alice").account
    instances = out["Instances"]
    assert [i["State"] for i in instances] == [{"Code": 0, "Name": "pending"}] * 2
    assert [i["PrivateIpAddress"] for i in instances] == ["10.0.1.4", "10.0.1.5"]
    assert [i["AmiLaunchIndex"] for i in instances] == [0, 1]
    first = instances[0]
    assert (first["ImageId"], first["InstanceType"], first["SubnetId"]) == (AMI, "t3.small", subnet)
    assert first["PrivateDnsName"] == "ip-10-0-1-4.ec2.internal"
    assert first["Placement"]["AvailabilityZone"] == "us-east-1a"
    assert first["Tags"] == [{"Key": "Name", "Value": "web"}]
    (eni,) = first["NetworkInterfaces"]
    assert eni["Attachment"]["DeviceIndex"] == 0 and eni["Attachment"]["DeleteOnTermination"]
    ids = [i["InstanceId"] for i in instances]
    ec2.get_waiter("instance_running").wait(InstanceIds=ids, WaiterConfig=FAST)
    assert {_state(ec2, i) for i in ids} == {"running"}
    enis = ec2.describe_network_interfaces(Filters=[{"Name": "tag:role", "Values": ["front"]}])
    assert len(enis["NetworkInterfaces"]) == 2
    (reservation,) = ec2.describe_instances(InstanceIds=ids)["Reservations"]
    assert reservation["ReservationId"] == out["ReservationId"]
    out = ec2.terminate_instances(InstanceIds=ids[:1])["TerminatingInstances"]
    assert out[0]["PreviousState"]["Name"] == "running"
    assert out[0]["CurrentState"]["Name"] in ("shutting-down", "terminated")
    ec2.get_waiter("instance_terminated").wait(InstanceIds=ids[:1], WaiterConfig=FAST)
    gone = ec2.describe_instances(InstanceIds=ids[:1])["Reservations"][0]["Instances"][0]
    assert gone["State"] == {"Code": 48, "Name": "terminated"}
    assert "VpcId" not in gone and gone["NetworkInterfaces"] == []
    again = ec2.terminate_instances(InstanceIds=ids[:1])["TerminatingInstances"]  # idempotent
    assert again[0]["PreviousState"]["Name"] == again[0]["CurrentState"]["Name"] == "terminated"
    # its address is free again
    assert _run(ec2, subnet)[0]["PrivateIpAddress"] == "10.0.1.4"


def test_stop_and_start(api: Api) -> None:
    ec2 = api.ec2("alice")
    (inst,) = _run(ec2, _subnet(ec2))
    iid = inst["InstanceId"]
    ec2.get_waiter("instance_running").wait(InstanceIds=[iid], WaiterConfig=FAST)
    out = ec2.stop_instances(InstanceIds=[iid])["StoppingInstances"][0]
    assert out["PreviousState"]["Name"] == "running"
    ec2.get_waiter("instance_stopped").wait(InstanceIds=[iid], WaiterConfig=FAST)
    stopped = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
    assert stopped["PrivateIpAddress"] == inst["PrivateIpAddress"]  # a stopped one keeps it
    assert stopped["StateReason"]["Code"] == "Client.UserInitiatedShutdown"
    out = ec2.start_instances(InstanceIds=[iid])["StartingInstances"][0]
    assert out["PreviousState"]["Name"] == "stopped"
    assert out["CurrentState"]["Name"] == "pending"
    ec2.get_waiter("instance_running").wait(InstanceIds=[iid], WaiterConfig=FAST)
    ec2.terminate_instances(InstanceIds=[iid])
    for call in (ec2.start_instances, ec2.stop_instances):
        with pytest.raises(ClientError) as e:
            call(InstanceIds=[iid])
        assert code_of(e) == "IncorrectInstanceState"


@pytest.mark.parametrize(
    ("args", "code"),
    [
        ({"ImageId": "ami-0123456789abcdef0"}, "InvalidAMIID.NotFound"),
        ({"ImageId": "my-image"}, "InvalidAMIID.Malformed"),
        ({"InstanceType": "t9.giant"}, "InvalidParameterValue"),
        ({"SubnetId": "subnet-00000000000000000"}, "InvalidSubnetID.NotFound"),
        ({"SubnetId": None}, "VPCIdNotSpecified"),
        ({"MinCount": 3, "MaxCount": 2}, "InvalidParameterValue"),
        ({"MaxCount": 2, "PrivateIpAddress": "10.0.1.9"}, "InvalidParameterCombination"),
        ({"PrivateIpAddress": "10.0.1.1"}, "InvalidParameterValue"),
        ({"PrivateIpAddress": "10.0.2.9"}, "InvalidParameterValue"),
        ({"SecurityGroups": ["default"]}, "InvalidParameterCombination"),
    ],
)
def test_run_refusals(api: Api, args: dict[str, Any], code: str) -> None:
    ec2 = api.ec2("alice")
    request: dict[str, Any] = {
        "ImageId": AMI,
        "MinCount": 1,
        "MaxCount": 1,
        "SubnetId": _subnet(ec2),
        **args,
    }
    request = {k: v for k, v in request.items() if v is not None}
    with pytest.raises(ClientError) as e:
        ec2.run_instances(**request)
    assert code_of(e) == code
    assert ec2.describe_instances()["Reservations"] == []


def test_network_interfaces_form_and_its_conflicts(api: Api) -> None:
    ec2 = api.ec2("alice")
    subnet = _subnet(ec2)
    spec = {"DeviceIndex": 0, "SubnetId": subnet, "SecondaryPrivateIpAddressCount": 1}
    (inst,) = ec2.run_instances(
        ImageId=AMI, MinCount=1, MaxCount=1, InstanceType="t3.small", NetworkInterfaces=[spec]
    )["Instances"]
    (eni,) = inst["NetworkInterfaces"]
    assert [a["PrivateIpAddress"] for a in eni["PrivateIpAddresses"]] == ["10.0.1.4", "10.0.1.5"]
    with pytest.raises(ClientError) as e:
        ec2.run_instances(
            ImageId=AMI, MinCount=1, MaxCount=1, SubnetId=subnet, NetworkInterfaces=[spec]
        )
    assert code_of(e) == "InvalidParameterCombination"


def test_addresses_quota_and_zones(api: Api) -> None:
    ec2 = api.ec2("alice")
    small = _subnet(ec2, "10.0.1.0/28")  # 11 addresses
    assert len(_run(ec2, small, 8)) == 8
    with pytest.raises(ClientError) as e:
        _run(ec2, small, 4)
    assert code_of(e) == "InsufficientFreeAddressesInSubnet"
    out = ec2.run_instances(ImageId=AMI, MinCount=1, MaxCount=10, SubnetId=small)["Instances"]
    assert len(out) == 3
    vpc = ec2.describe_subnets(SubnetIds=[small])["Subnets"][0]["VpcId"]
    big = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.4.0/24", AvailabilityZone="us-east-1b")
    zoned = _run(ec2, big["Subnet"]["SubnetId"], 2)
    assert {i["Placement"]["AvailabilityZone"] for i in zoned} == {"us-east-1b"}
    rest = INSTANCE_QUOTA - 13
    assert len(_run(ec2, big["Subnet"]["SubnetId"], rest)) == rest
    with pytest.raises(ClientError) as e:
        _run(ec2, big["Subnet"]["SubnetId"])
    assert code_of(e) == "InstanceLimitExceeded"
    # by zone filter
    found = ec2.describe_instances(
        Filters=[{"Name": "availability-zone", "Values": ["us-east-1b"]}]
    )["Reservations"]
    assert len(_ids(found)) == rest + 2


def test_describe_filters(api: Api) -> None:
    ec2 = api.ec2("alice")
    subnet = _subnet(ec2)
    a = _run(
        ec2,
        subnet,
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "team", "Value": "x"}]}],
    )[0]
    b = ec2.run_instances(ImageId="ami-0b5e7e0ad5ea10002", MinCount=1, MaxCount=1, SubnetId=subnet)[
        "Instances"
    ][0]
    ec2.stop_instances(InstanceIds=[b["InstanceId"]])
    vpc = a["VpcId"]

    def found(name: str, *values: str) -> list[str]:
        out = ec2.describe_instances(Filters=[{"Name": name, "Values": list(values)}])
        return _ids(out["Reservations"])

    ia, ib = a["InstanceId"], b["InstanceId"]
    assert found("instance-id", ia) == [ia]
    assert found("instance-state-name", "running") == [ia]
    assert found("instance-state-name", "stopped") == [ib]
    assert found("instance-state-code", "80") == [ib]
    assert found("vpc-id", vpc) == sorted([ia, ib])
    assert found("subnet-id", subnet) == sorted([ia, ib])
    assert found("private-ip-address", "10.0.1.5") == [ib]
    assert found(
        "network-interface.network-interface-id", a["NetworkInterfaces"][0]["NetworkInterfaceId"]
    ) == [ia]
    assert found("image-id", "ami-0b5e7e0ad5ea10002") == [ib]
    assert found("instance-type", "t3.small") == [ia]
    assert found("tag:team", "x") == [ia]
    assert found("tag-key", "team") == [ia]
    assert found("availability-zone", "us-east-1a") == sorted([ia, ib])
    with pytest.raises(ClientError) as e:
        found("no-such-filter", "x")
    assert code_of(e) == "InvalidParameterValue"


def test_pagination(api: Api) -> None:
    ec2 = api.ec2("alice")
    made = [i["InstanceId"] for i in _run(ec2, _subnet(ec2), 7)]
    pages = list(ec2.get_paginator("describe_instances").paginate(PaginationConfig={"PageSize": 5}))
    assert [len(_ids(p["Reservations"])) for p in pages] == [5, 2]
    assert sorted(i for p in pages for i in _ids(p["Reservations"])) == sorted(made)
    with pytest.raises(ClientError) as e:
        ec2.describe_instances(InstanceIds=made[:1], MaxResults=5)
    assert code_of(e) == "InvalidParameterCombination"
    with pytest.raises(ClientError) as e:
        ec2.describe_instances(MaxResults=1001)
    assert code_of(e) == "InvalidParameterValue"


def test_describe_instance_status(api: Api) -> None:
    ec2 = api.ec2("alice")
    a, b = (i["InstanceId"] for i in _run(ec2, _subnet(ec2), 2))
    ec2.stop_instances(InstanceIds=[b])
    ec2.get_waiter("instance_stopped").wait(InstanceIds=[b], WaiterConfig=FAST)
    running = ec2.describe_instance_status()["InstanceStatuses"]
    assert [s["InstanceId"] for s in running] == [a]
    assert running[0]["InstanceStatus"]["Status"] == "ok"
    every = ec2.describe_instance_status(IncludeAllInstances=True)["InstanceStatuses"]
    assert {s["InstanceId"]: s["InstanceState"]["Name"] for s in every} == {
        a: "running",
        b: "stopped",
    }
    ec2.get_waiter("instance_status_ok").wait(InstanceIds=[a], WaiterConfig=FAST)


def test_client_token_and_dry_run(api: Api) -> None:
    ec2 = api.ec2("alice")
    subnet = _subnet(ec2)
    first = ec2.run_instances(
        ImageId=AMI, MinCount=1, MaxCount=1, SubnetId=subnet, ClientToken="t1"
    )
    again = ec2.run_instances(
        ImageId=AMI, MinCount=1, MaxCount=1, SubnetId=subnet, ClientToken="t1"
    )
    assert first["ReservationId"] == again["ReservationId"]
    assert len(_ids(ec2.describe_instances()["Reservations"])) == 1
    with pytest.raises(ClientError) as e:
        ec2.run_instances(ImageId=AMI, MinCount=1, MaxCount=1, SubnetId=subnet, DryRun=True)
    assert code_of(e) == "DryRunOperation"


def test_tenants_never_see_each_others_instances(api: Api) -> None:
    alice, bob = api.ec2("alice"), api.ec2("bob")
    a = _run(
        alice,
        _subnet(alice),
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "k", "Value": "v"}]}],
    )[0]
    b = _run(bob, _subnet(bob))[0]  # the same addresses
    assert a["PrivateIpAddress"] == b["PrivateIpAddress"]
    iid = a["InstanceId"]
    assert _ids(bob.describe_instances()["Reservations"]) == [b["InstanceId"]]
    for call in (bob.describe_instances, bob.stop_instances, bob.start_instances):
        with pytest.raises(ClientError) as e:
            call(InstanceIds=[iid])
        assert code_of(e) == "InvalidInstanceID.NotFound"
    with pytest.raises(ClientError) as e:
        bob.terminate_instances(InstanceIds=[iid])
    assert code_of(e) == "InvalidInstanceID.NotFound"
    for name, value in (("instance-id", iid), ("tag:k", "v"), ("vpc-id", a["VpcId"])):
        out = bob.describe_instances(Filters=[{"Name": name, "Values": [value]}])
        assert out["Reservations"] == []
    with pytest.raises(ClientError) as e:
        bob.describe_instance_status(InstanceIds=[iid])
    assert code_of(e) == "InvalidInstanceID.NotFound"
    assert _state(alice, iid) in ("pending", "running")


def test_host_id_and_movable_addresses_extensions(api: Api) -> None:
    ec2 = api.ec2("alice")
    subnet = _subnet(ec2)
    tags = [
        {"Key": "Name", "Value": "r1"},
        {"Key": "openvpc:allowed-addresses", "Value": "10.0.1.100"},
    ]
    (inst,) = _run(
        ec2,
        subnet,
        Placement={"HostId": "node2"},
        TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
    )
    assert inst["Placement"]["HostId"] == "node2"
    found = ec2.describe_instances(Filters=[{"Name": "host-id", "Values": ["node2"]}])
    assert _ids(found["Reservations"]) == [inst["InstanceId"]]
    owners = api.service.describe_address_owners("alice")
    assert [(o.ip, o.interface) for o in owners] == [
        ("10.0.1.100", inst["NetworkInterfaces"][0]["NetworkInterfaceId"])
    ]
    with pytest.raises(ClientError) as e:
        _run(ec2, subnet, Placement={"HostId": "node9"})
    assert code_of(e) == "InvalidHostID.NotFound"
    with pytest.raises(ClientError) as e:
        _run(ec2, subnet, Placement={"HostId": "node3"})  # in us-east-1b
    assert code_of(e) == "InvalidParameterValue"


def test_instance_attributes_and_reboot(api: Api) -> None:
    ec2 = api.ec2("alice")
    (inst,) = _run(ec2, _subnet(ec2))
    iid = inst["InstanceId"]

    def attribute(name: str) -> Any:
        return ec2.describe_instance_attribute(InstanceId=iid, Attribute=name)

    ec2.reboot_instances(InstanceIds=[iid])
    ec2.modify_instance_attribute(InstanceId=iid, SourceDestCheck={"Value": False})
    assert attribute("sourceDestCheck")["SourceDestCheck"] == {"Value": False}
    described = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
    assert described["SourceDestCheck"] is False
    assert attribute("instanceType")["InstanceType"] == {"Value": "t3.small"}
    with pytest.raises(ClientError) as e:  # only a stopped instance changes type
        ec2.modify_instance_attribute(InstanceId=iid, InstanceType={"Value": "t3.medium"})
    assert code_of(e) == "IncorrectInstanceState"
    ec2.stop_instances(InstanceIds=[iid])
    ec2.modify_instance_attribute(InstanceId=iid, InstanceType={"Value": "t3.medium"})
    assert attribute("instanceType")["InstanceType"] == {"Value": "t3.medium"}
    refusals: list[tuple[dict[str, Any], str]] = [
        ({"InstanceType": {"Value": "t9.giant"}}, "InvalidParameterValue"),
        (
            {"InstanceType": {"Value": "t3.micro"}, "SourceDestCheck": {"Value": True}},
            "InvalidParameterCombination",
        ),
        ({"DisableApiTermination": {"Value": True}}, "UnsupportedOperation"),
    ]
    for args, code in refusals:
        with pytest.raises(ClientError) as e:
            ec2.modify_instance_attribute(InstanceId=iid, **args)
        assert code_of(e) == code, args
    with pytest.raises(ClientError) as e:
        attribute("nonsense")
    assert code_of(e) == "InvalidParameterValue"
    bob = api.ec2("bob")
    with pytest.raises(ClientError) as e:
        bob.describe_instance_attribute(InstanceId=iid, Attribute="instanceType")
    assert code_of(e) == "InvalidInstanceID.NotFound"
    with pytest.raises(ClientError) as e:
        bob.modify_instance_attribute(InstanceId=iid, SourceDestCheck={"Value": True})
    assert code_of(e) == "InvalidInstanceID.NotFound"
    with pytest.raises(ClientError) as e:
        bob.reboot_instances(InstanceIds=[iid])
    assert code_of(e) == "InvalidInstanceID.NotFound"
    ec2.terminate_instances(InstanceIds=[iid])
    with pytest.raises(ClientError) as e:
        ec2.reboot_instances(InstanceIds=[iid])
    assert code_of(e) == "IncorrectInstanceState"
