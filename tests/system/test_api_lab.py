"""The EC2 API on a real lab: the examples build VPCs whose instances ping each other, the AWS
CLI sees what boto3 sees, instances become VMs and terminated ones go away, and a controller
killed -9 twice during 1,000 calls loses no acknowledged change."""

import json
import random
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import botocore.exceptions
from conftest import LabFactory, LabHandle

from openvpc.lab import netns

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
EMPTY: dict[str, Any] = {"underlay": "l2", "nodes": ["a", "b"]}
IMAGE = "ami-0abcdef1234567890"
WAIT = {"Delay": 1, "MaxAttempts": 90}


def run_instance(ec2: Any, subnet: str, name: str) -> str:
    return str(
        ec2.run_instances(
            ImageId=IMAGE,
            InstanceType="t3.micro",
            MinCount=1,
            MaxCount=1,
            SubnetId=subnet,
            TagSpecifications=[
                {"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": name}]}
            ],
        )["Instances"][0]["InstanceId"]
    )


def test_examples_build_vpcs_whose_instances_ping_each_other(lab: LabFactory) -> None:
    h = lab(EMPTY)
    for tenant, argv in (
        ("cli", ["bash", str(EXAMPLES / "public-private.sh"), h.name]),
        ("sdk", [sys.executable, str(EXAMPLES / "public-private.py"), h.name]),
    ):
        done = subprocess.run(
            argv, env=h.aws_env(tenant), capture_output=True, text=True, timeout=300, check=False
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.count(" 0% packet loss") == 2, done.stdout
        assert "reach each other" in done.stdout
    # the AWS CLI prints what boto3 sees
    env = h.aws_env("cli")
    shown = subprocess.run(
        ["aws", "ec2", "describe-vpcs", "--endpoint-url", env["AWS_ENDPOINT_URL"]],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    by_cli = json.loads(shown.stdout)["Vpcs"]
    by_boto3 = h.ec2("cli").describe_vpcs()["Vpcs"]
    assert by_cli == by_boto3 and len(by_cli) == 1
    assert by_cli[0]["CidrBlock"] == "10.20.0.0/16"


def test_instances_become_vms_and_terminated_ones_go_away(lab: LabFactory) -> None:
    h = lab(EMPTY)
    ec2 = h.ec2("red")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    first, second = run_instance(ec2, subnet, "one"), run_instance(ec2, subnet, "two")
    ec2.get_waiter("instance_running").wait(InstanceIds=[first, second], WaiterConfig=WAIT)
    found = ec2.describe_instances(InstanceIds=[second])["Reservations"][0]["Instances"][0]
    namespace = h.vm_netns(first)
    assert netns.netns_exists(namespace)
    h_ok = _ping_until(h, first, found["PrivateIpAddress"])
    assert h_ok, "the two instances do not reach each other"
    ec2.terminate_instances(InstanceIds=[first])
    ec2.get_waiter("instance_terminated").wait(InstanceIds=[first], WaiterConfig=WAIT)
    assert not netns.netns_exists(namespace)  # terminated means the VM is gone


def _ping_until(h: LabHandle, vm: str, ip: str, attempts: int = 10) -> bool:
    """The new VM's DHCP lease may take a moment: ping until it answers, bounded."""
    return any(h.ping(vm, ip) for _ in range(attempts))


class Ledger:
    """What the API acknowledged: the resources that must exist and those that must not."""

    def __init__(self) -> None:
        self.subnets: dict[str, tuple[str, str]] = {}  # id -> (VPC, CIDR)
        self.deleted: set[str] = set()
        self.tags: dict[str, str] = {}  # resource -> value of tag "n"
        self.tables: dict[str, str] = {}  # route table -> VPC
        self.uncertain: set[str] = set()  # ids whose last call got no answer
        self.calls = 0
        self.unanswered = 0


def test_kill_9_of_the_controller_during_1000_calls_loses_no_acknowledged_change(
    lab: LabFactory,
) -> None:
    h = lab(EMPTY)
    ec2 = h.ec2("red", connect_timeout=2, read_timeout=20)
    vpcs = [ec2.create_vpc(CidrBlock=f"10.{n}.0.0/16")["Vpc"]["VpcId"] for n in range(3)]
    book = Ledger()
    rng = random.Random(8)
    killed: list[int] = []

    def killer() -> None:  # kills in the middle of whatever call is running at 333 and 666
        for mark in (333, 666):
            while book.calls < mark:
                time.sleep(0.001)
            killed.append(h.kill("controller"))

    thread = threading.Thread(target=killer)
    thread.start()
    free = {v: list(range(256)) for v in vpcs}
    try:
        while book.calls < 1000:
            _one_call(ec2, rng, vpcs, free, book)
            book.calls += 1
    finally:
        thread.join(timeout=60)
    assert len(killed) == 2 and book.unanswered > 0, "the controller was not caught mid-run"
    h.wait_process("controller", other_than=killed[-1])
    _until_answering(ec2)
    _check_ledger(ec2, vpcs, book)
    # forwarding follows the stored intent: a new instance runs (agents applied the store)
    subnet = next(s for s in book.subnets if s not in book.uncertain | book.deleted)
    made = run_instance(ec2, subnet, "after")
    ec2.get_waiter("instance_running").wait(InstanceIds=[made], WaiterConfig=WAIT)
    h.wait_in_sync()


def _one_call(
    ec2: Any, rng: random.Random, vpcs: list[str], free: dict[str, list[int]], book: Ledger
) -> None:
    live = [s for s in book.subnets if s not in book.deleted]
    choice = rng.random()
    target = ""
    try:
        if choice < 0.4 or not live:
            vpc = rng.choice(vpcs)
            if not free[vpc]:
                return
            n = free[vpc].pop(rng.randrange(len(free[vpc])))
            cidr = f"{vpc_prefix(vpcs, vpc)}.{n}.0/24"
            made = ec2.create_subnet(VpcId=vpc, CidrBlock=cidr)["Subnet"]
            book.subnets[made["SubnetId"]] = (vpc, made["CidrBlock"])
        elif choice < 0.65:
            target = rng.choice(live)
            ec2.delete_subnet(SubnetId=target)
            book.deleted.add(target)
        elif choice < 0.85:
            target = rng.choice(live)
            value = str(book.calls)
            ec2.create_tags(Resources=[target], Tags=[{"Key": "n", "Value": value}])
            book.tags[target] = value
        elif choice < 0.95 or not book.tables:
            vpc = rng.choice(vpcs)
            table = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
            book.tables[table] = vpc
        else:
            target = rng.choice(sorted(book.tables))
            ec2.delete_route_table(RouteTableId=target)
            del book.tables[target]
            book.deleted.add(target)
    except (botocore.exceptions.ConnectionError, botocore.exceptions.HTTPClientError):
        book.unanswered += 1
        if target:
            book.uncertain.add(target)
        time.sleep(0.05)  # the controller is coming back
    except botocore.exceptions.ClientError as e:
        # a change that was applied but never acknowledged may make a retry meaningless
        code = e.response["Error"]["Code"]
        assert code in (
            "InvalidSubnetID.NotFound",
            "InvalidRouteTableID.NotFound",
            "InvalidSubnet.Conflict",
        ), e
        if code != "InvalidSubnet.Conflict":
            assert target in book.uncertain, e


def vpc_prefix(vpcs: list[str], vpc: str) -> str:
    return f"10.{vpcs.index(vpc)}"


def _until_answering(ec2: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            ec2.describe_vpcs()
            return
        except botocore.exceptions.BotoCoreError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _check_ledger(ec2: Any, vpcs: list[str], book: Ledger) -> None:
    subnets = {
        s["SubnetId"]: s
        for page in ec2.get_paginator("describe_subnets").paginate()
        for s in page["Subnets"]
    }
    for sid, (vpc, cidr) in book.subnets.items():
        if sid in book.uncertain:
            continue
        if sid in book.deleted:
            assert sid not in subnets, f"deleted subnet {sid} is back"
        else:
            assert (subnets[sid]["VpcId"], subnets[sid]["CidrBlock"]) == (vpc, cidr)
            if sid in book.tags:
                tags = {t["Key"]: t["Value"] for t in subnets[sid].get("Tags", [])}
                assert tags["n"] == book.tags[sid]
    tables = {
        t["RouteTableId"]: t
        for page in ec2.get_paginator("describe_route_tables").paginate()
        for t in page["RouteTables"]
    }
    for tid, vpc in book.tables.items():
        assert tables[tid]["VpcId"] == vpc
    for tid in book.deleted & set(tables):
        assert tid in book.uncertain, f"deleted route table {tid} is back"
    # nothing half made: every VPC has its main table, default group and network ACL, and
    # every subnet one network ACL
    for vpc in vpcs:
        assert any(
            a.get("Main") for t in tables.values() if t["VpcId"] == vpc for a in t["Associations"]
        )
        groups = ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [vpc]}])
        assert [g["GroupName"] for g in groups["SecurityGroups"]] == ["default"]
    acls = ec2.describe_network_acls()["NetworkAcls"]
    associated = [a["SubnetId"] for acl in acls for a in acl.get("Associations", [])]
    assert sorted(associated) == sorted(subnets)
