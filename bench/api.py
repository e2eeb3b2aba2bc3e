"""Benchmark: EC2 API calls per second through the real HTTP server (waitress, SigV4, botocore
parsing, one store transaction per change), against the same service calls made directly in
the same run (the baseline: what HTTP, signing and XML cost on top).

Run with `python -m bench.api [--seconds 3] [--runs 3] [--clients 1 4] [--json FILE]`.
Workloads, interleaved run by run, each for `--seconds`:
  write:    CreateSubnet then DeleteSubnet in a VPC (two calls, two transactions);
  describe: DescribeSubnets of a VPC holding 50 subnets (one page).
With `--lab`, as root, it also brings up a two-node lab and measures RunInstances to
`running` (the agent made the VM and every node applied its routes) for `--instances`
instances one after another, then tears the lab down.
Medians over runs are reported; nothing here asserts anything about timing.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from bench.pipeline import machine
from openvpc.api.app import ApiApp
from openvpc.api.instant import InstantRuntime
from openvpc.api.server import ApiServer
from openvpc.service import Service
from openvpc.store import Store

REGION = "us-east-1"
SUBNETS = 50


class Bed:
    """A store with one tenant, a VPC of SUBNETS subnets, and the API served on loopback."""

    def __init__(self, path: Path) -> None:
        self.service = Service(Store(path))
        self.service.register_node("node1", "172.16.0.1")
        self.service.create_tenant("bench")
        self.key = self.service.create_tenant_key("bench")
        self.vpc = self.service.create_vpc("bench", "bench", "10.0.0.0/16").id
        for n in range(SUBNETS):
            self.service.create_subnet("bench", self.vpc, f"s{n}", f"10.0.{n}.0/24")
        app = ApiApp(self.service, InstantRuntime(self.service), REGION)
        self.server = ApiServer(app, "127.0.0.1:0")
        self.server.start()
        host, port = self.server.address
        self.url = f"http://{host}:{port}"

    def client(self) -> Any:
        return boto3.client(
            "ec2",
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=self.key[0],
            aws_secret_access_key=self.key[1],
            config=Config(retries={"max_attempts": 1}),
        )

    def close(self) -> None:
        self.server.stop()
        self.service.store.close()


def rate(work: Callable[[int, int], int], clients: int, seconds: float) -> float:
    """Calls per second of `clients` threads each running work(thread, n) until time is up."""
    done = [0] * clients
    stop = time.monotonic() + seconds

    def loop(k: int) -> None:
        n = 0
        while time.monotonic() < stop:
            done[k] += work(k, n)
            n += 1

    threads = [threading.Thread(target=loop, args=(k,)) for k in range(clients)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done) / (time.monotonic() - start)


def workloads(bed: Bed, clients: int) -> dict[str, Callable[[int, int], int]]:
    ec2 = [bed.client() for _ in range(clients)]
    service = bed.service

    def api_write(k: int, n: int) -> int:
        cidr = f"10.0.{100 + k}.0/24"
        subnet = ec2[k].create_subnet(VpcId=bed.vpc, CidrBlock=cidr)["Subnet"]["SubnetId"]
        ec2[k].delete_subnet(SubnetId=subnet)
        return 2

    def api_describe(k: int, n: int) -> int:
        ec2[k].describe_subnets(Filters=[{"Name": "vpc-id", "Values": [bed.vpc]}])
        return 1

    def direct_write(k: int, n: int) -> int:
        subnet = service.create_subnet("bench", bed.vpc, "", f"10.0.{100 + k}.0/24")
        service.delete_subnet("bench", subnet.id)
        return 2

    def direct_describe(k: int, n: int) -> int:
        [s for s in service.describe_subnets("bench") if s.vpc == bed.vpc]
        return 1

    return {
        "api write": api_write,
        "api describe": api_describe,
        "service write (baseline)": direct_write,
        "service describe (baseline)": direct_describe,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--lab", action="store_true", help="also RunInstances to running")
    parser.add_argument("--instances", type=int, default=10)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    results: dict[str, Any] = {
        "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": shlex.join(["python", "-m", "bench.api", *(argv or sys.argv[1:])]),
        "machine": machine(),
        "calls_per_second": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        bed = Bed(Path(tmp) / "bench.db")
        try:
            for clients in args.clients:
                loads = workloads(bed, clients)
                samples: dict[str, list[float]] = {name: [] for name in loads}
                for _ in range(args.runs):
                    for name, work in loads.items():
                        samples[name].append(rate(work, clients, args.seconds))
                for name, values in samples.items():
                    median = statistics.median(values)
                    results["calls_per_second"][f"{name}, {clients} client(s)"] = median
                    print(f"{name:30} {clients} client(s): {median:8.1f} calls/s  {values}")
        finally:
            bed.close()
    if args.lab:
        from bench.api_lab import running_latency

        results["run_to_running_s"] = running_latency(args.instances)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
