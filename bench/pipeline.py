"""Micro-benchmark: frames per second through the vRouter pipeline (`pipeline.process`).

Run with `python -m bench.pipeline` (or `make bench`). Every case programs a `Tables` by hand
(fabric vif, VM vifs, one VRF, host routes, encap and tunnel next hops, labels, VNIs, VLANs, an
underlay route and neighbour), checks once that the frame is forwarded where it should be, and
then times `process()` on the same frame N times with `time.perf_counter`, R times over. Nothing
here asserts anything about timing: the numbers are printed (and written with `--json`).

A baseline is measured in the same run: a function that does a bare `struct.unpack_from` of
the Ethernet + IPv4 header and one `bytes` concatenation of a 14-byte header onto the IP packet,
the least any Python forwarder does per frame. The "x base" column is how many baseline frames
cost as much as one pipeline frame of the same size.

Sizes are IP payload sizes (the UDP header and data after the 20-byte IPv4 header): 64 and
1400 bytes, so the tenant IP packets are 84 and 1420 bytes long.
"""

import argparse
import cProfile
import datetime
import gc
import io
import json
import os
import platform
import pstats
import shlex
import statistics
import struct
import subprocess
import sys
import time
from dataclasses import asdict, dataclass

from openvpc.model.forwarding import VROUTER_MAC, Encap
from openvpc.packet.arp import ARP_REQUEST, build_arp
from openvpc.packet.ethernet import (
    BROADCAST,
    ETH_P_ARP,
    ETH_P_IP,
    ETH_P_MPLS,
    ZERO_MAC,
    build_ethernet,
)
from openvpc.packet.ipv4 import PROTO_GRE, PROTO_UDP, build_ipv4, ip_to_bytes
from openvpc.packet.l4 import build_udp
from openvpc.packet.tunnel import (
    UDP_PORT_MPLS,
    UDP_PORT_VXLAN,
    build_gre,
    build_mpls,
    build_vxlan,
)
from openvpc.vrouter import pipeline
from openvpc.vrouter.flow import FlowAction
from openvpc.vrouter.nexthop import EncapNH, TunnelNH
from openvpc.vrouter.tables import Fabric, LabelEntry, Route, Tables, Vif, VifKind, Vrf

SIZES = (64, 1400)
NOW = 1000.0
DEFAULT_FRAMES = 30_000
DEFAULT_REPEAT = 3
QUICK_FRAMES = 3_000

# -- the topology: this node (A) and one remote node (B) on a directly attached underlay ----
NODE_A_IP = ip_to_bytes("192.168.0.1")
NODE_A_MAC = bytes.fromhex("020000000001")
NODE_B_IP = ip_to_bytes("192.168.0.2")
NODE_B_MAC = bytes.fromhex("020000000002")
FABRIC_VIF = 0

VRF_ID = 1
GATEWAY_IP = ip_to_bytes("10.0.0.1")
VM_A = (1, ip_to_bytes("10.0.0.5"), bytes.fromhex("02aa00000005"))  # sender
VM_B = (2, ip_to_bytes("10.0.0.6"), bytes.fromhex("02aa00000006"))  # local receiver
VM_P = (3, ip_to_bytes("10.0.0.7"), bytes.fromhex("02aa00000007"))  # sender with policy=True
REMOTE_MAC = bytes.fromhex("02bb00000010")
# one remote VM per encapsulation, all behind node B
REMOTE_IP = {
    Encap.VXLAN: ip_to_bytes("10.0.1.10"),
    Encap.MPLSOUDP: ip_to_bytes("10.0.1.11"),
    Encap.MPLSOGRE: ip_to_bytes("10.0.1.12"),
    Encap.VLAN: ip_to_bytes("10.0.1.13"),
}
TUNNEL_NH = {Encap.VXLAN: 10, Encap.MPLSOUDP: 11, Encap.MPLSOGRE: 12, Encap.VLAN: 13}
VNI = 5001  # global per virtual network
LOCAL_LABEL = 16  # allocated by A for the VRF: what B imposes toward A
REMOTE_LABEL = 17  # allocated by B for the VRF: what A imposes toward B
VLAN_ID = 100
SPORT, DPORT = 40000, 5000
OUTER_SPORT = 50000


