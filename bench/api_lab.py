"""RunInstances to `running` on a real lab (root): how long until the node's agent made the VM
and every node applied the change, as a client waiting on DescribeInstances sees it."""

from __future__ import annotations

import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

LAB = "benchapi"
POLL_S = 0.02
TIMEOUT_S = 60.0


def _openvpc(*args: str) -> str:
    script = Path(sys.executable).parent / "openvpc"
    done = subprocess.run(
        [str(script), *args], capture_output=True, text=True, timeout=300, check=True
    )
    return done.stdout


def _env(tenant: str) -> dict[str, str]:
    """The AWS_* variables `openvpc tenant env` prints for the tenant."""
    env: dict[str, str] = {}
    for line in _openvpc("tenant", "env", tenant, "--lab", LAB).splitlines():
        if line.startswith("export "):
            key, _, value = line[len("export ") :].partition("=")
            env[key] = shlex.split(value)[0] if value else ""
    return env


def running_latency(instances: int) -> dict[str, Any]:
    """Seconds from each RunInstances answer to the first DescribeInstances saying running."""
    with tempfile.TemporaryDirectory() as tmp:
        topo = Path(tmp) / "lab.yaml"
        topo.write_text(
            f"name: {LAB}\nunderlay: l2\nencap: vxlan\nfabric_mtu: 1500\nnodes: [node1, node2]\n"
        )
        _openvpc("up", str(topo))
        try:
            _openvpc("tenant", "create", "bench", "--lab", LAB)
            env = _env("bench")
            ec2 = boto3.client(
                "ec2",
                endpoint_url=env["AWS_ENDPOINT_URL"],
                region_name=env["AWS_DEFAULT_REGION"],
                aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
                config=Config(retries={"max_attempts": 1}),
            )
            vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
            subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
            samples = [_one(ec2, subnet) for _ in range(instances)]
        finally:
            _openvpc("down", LAB)
    return {
        "instances": instances,
        "median_s": statistics.median(samples),
        "max_s": max(samples),
        "samples_s": samples,
        "load_average": os.getloadavg()[0],
    }


def _one(ec2: Any, subnet: str) -> float:
    made = ec2.run_instances(
        ImageId="ami-0abcdef1234567890",
        InstanceType="t3.micro",
        MinCount=1,
        MaxCount=1,
        SubnetId=subnet,
    )["Instances"][0]["InstanceId"]
    start = time.monotonic()
    while time.monotonic() - start < TIMEOUT_S:
        found = ec2.describe_instances(InstanceIds=[made])["Reservations"][0]["Instances"][0]
        if found["State"]["Name"] == "running":
            return time.monotonic() - start
        time.sleep(POLL_S)
    raise RuntimeError(f"{made} was not running after {TIMEOUT_S:.0f} s")
