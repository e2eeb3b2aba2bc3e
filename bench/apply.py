"""Benchmark: applying a generated topology of N VMs to a store through the service layer,
exactly the calls `openvpc up` makes (nodes, fabric MTU, then `apply_topology`), with no
namespace or process. It shows whether the time grows linearly with N.

Run with `python -m bench.apply [--sizes 100 500 1000] [--runs 3] [--json FILE]`
(`make bench-apply`). Each run applies to a new SQLite file in a temporary directory; the
median of the runs is reported, in wall-clock and in CPU time of this process (CPU time moves
less when other work shares the machine). Nothing here asserts anything about timing.

The topology: 4 compute nodes; one tenant per 200 VMs, each with one VPC 10.0.0.0/16 (the
tenants' blocks overlap, as tenants' do), a /24 subnet per 50 VMs, an extra route table that
the first subnet is associated with and whose default route points at the VPC's first VM, and
a movable address on every tenth VM. VMs are spread round-robin over the nodes.
"""

import argparse
import datetime
import json
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.pipeline import machine
from openvpc.lab.topology import Topology, apply_topology, parse_topology
from openvpc.service import Service
from openvpc.store import Store

NODES = 4
PER_VPC = 200
PER_SUBNET = 50
FABRIC = "192.168.0.{}"


def generate(vms: int) -> dict[str, Any]:
    """The topology document (as a topology file would hold it) with `vms` VMs."""
    nodes = [f"node{i + 1}" for i in range(NODES)]
    tenants: list[dict[str, Any]] = []
    made = 0
    while made < vms:
        count = min(PER_VPC, vms - made)
        subnets = [
            {"name": f"s{j}", "cidr": f"10.0.{j}.0/24"}
            for j in range((count + PER_SUBNET - 1) // PER_SUBNET)
        ]
        subnets[0]["route_table"] = "edge"
        vm_list: list[dict[str, Any]] = []
        for i in range(count):
            n = made + i
            vm: dict[str, Any] = {
                "name": f"v{n}",
                "subnet": f"s{i // PER_SUBNET}",
                "node": nodes[n % NODES],
            }
            if i % 10 == 9:
                subnet = i // PER_SUBNET
                vm["allowed_addresses"] = [f"10.0.{subnet}.{200 + i % PER_SUBNET}"]
            vm_list.append(vm)
        tenants.append(
            {
                "name": f"t{len(tenants)}",
                "vpcs": [
                    {
                        "name": "prod",
                        "cidr": "10.0.0.0/16",
                        "route_tables": [
                            {
                                "name": "edge",
                                "routes": [{"destination": "0.0.0.0/0", "target": f"vm:v{made}"}],
                            }
                        ],
                        "subnets": subnets,
                        "vms": vm_list,
                    }
                ],
            }
        )
        made += count
    return {"name": "bench", "underlay": "l2", "nodes": nodes, "tenants": tenants}


def apply_once(topo: Topology) -> tuple[float, float]:
    """(wall seconds, CPU seconds) to apply `topo` to a new store, as `up` feeds it."""
    with tempfile.TemporaryDirectory(prefix="ov-bench-apply-") as tmp:
        store = Store(Path(tmp) / "openvpc.db")
        try:
            wall, cpu = time.perf_counter(), time.process_time()
            service = Service(store)
            for i, node in enumerate(topo.nodes):
                service.register_node(node, FABRIC.format(10 + i))
            service.set_fabric_mtu(topo.fabric_mtu)
            interfaces = apply_topology(service, topo, lambda vm: f"ov-bench-v-{vm}")
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        finally:
            store.close()
    if len(interfaces) != sum(1 for _ in topo.vms()):
        raise RuntimeError("not every VM got an interface")
    return wall, cpu


def measure(sizes: list[int], runs: int) -> list[dict[str, Any]]:
    rows = []
    for size in sizes:
        topo = parse_topology(generate(size))
        samples = [apply_once(topo) for _ in range(runs)]
        wall = statistics.median(s[0] for s in samples)
        cpu = statistics.median(s[1] for s in samples)
        rows.append(
            {
                "vms": size,
                "runs": runs,
                "wall_s": wall,
                "cpu_s": cpu,
                "wall_ms_per_vm": 1000 * wall / size,
                "cpu_ms_per_vm": 1000 * cpu / size,
                "wall_all_s": [s[0] for s in samples],
            }
        )
        print(f"{size} VMs: wall {wall:.3f} s, CPU {cpu:.3f} s (median of {runs})", flush=True)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| VMs | wall s (median) | CPU s (median) | wall ms/VM | CPU ms/VM | wall s, every run |",
        "|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        each = ", ".join(f"{x:.2f}" for x in r["wall_all_s"])
        lines.append(
            f"| {r['vms']} | {r['wall_s']:.3f} | {r['cpu_s']:.3f} | "
            f"{r['wall_ms_per_vm']:.2f} | {r['cpu_ms_per_vm']:.2f} | {each} |"
        )
    first, last = rows[0], rows[-1]
    if len(rows) > 1:
        lines.append("")
        wall = last["wall_s"] / first["wall_s"]
        cpu = last["cpu_s"] / first["cpu_s"]
        lines.append(
            f"ratio {last['vms']}/{first['vms']} VMs: wall {wall:.1f}x, CPU {cpu:.1f}x "
            f"(linear: {last['vms'] / first['vms']:.0f}x)"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 500, 1000])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if args.runs < 1 or any(n < 1 for n in args.sizes):
        parser.error("sizes and runs must be positive")
    started = datetime.datetime.now(datetime.UTC)
    rows = measure(args.sizes, args.runs)
    print(table(rows))
    if args.json:
        doc = {
            "started": started.isoformat(timespec="seconds"),
            "command": shlex.join([sys.executable, "-m", "bench.apply", *(argv or sys.argv[1:])]),
            "machine": machine(),
            "results": rows,
        }
        args.json.write_text(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