def build_tables() -> Tables:
    """Node A's tables, programmed by hand the way the agent would."""
    t = Tables(Fabric(FABRIC_VIF, NODE_A_IP, NODE_A_MAC))
    t.add_vrf(Vrf(VRF_ID, "blue"))
    for nh_id, (vif_id, ip, mac) in enumerate((VM_A, VM_B, VM_P), start=1):
        t.add_vif(
            Vif(
                vif_id,
                VifKind.VIRTUAL,
                f"tap{vif_id}",
                vrf=VRF_ID,
                mac=mac,
                ip=ip,
                prefix_len=24,
                gateway_ip=GATEWAY_IP,
                policy=vif_id == VM_P[0],
            )
        )
        t.add_nexthop(nh_id, EncapNH(vif_id, mac, VROUTER_MAC))
        t.add_route(VRF_ID, ip, 32, Route(nh_id, mac=mac))
    for encap, nh_id in TUNNEL_NH.items():
        t.add_nexthop(nh_id, TunnelNH(encap, NODE_B_IP))
        label = {Encap.VXLAN: VNI, Encap.VLAN: VLAN_ID}.get(encap, REMOTE_LABEL)
        t.add_route(VRF_ID, REMOTE_IP[encap], 32, Route(nh_id, label=label, mac=REMOTE_MAC))
    t.add_label(LOCAL_LABEL, LabelEntry(VRF_ID))
    t.add_vni(VNI, VRF_ID)
    t.add_vlan(VLAN_ID, VRF_ID)
    t.add_underlay_route(ip_to_bytes("192.168.0.0"), 24, None)
    t.add_neighbor(NODE_B_IP, NODE_B_MAC)
    return t


# -- frames ----------------------------------------------------------------------------
def ip_packet(src: bytes, dst: bytes, size: int) -> bytes:
    """A UDP/IPv4 packet whose IP payload (UDP header + data) is `size` bytes."""
    data = bytes(i & 0xFF for i in range(size - 8))
    return build_ipv4(src, dst, PROTO_UDP, build_udp(src, dst, SPORT, DPORT, data), df=True)


def vm_frame(vm: tuple[int, bytes, bytes], dst: bytes, size: int) -> bytes:
    """What a VM sends to an off-link or on-link destination: to the gateway MAC (L3 mode)."""
    return build_ethernet(VROUTER_MAC, vm[2], ETH_P_IP, ip_packet(vm[1], dst, size))


def fabric_frame(encap: Encap, size: int) -> bytes:
    """What node B sends node A for a packet from a remote VM to VM_A, built from the codecs."""
    inner = ip_packet(REMOTE_IP[encap], VM_A[1], size)
    if encap is Encap.VLAN:
        return build_ethernet(NODE_A_MAC, NODE_B_MAC, ETH_P_IP, inner, vlan=VLAN_ID)
    if encap is Encap.VXLAN:
        l2 = build_ethernet(VM_A[2], VROUTER_MAC, ETH_P_IP, inner)
        udp = build_udp(NODE_B_IP, NODE_A_IP, OUTER_SPORT, UDP_PORT_VXLAN, build_vxlan(VNI) + l2)
        outer = build_ipv4(NODE_B_IP, NODE_A_IP, PROTO_UDP, udp, df=True)
    elif encap is Encap.MPLSOUDP:
        mpls = build_mpls(LOCAL_LABEL) + inner
        udp = build_udp(NODE_B_IP, NODE_A_IP, OUTER_SPORT, UDP_PORT_MPLS, mpls)
        outer = build_ipv4(NODE_B_IP, NODE_A_IP, PROTO_UDP, udp, df=True)
    else:
        gre = build_gre(ETH_P_MPLS) + build_mpls(LOCAL_LABEL) + inner
        outer = build_ipv4(NODE_B_IP, NODE_A_IP, PROTO_GRE, gre, df=True)
    return build_ethernet(NODE_A_MAC, NODE_B_MAC, ETH_P_IP, outer)


