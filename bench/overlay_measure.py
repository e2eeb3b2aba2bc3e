"""The overlay benchmark's measurements between two namespaces of one path: iperf3 TCP, 64-byte
UDP packets/s at the receiver, ping RTTs and new TCP connections/s; plus the pure statistics.

Every command runs through the path's `wrap` (the lab's nsexec for lab VMs, `ip netns exec`
for the baselines' namespaces); every wait is bounded.
"""

import json
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

IPERF_PORT = 5299
CONN_PORT = 5300
UDP_PAYLOAD = 64  # bytes of UDP data per datagram (the IP packet is 92 bytes)
CONNRATE = Path(__file__).with_name("connrate.py")
START_ATTEMPTS = 30  # a client retries this often while its server starts listening

Wrap = Callable[[str, Sequence[str]], list[str]]


class MeasureError(RuntimeError):
    """A measurement could not be made; the message names the path and the tool's error."""


@dataclass(frozen=True, slots=True)
class Endpoints:
    """The two ends of a path: client and server namespaces, the server's address."""

    name: str
    client_ns: str
    server_ns: str
    server_ip: str
    wrap: Wrap

    def argv(self, side: str, argv: Sequence[str]) -> list[str]:
        return self.wrap(self.client_ns if side == "client" else self.server_ns, argv)


def _iperf(ep: Endpoints, extra: list[str], seconds: float) -> dict[str, Any]:
    """One iperf3 test against a one-shot server; the client's JSON report."""
    server = subprocess.Popen(
        ep.argv("server", ["iperf3", "-s", "-1", "-p", str(IPERF_PORT)]),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = ["iperf3", "-c", ep.server_ip, "-p", str(IPERF_PORT), "-J", "-t", str(seconds)]
    report: dict[str, Any] = {}
    error = ""
    try:
        for _ in range(START_ATTEMPTS):
            out = subprocess.run(
                ep.argv("client", client + extra),
                capture_output=True,
                text=True,
                timeout=seconds + 60,
                check=False,
            )
            try:
                report = json.loads(out.stdout)
            except ValueError:
                report = {}
            if "sum_received" in report.get("end", {}):
                return report
            error = str(report.get("error", out.stderr.strip()))
            if "connect" not in error:  # only "unable to connect" means the server is not up
                break
            time.sleep(0.2)
        raise MeasureError(f"{ep.name}: iperf3 {' '.join(extra)}: {error}")
    finally:
        server.kill()
        server.wait()


def tcp_gbps(ep: Endpoints, seconds: float, streams: int) -> float:
    """iperf3 TCP with `streams` parallel streams: Gbit/s the receiver got."""
    report = _iperf(ep, ["-P", str(streams)], seconds)
    return float(report["end"]["sum_received"]["bits_per_second"]) / 1e9


def udp_pps(ep: Endpoints, seconds: float) -> float:
    """iperf3 UDP, 64-byte datagrams as fast as the sender goes: datagrams/s the receiver got."""
    report = _iperf(ep, ["-u", "-b", "0", "-l", str(UDP_PAYLOAD)], seconds)
    received = report["end"]["sum_received"]
    return float(received["bytes"]) / UDP_PAYLOAD / float(received["seconds"])


_RTT = re.compile(r"time=([\d.]+) ms")


def ping_rtts(ep: Endpoints, count: int, interval: float = 0.002) -> list[float]:
    """RTTs in ms of `count` pings `interval` seconds apart (lost ones are missing)."""
    argv = ["ping", "-n", "-c", str(count), "-i", str(interval), "-W", "1", ep.server_ip]
    out = subprocess.run(
        ep.argv("client", argv),
        capture_output=True,
        text=True,
        timeout=count * interval + 30,
        check=False,
    )
    rtts = [float(m) for m in _RTT.findall(out.stdout)]
    if not rtts:
        raise MeasureError(f"{ep.name}: no ping answered: {out.stdout[-300:]}{out.stderr}")
    return rtts


def start_conn_server(ep: Endpoints) -> "subprocess.Popen[str]":
    """The connection-rate server in the server namespace, listening when this returns."""
    proc = subprocess.Popen(
        ep.argv("server", [sys.executable, str(CONNRATE), "server", str(CONN_PORT)]),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "listening":  # it prints this once bound
        proc.kill()
        proc.wait()
        raise MeasureError(f"{ep.name}: the connection-rate server did not start")
    return proc


def conns_per_s(ep: Endpoints, seconds: float) -> dict[str, float]:
    """The connection-rate client for `seconds`: connections/s and failures."""
    argv = [sys.executable, str(CONNRATE), "client", ep.server_ip, str(CONN_PORT), str(seconds)]
    out = subprocess.run(
        ep.argv("client", argv), capture_output=True, text=True, timeout=seconds + 60, check=False
    )
    try:
        r = json.loads(out.stdout)
    except ValueError:
        raise MeasureError(f"{ep.name}: connection-rate client: {out.stderr[-300:]}") from None
    return {"conns_per_s": r["connections"] / r["seconds"], "failures": float(r["failures"])}


def wait_reachable(ep: Endpoints, timeout: float = 30.0) -> None:
    """Until one ping gets through (tunnel ARP, flows and learning settle), at most `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run(
            ep.argv("client", ["ping", "-n", "-c", "1", "-W", "1", ep.server_ip]),
            capture_output=True,
            timeout=10,
            check=False,
        )
        if out.returncode == 0:
            return
    raise MeasureError(f"{ep.name}: {ep.server_ip} unreachable for {timeout:.0f} s")


# -- pure statistics -------------------------------------------------------------------------
def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0-100) by linear interpolation between closest ranks."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summary(samples: Sequence[float]) -> dict[str, float]:
    """Median, min and max of a metric's samples."""
    return {
        "median": statistics.median(samples),
        "min": min(samples),
        "max": max(samples),
        "n": float(len(samples)),
    }
