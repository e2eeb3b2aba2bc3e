"""Instance states as the API reports them while nodes lag: pending until the VM exists and
every node of the VPC applied the launch, stopping and shutting-down until the VM is gone."""

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from apikit import NODES, REGION
from botocore.config import Config

from openvpc.api.app import ApiApp
from openvpc.api.server import ApiServer
from openvpc.service import Service
from openvpc.service.catalogue import DEFAULT_IMAGE
from openvpc.store import Store


@dataclass
class HeldRuntime:
    """Nodes that apply and make VMs only when the test says so."""

    applied: dict[str, int] = field(default_factory=dict)
    vms: set[tuple[str, str]] = field(default_factory=set)

    def acked(self, node: str) -> int | None:
        return self.applied.get(node)

    def vm_ready(self, node: str, interface_id: str) -> bool:
        return (node, interface_id) in self.vms


@dataclass
class World:
    service: Service
    runtime: HeldRuntime
    ec2: Any

    def apply_all(self) -> None:
        for node in NODES:
            self.runtime.applied[node] = self.service.revision()

    def state(self, iid: str) -> str:
        out = self.ec2.describe_instances(InstanceIds=[iid])["Reservations"]
        return str(out[0]["Instances"][0]["State"]["Name"])


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    service = Service(Store(tmp_path / "openvpc.db"))
    for name, (ip, zone) in NODES.items():
        service.register_node(name, ip, zone)
    service.create_tenant("alice")
    key, secret = service.create_tenant_key("alice")
    runtime = HeldRuntime()
    server = ApiServer(ApiApp(service, runtime, REGION), "127.0.0.1:0")
    server.start()
    host, port = server.address
    ec2 = boto3.Session(
        aws_access_key_id=key, aws_secret_access_key=secret, region_name=REGION
    ).client(
        "ec2", endpoint_url=f"http://{host}:{port}", config=Config(retries={"max_attempts": 1})
    )
    try:
        yield World(service, runtime, ec2)
    finally:
        server.stop()
        service.store.close()


def _run(world: World, subnet: str, node: str) -> tuple[str, str]:
    out = world.ec2.run_instances(
        ImageId=DEFAULT_IMAGE, MinCount=1, MaxCount=1, SubnetId=subnet, Placement={"HostId": node}
    )["Instances"][0]
    return out["InstanceId"], out["NetworkInterfaces"][0]["NetworkInterfaceId"]


def _subnet(world: World) -> str:
    vpc = world.ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    return str(world.ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"])


def test_pending_until_the_vm_exists_and_every_node_of_the_vpc_applied(world: World) -> None:
    subnet = _subnet(world)
    first, first_eni = _run(world, subnet, "node1")
    world.runtime.vms.add(("node1", first_eni))
    assert world.state(first) == "pending"  # no node applied anything yet
    world.apply_all()
    assert world.state(first) == "running"
    second, second_eni = _run(world, subnet, "node2")
    world.runtime.vms.add(("node2", second_eni))
    world.runtime.applied["node2"] = world.service.revision()
    assert world.state(second) == "pending"  # node1 runs the VPC too and has not applied it
    world.runtime.applied["node1"] = world.service.revision()
    assert world.state(second) == "running"
    world.runtime.vms.discard(("node2", second_eni))
    assert world.state(second) == "pending"  # its VM went away


def test_stopping_and_shutting_down_last_until_the_vm_is_gone(world: World) -> None:
    subnet = _subnet(world)
    iid, eni = _run(world, subnet, "node1")
    world.runtime.vms.add(("node1", eni))
    world.apply_all()
    out = world.ec2.stop_instances(InstanceIds=[iid])["StoppingInstances"][0]
    assert (out["PreviousState"]["Name"], out["CurrentState"]["Name"]) == ("running", "stopping")
    assert world.state(iid) == "stopping"
    world.runtime.vms.discard(("node1", eni))
    assert world.state(iid) == "stopped"
    out = world.ec2.start_instances(InstanceIds=[iid])["StartingInstances"][0]
    assert (out["PreviousState"]["Name"], out["CurrentState"]["Name"]) == ("stopped", "pending")
    world.runtime.vms.add(("node1", eni))
    assert world.state(iid) == "pending"  # the start's revision is not applied yet
    world.apply_all()
    assert world.state(iid) == "running"
    out = world.ec2.terminate_instances(InstanceIds=[iid])["TerminatingInstances"][0]
    assert out["CurrentState"] == {"Code": 32, "Name": "shutting-down"}
    assert world.state(iid) == "shutting-down"
    world.runtime.vms.discard(("node1", eni))
    assert world.state(iid) == "terminated"