def arp_request_frame() -> bytes:
    """VM_A asks for VM_B's MAC: answered by the vRouter's ARP proxy."""
    body = build_arp(ARP_REQUEST, VM_A[2], VM_A[1], ZERO_MAC, VM_B[1])
    return build_ethernet(BROADCAST, VM_A[2], ETH_P_ARP, body)


# -- cases -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    name: str
    description: str
    tables: Tables
    frame: bytes
    vif: int
    expect_vif: int  # where the single output frame must go
    expect_len: int  # and how long it must be
    size: int | None  # IP payload size; None for the ARP case
    head: bytes = b""  # what the output frame must start with (its Ethernet addresses)
    tail: bytes = b""  # and end with (the tenant IP packet, unchanged)

    def run(self, n: int) -> float:
        """Seconds for `n` calls of `pipeline.process` on this case's frame."""
        process, tables, frame, vif, now = pipeline.process, self.tables, self.frame, self.vif, NOW
        start = time.perf_counter()
        for _ in range(n):
            process(tables, frame, vif, now)
        return time.perf_counter() - start

    def check(self) -> None:
        """One frame through, before timing: a setup mistake must not be benchmarked as a drop."""
        before = sum(self.tables.drops.values())
        out = pipeline.process(self.tables, self.frame, self.vif, NOW)
        got = [(vif, len(data)) for vif, data in out]
        ok = (
            got == [(self.expect_vif, self.expect_len)]
            and sum(self.tables.drops.values()) == before
        )
        if not ok or not (out[0][1].startswith(self.head) and out[0][1].endswith(self.tail)):
            raise SystemExit(
                f"{self.name}: expected [(vif {self.expect_vif}, {self.expect_len} bytes)] "
                f"starting {self.head.hex()} and ending with the IP packet; "
                f"got {got}, drops {dict(self.tables.drops)}"
            )


_ETH_IP = struct.Struct("!6s6sHBBHHHBBH4s4s")


def minimal_forward(frame: bytes, header: bytes) -> bytes:
    """The least a Python forwarder does: unpack Ethernet + IPv4, put a new 14-byte header on."""
    _ETH_IP.unpack_from(frame, 0)
    return header + frame[14:]


@dataclass(frozen=True)
class Baseline:
    name: str
    description: str
    frame: bytes
    size: int

    def run(self, n: int) -> float:
        fwd, frame, header = minimal_forward, self.frame, self.frame[:14]
        start = time.perf_counter()
        for _ in range(n):
            fwd(frame, header)
        return time.perf_counter() - start

    def check(self) -> None:
        if minimal_forward(self.frame, self.frame[:14]) != self.frame:
            raise SystemExit(f"{self.name}: baseline does not reproduce its frame")


Bench = Case | Baseline

ENCAP_OVERHEAD = {  # outer bytes in front of the tenant IP packet, outer Ethernet included
    Encap.VXLAN: 14 + 20 + 8 + 8 + 14,
    Encap.MPLSOUDP: 14 + 20 + 8 + 4,
    Encap.MPLSOGRE: 14 + 20 + 4 + 4,
    Encap.VLAN: 14 + 4,
}


