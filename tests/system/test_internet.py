"""The way out on a real lab, driven through boto3 (docs/internet.md): an instance with an
Elastic IP in a subnet routed to an attached internet gateway fetches the internet's web page
(whose log names the EIP) and the internet reaches it; without the route or the address it
is neither; re-associating the EIP moves it. On both datapaths."""

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import LabFactory, LabHandle, wait_for_line
from ec2kit import ICMP_FROM_ANYWHERE, default_group

from openvpc.lab import internet, nsexec
from openvpc.lab.real import ebpf_refusal

IMAGE = "ami-0abcdef1234567890"
WAIT = {"Delay": 1, "MaxAttempts": 90}
WEB = "198.51.100.254"  # the internet host: the pool's last host (model/internet.py)
INTERNET_VM = "internet"  # its namespace's name as its agent reports it
PORT = 7400
# answers one connection with the address it came from
SERVER = f"""
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", {PORT}))
s.listen(1)
print("listening", flush=True)
s.settimeout(30)
c, peer = s.accept()
c.sendall(peer[0].encode())
c.close()
"""
CLIENT = f"""
import socket, sys
c = socket.create_connection((sys.argv[1], {PORT}), timeout=10)
print(c.recv(100).decode(), flush=True)
"""


def topology(datapath: str) -> dict[str, Any]:
    return {"underlay": "l2", "nodes": ["gw", "b"], "internet": "gw", "datapath": datapath}


def launch(ec2: Any, subnet: str, node: str) -> str:
    return str(
        ec2.run_instances(
            ImageId=IMAGE,
            InstanceType="t3.micro",
            MinCount=1,
            MaxCount=1,
            SubnetId=subnet,
            Placement={"HostId": node},
        )["Instances"][0]["InstanceId"]
    )


def fetch(h: LabHandle, vm: str, attempts: int = 1) -> bool:
    """Whether `vm` gets the internet's web page (a few tries for a fresh lease)."""
    argv = ["curl", "-s", "-m", "3", f"http://{WEB}/"]
    for _ in range(attempts):
        done = h.exec(vm, argv, timeout=10)
        if done.returncode == 0 and "hello from the internet" in done.stdout:
            return True
    return False


def reached(h: LabHandle, address: str, attempts: int = 1) -> bool:
    """Whether the internet namespace's ping to `address` is answered."""
    return any(h.ping(INTERNET_VM, address, count=1, wait=2) for _ in range(attempts))


def connect_in(h: LabHandle, vm: str, public: str) -> str:
    """The address a TCP server in `vm` sees a connection from the internet to `public` come
    from ("" when none came)."""
    server = nsexec.popen(
        h.vm_netns(vm),
        [sys.executable, "-c", SERVER],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_line(server, "listening")
        done = h.exec(INTERNET_VM, [sys.executable, "-c", CLIENT, public], timeout=20)
        return done.stdout.strip() if done.returncode == 0 else ""
    finally:
        server.kill()
        server.wait(timeout=10)


def web_log(h: LabHandle) -> str:
    return internet.log_path(Path(h.started.state_dir)).read_text()


def settle(h: LabHandle) -> None:
    """Until every node applied the controller's latest change."""
    h.wait_in_sync(timeout=30)
    time.sleep(0.5)


def scenario(h: LabHandle) -> None:
    ec2 = h.ec2("red")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    public = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    private = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.2.0/24")["Subnet"]["SubnetId"]
    igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc)
    table = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
    ec2.create_route(RouteTableId=table, DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)
    ec2.associate_route_table(RouteTableId=table, SubnetId=public)
    ec2.authorize_security_group_ingress(
        GroupId=default_group(ec2, vpc), IpPermissions=[ICMP_FROM_ANYWHERE]
    )
    # one instance on the gateway node, the others behind the fabric
    first = launch(ec2, public, "b")
    second = launch(ec2, public, "gw")
    hidden = launch(ec2, private, "b")
    ec2.get_waiter("instance_running").wait(InstanceIds=[first, second, hidden], WaiterConfig=WAIT)
    eip = ec2.allocate_address(Domain="vpc")
    other = ec2.allocate_address(Domain="vpc")
    ec2.associate_address(AllocationId=eip["AllocationId"], InstanceId=first)
    ec2.associate_address(AllocationId=other["AllocationId"], InstanceId=hidden)
    settle(h)

    # with the route and the address: out (the server sees the EIP) and in
    assert fetch(h, first, attempts=10), "the EIP instance does not reach the internet"
    assert f"{eip['PublicIp']} " in web_log(h)
    assert reached(h, eip["PublicIp"], attempts=3), "the internet does not reach the EIP"
    # TCP in: refused by the default group until a rule lets it in, then the source is kept
    assert connect_in(h, first, eip["PublicIp"]) == ""
    ec2.authorize_security_group_ingress(
        GroupId=default_group(ec2, vpc),
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": PORT,
                "ToPort": PORT,
                "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
            }
        ],
    )
    settle(h)
    assert connect_in(h, first, eip["PublicIp"]) == WEB
    # the route without the address, the address without the route: neither
    assert not fetch(h, second)
    assert not fetch(h, hidden)
    assert not reached(h, other["PublicIp"])
    assert other["PublicIp"] not in web_log(h)

    # re-association moves it at once: the second instance (on the gateway node) has it
    ec2.associate_address(
        AllocationId=eip["AllocationId"], InstanceId=second, AllowReassociation=True
    )
    settle(h)
    before = web_log(h).count(f"{eip['PublicIp']} ")
    assert fetch(h, second, attempts=3), "the EIP did not move to the second instance"
    assert web_log(h).count(f"{eip['PublicIp']} ") == before + 1
    assert not fetch(h, first)
    assert reached(h, eip["PublicIp"], attempts=3)
    # a private subnet routed out later: its address then works both ways
    ec2.create_route(
        RouteTableId=ec2.describe_route_tables(
            Filters=[
                {"Name": "vpc-id", "Values": [vpc]},
                {"Name": "association.main", "Values": ["true"]},
            ]
        )["RouteTables"][0]["RouteTableId"],
        DestinationCidrBlock="0.0.0.0/0",
        GatewayId=igw,
    )
    settle(h)
    assert fetch(h, hidden, attempts=3)
    assert f"{other['PublicIp']} " in web_log(h)
    assert reached(h, other["PublicIp"], attempts=3)


def test_internet_python(lab: LabFactory) -> None:
    scenario(lab(topology("python")))


def test_internet_ebpf(lab: LabFactory) -> None:
    why = ebpf_refusal()
    if why is not None:
        pytest.skip(f"no eBPF datapath here: {why}")
    scenario(lab(topology("ebpf")))
