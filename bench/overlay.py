"""End-to-end overlay benchmark: iperf3 throughput and ping RTT between VMs on two compute
nodes of a real lab, for each encapsulation, next to the Linux kernel's own VXLAN between two
namespaces on the same underlay bridge, measured in the same run.

Run as root: `python -m bench.overlay [--seconds N] [--json FILE]` (`make bench-overlay`).
"""

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from bench.pipeline import machine
from openvpc.lab import netns, real
from openvpc.lab.kernel_vtep import KernelVtep, add_kernel_vtep
from openvpc.lab.naming import underlay_netns

LAB = "bench"
ENCAPS = ("vxlan", "mplsoudp", "mplsogre", "vlan")
VM_PREFIX = {"vxlan": "vx", "mplsoudp": "mu", "mplsogre": "mg", "vlan": "vl"}
KERNEL_VNI = 4242


def topology(encaps: tuple[str, ...]) -> dict[str, Any]:
    """One tenant per encapsulation, one VM on each node (a1 on node1, a2 on node2...)."""
    return {
        "name": LAB,
        "underlay": "l2",
        "encap": "vxlan",
        "fabric_mtu": 1500,
        "nodes": ["node1", "node2"],
        "tenants": [
            {
                "name": encap,
                "vpcs": [
                    {
                        "name": "bench",
                        "cidr": "10.0.0.0/16",
                        "encap": encap,
                        "subnets": [{"name": "s", "cidr": "10.0.1.0/24"}],
                        "vms": [
                            {"name": f"{VM_PREFIX[encap]}1", "subnet": "s", "node": "node1"},
                            {"name": f"{VM_PREFIX[encap]}2", "subnet": "s", "node": "node2"},
                        ],
                    }
                ],
            }
            for encap in encaps
        ],
    }


def _run(argv: list[str], timeout: float = 120) -> str:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=True).stdout


def _netns(ns: str, argv: list[str], timeout: float = 120) -> str:
    return _run(["ip", "netns", "exec", ns, *argv], timeout)


def measure(ns_client: str, ns_server: str, server_ip: str, seconds: int) -> dict[str, float]:
    """iperf3 TCP (one stream) client -> server, then 50 pings; Gbit/s and ms."""
    server = subprocess.Popen(
        ["ip", "netns", "exec", ns_server, "iperf3", "-s", "-p", "5299"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = ["ip", "netns", "exec", ns_client, "iperf3", "-c", server_ip, "-p", "5299"]
    report: dict[str, Any] = {}
    try:
        for _ in range(20):  # until the server listens and a whole test has run
            out = subprocess.run(
                [*client, "-t", str(seconds), "-J"],
                capture_output=True,
                text=True,
                timeout=seconds + 60,
                check=False,
            )
            try:
                report = json.loads(out.stdout)
            except ValueError:
                report = {}
            if "sum_sent" in report.get("end", {}):
                break
            time.sleep(0.3)
        else:
            raise RuntimeError(
                f"iperf3 {ns_client} -> {server_ip}: {report.get('error', out.stderr)}"
            )
    finally:
        server.kill()
        server.wait()
    end = report["end"]
    ping = _netns(ns_client, ["ping", "-n", "-q", "-c", "50", "-i", "0.02", server_ip])
    rtt = re.search(r"= ([\d.]+)/([\d.]+)/([\d.]+)", ping)
    assert rtt is not None, ping
    return {
        "gbps_sent": end["sum_sent"]["bits_per_second"] / 1e9,
        "gbps_received": end["sum_received"]["bits_per_second"] / 1e9,
        "retransmits": float(end["sum_sent"].get("retransmits", 0)),
        "rtt_avg_ms": float(rtt.group(2)),
        "rtt_max_ms": float(rtt.group(3)),
    }


@contextmanager
def kernel_vxlan_pair(bridge_ns: str) -> Iterator[tuple[str, str, str]]:
    """Two namespaces on the lab's underlay bridge, joined by kernel VXLAN devices."""
    names = [f"ov-{LAB}-kv1", f"ov-{LAB}-kv2"]
    underlay = ["192.168.0.201", "192.168.0.202"]
    overlay = ["10.99.0.1", "10.99.0.2"]
    try:
        for i, ns in enumerate(names):
            add_kernel_vtep(
                KernelVtep(
                    ns,
                    bridge_ns,
                    f"kvb{i}",
                    f"{underlay[i]}/24",
                    KERNEL_VNI,
                    underlay[1 - i],
                    f"{overlay[i]}/24",
                )
            )
        yield names[0], names[1], overlay[1]
    finally:
        for ns in names:
            netns.remove_netns(ns)


def run(seconds: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.yaml"
        path.write_text(yaml.safe_dump(topology(ENCAPS), sort_keys=False))
        real.down(LAB)
        st = real.up(path)
        try:
            results: dict[str, dict[str, float]] = {}
            ns = {vm.name: vm.netns for vm in st.vms}
            ips = {vm.name: (vm.ip or "").split("/")[0] for vm in st.vms}
            with kernel_vxlan_pair(underlay_netns(LAB, "sw")) as (a, b, b_ip):
                results["kernel vxlan (baseline)"] = measure(a, b, b_ip, seconds)
            for encap in ENCAPS:
                client, server = f"{VM_PREFIX[encap]}1", f"{VM_PREFIX[encap]}2"
                results[f"openvpc {encap}"] = measure(ns[client], ns[server], ips[server], seconds)
        finally:
            real.down(LAB)
    return {"machine": machine(), "seconds": seconds, "results": results}


def table(report: dict[str, Any]) -> str:
    lines = [
        "| path | Gbit/s sent | Gbit/s received | retransmits | RTT avg ms | RTT max ms |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, r in report["results"].items():
        lines.append(
            f"| {name} | {r['gbps_sent']:.3f} | {r['gbps_received']:.3f} |"
            f" {r['retransmits']:.0f} | {r['rtt_avg_ms']:.3f} | {r['rtt_max_ms']:.3f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    report = run(args.seconds)
    print(table(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