def build_cases() -> list[Bench]:
    """Every case, each with its own freshly programmed tables."""
    benches: list[Bench] = []
    for size in SIZES:
        frame = vm_frame(VM_A, VM_B[1], size)
        benches.append(
            Baseline(
                f"baseline/{size}",
                "struct.unpack_from(Eth+IPv4) + 14-byte header concatenation",
                frame,
                size,
            )
        )
    for encap in Encap:
        for size in SIZES:
            ip_len = 20 + size
            benches.append(
                Case(
                    f"encap/{encap}/{size}",
                    f"VM -> remote VM over {encap}",
                    build_tables(),
                    vm_frame(VM_A, REMOTE_IP[encap], size),
                    VM_A[0],
                    FABRIC_VIF,
                    ENCAP_OVERHEAD[encap] + ip_len,
                    size,
                    head=NODE_B_MAC + NODE_A_MAC,
                    tail=ip_packet(VM_A[1], REMOTE_IP[encap], size),
                )
            )
    for encap in Encap:
        for size in SIZES:
            benches.append(
                Case(
                    f"decap/{encap}/{size}",
                    f"fabric {encap} -> local VM",
                    build_tables(),
                    fabric_frame(encap, size),
                    FABRIC_VIF,
                    VM_A[0],
                    14 + 20 + size,
                    size,
                    head=VM_A[2] + VROUTER_MAC,
                    tail=ip_packet(REMOTE_IP[encap], VM_A[1], size),
                )
            )
    for size in SIZES:
        benches.append(
            Case(
                f"local/{size}",
                "VM -> VM on the same vRouter",
                build_tables(),
                vm_frame(VM_A, VM_B[1], size),
                VM_A[0],
                VM_B[0],
                14 + 20 + size,
                size,
                head=VM_B[2] + VROUTER_MAC,
                tail=ip_packet(VM_A[1], VM_B[1], size),
            )
        )
    for size in SIZES:
        tables = build_tables()
        src, dst = VM_P[1], REMOTE_IP[Encap.VXLAN]
        pipeline.install_flow(
            tables,
            (VRF_ID, PROTO_UDP, src, dst, SPORT, DPORT),
            FlowAction.FORWARD,
            NOW,
            reverse=(VRF_ID, PROTO_UDP, dst, src, DPORT, SPORT),
        )
        benches.append(
            Case(
                f"flow-hit/vxlan/{size}",
                "as encap/vxlan, policy=True vif, flow installed",
                tables,
                vm_frame(VM_P, dst, size),
                VM_P[0],
                FABRIC_VIF,
                ENCAP_OVERHEAD[Encap.VXLAN] + 20 + size,
                size,
                head=NODE_B_MAC + NODE_A_MAC,
                tail=ip_packet(src, dst, size),
            )
        )
    benches.append(
        Case(
            "arp-proxy",
            "ARP request from a VM answered by the vRouter",
            build_tables(),
            arp_request_frame(),
            VM_A[0],
            VM_A[0],
            42,
            None,
            head=VM_A[2] + VM_B[2],  # to the asker, from the MAC it asked for
        )
    )
    return benches


# -- measuring ---------------------------------------------------------------------------
@dataclass
class Result:
    case: str
    description: str
    frames: int
    repeat: int
    seconds: list[float]
    best_pps: float = 0.0
    median_pps: float = 0.0
    us_per_frame: float = 0.0  # of the best run
    x_baseline: float | None = None  # best pipeline time / best baseline time, same size
    size: int | None = None


def measure(bench: Bench, frames: int, repeat: int) -> Result:
    bench.check()
    bench.run(min(frames, 2000))  # warm up: templates, flow entry, specialised bytecode
    gc.collect()
    gc.disable()  # as timeit does: collections would land at random in some runs
    try:
        seconds = [bench.run(frames) for _ in range(repeat)]
    finally:
        gc.enable()
    best = min(seconds)
    return Result(
        bench.name,
        bench.description,
        frames,
        repeat,
        seconds,
        best_pps=frames / best,
        median_pps=frames / statistics.median(seconds),
        us_per_frame=best / frames * 1e6,
        size=bench.size,
    )


def relate_to_baseline(results: list[Result]) -> None:
    base = {r.size: r.us_per_frame for r in results if r.case.startswith("baseline/")}
    for r in results:
        ref = base.get(r.size if r.size is not None else SIZES[0])
        if ref:
            r.x_baseline = r.us_per_frame / ref


def render(results: list[Result]) -> str:
    head = ("case", "frames", "best pps", "median pps", "us/frame", "x base")
    rows = [
        (
            r.case,
            f"{r.frames:,}",
            f"{r.best_pps:,.0f}",
            f"{r.median_pps:,.0f}",
            f"{r.us_per_frame:.2f}",
            "" if r.x_baseline is None else f"{r.x_baseline:.1f}",
        )
        for r in results
    ]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(head)]

    def line(cells: tuple[str, ...]) -> str:
        first = cells[0].ljust(widths[0])
        rest = (c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))
        return "| " + " | ".join((first, *rest)) + " |"

    rule = "|" + "|".join(("-" * (widths[0] + 2), *(("-" * (w + 1)) + ":" for w in widths[1:])))
    return "\n".join([line(head), rule + "|", *(line(r) for r in rows)])


def _command_output(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return ""


def machine() -> dict[str, str]:
    model = ""
    for row in _command_output(["lscpu"]).splitlines():
        if row.startswith("Model name"):
            model = row.split(":", 1)[1].strip()
            break
    return {
        "uname": _command_output(["uname", "-a"]) or " ".join(platform.uname()),
        "nproc": _command_output(["nproc"]) or str(os.cpu_count()),
        "cpu": model or platform.processor(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
    }


def profile(bench: Bench, frames: int, top: int) -> str:
    """cProfile over `frames` frames of one case: the functions that dominate, by own time."""
    bench.check()
    profiler = cProfile.Profile()
    profiler.runcall(bench.run, frames)
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.strip_dirs().sort_stats("tottime").print_stats(top)
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.pipeline", description=__doc__.split("\n\n")[0] if __doc__ else ""
    )
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_FRAMES} frames per run")
    parser.add_argument("--frames", type=int, help=f"frames per run (default {DEFAULT_FRAMES})")
    parser.add_argument("--repeat", type=int, default=DEFAULT_REPEAT, help="runs per case")
    parser.add_argument("--case", action="append", help="only cases whose name has this text")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON here")
    parser.add_argument("--profile", metavar="CASE", help="cProfile one case (exact name)")
    parser.add_argument("--top", type=int, default=25, help="rows of profile output")
    args = parser.parse_args(argv)
    given = sys.argv[1:] if argv is None else argv
    frames = args.frames or (QUICK_FRAMES if args.quick else DEFAULT_FRAMES)
    if frames < 1 or args.repeat < 1:
        parser.error("--frames and --repeat must be positive")

    benches = build_cases()
    if args.profile:
        chosen = [b for b in benches if b.name == args.profile]
        if not chosen:
            parser.error(f"no case {args.profile!r}; one of: {', '.join(b.name for b in benches)}")
        print(profile(chosen[0], frames, args.top))
        return 0
    if args.case:
        benches = [b for b in benches if b.name.startswith("baseline/") or _picked(b, args.case)]

    started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    info = machine()
    print(f"# {info['python']} on {info['cpu'] or info['uname']} ({info['nproc']} CPUs)")
    print(f"# {frames:,} frames per run, best and median of {args.repeat} runs, gc off while timed")
    results: list[Result] = []
    for bench in benches:
        results.append(measure(bench, frames, args.repeat))
        print(f"  {bench.name:<22} {results[-1].best_pps:>12,.0f} pps", file=sys.stderr)
    relate_to_baseline(results)
    print(render(results))
    if args.json:
        doc = {
            "date": started,
            "command": shlex.join([sys.executable, "-m", "bench.pipeline", *given]),
            "machine": info,
            "frames": frames,
            "repeat": args.repeat,
            "gc_disabled_while_timed": True,
            "sizes_are": "IP payload bytes (UDP header + data)",
            "results": [asdict(r) for r in results],
        }
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")
    return 0


def _picked(bench: Bench, wanted: list[str]) -> bool:
    return any(w in bench.name for w in wanted)


if __name__ == "__main__":
    sys.exit(main())
