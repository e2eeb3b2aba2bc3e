"""Benchmark: the vRouter pipeline's CPU time for what a hostile VM sends, next to normal input.

Run with `python -m bench.hostile` (add `--results bench/RESULTS.md` to append the table with
the machine and the command). TCP super-frames of one byte count (60,000 payload bytes) as a
VM's TAP hands them over: sane ones (segment size 1398, delivered whole on the node or cut
into 43 segments at a VXLAN tunnel) and bad ones (segment sizes 1, 8 and 64, and 600, which
makes more segments than a VM may). The bad ones are dropped before any cut; the row
"unbounded" is a lower bound of what the old path cost for gso_size 64: forwarding its 938
segments one by one, without even counting the cut. Then a flood's first packets refused by
the per-vif HOLD limit, next to a packet that hits its flow. CPU time is `time.process_time`;
nothing here asserts anything about timing.
"""

import argparse
import datetime
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from bench.pipeline import REMOTE_IP, VM_A, VM_B, VM_P, build_tables, machine
from openvpc.model.forwarding import VROUTER_MAC, Encap
from openvpc.packet.ethernet import ETH_P_IP, build_ethernet
from openvpc.packet.ipv4 import PROTO_TCP, PROTO_UDP, build_ipv4
from openvpc.packet.l4 import TCP_ACK, build_tcp, build_udp
from openvpc.vrouter import pipeline
from openvpc.vrouter.flow import FlowAction
from openvpc.vrouter.limits import DEFAULT_VIF_HOLD_LIMIT
from openvpc.vrouter.superframe import process_super
from openvpc.vrouter.tables import Tables, Vif, VifKind

SIZE = 60_000
NOW = 1000.0
DEFAULT_ROUNDS = 200
AGENT_VIF = 9  # bench.pipeline's node has none: flow misses need one to be held


def tcp_frame(src: tuple[int, bytes, bytes], dst: bytes, payload: bytes, seq: int = 1) -> bytes:
    seg = build_tcp(src[1], dst, 40000, 5201, TCP_ACK, seq=seq, ack=1, payload=payload)
    ip = build_ipv4(src[1], dst, PROTO_TCP, seg, df=True)
    return build_ethernet(VROUTER_MAC, src[2], ETH_P_IP, ip)


@dataclass
class Case:
    name: str
    what: str
    bytes_in: int  # what the VM handed over, per call
    run: Callable[[Tables], int]  # one call; returns frames emitted


def super_case(name: str, what: str, dst: bytes, mss: int) -> Case:
    frame = tcp_frame(VM_A, dst, bytes(SIZE))

    def run(t: Tables) -> int:
        return len(process_super(t, frame, VM_A[0], mss, NOW))

    return Case(name, what, len(frame), run)


def unbounded_case() -> Case:
    """The old path for gso_size 64, at least: each 64-byte segment through `process`."""
    dst = REMOTE_IP[Encap.VXLAN]
    count = -(-SIZE // 64)
    segments = [tcp_frame(VM_A, dst, bytes(64), seq=1 + i * 64) for i in range(count)]

    def run(t: Tables) -> int:
        return sum(len(pipeline.process(t, f, VM_A[0], NOW)) for f in segments)

    return Case(
        "unbounded/gso64",
        f"lower bound of the old cost: {count} segments forwarded (no cut counted)",
        len(tcp_frame(VM_A, dst, bytes(SIZE))),
        run,
    )


def flood_case() -> Case:
    """First packets of new flows from a VM whose HOLD entries are at their limit."""
    dst = VM_B[1]
    frames = [
        build_ethernet(
            VROUTER_MAC,
            VM_P[2],
            ETH_P_IP,
            build_ipv4(VM_P[1], dst, PROTO_UDP, build_udp(VM_P[1], dst, port, 9, b"boom")),
        )
        for port in range(1024, 1024 + 1000)
    ]

    def run(t: Tables) -> int:
        return sum(len(pipeline.process(t, f, VM_P[0], NOW)) for f in frames)

    return Case("flood/refused x1000", "1000 new 5-tuples over the HOLD limit", 1000 * 46, run)


def flow_hit_case() -> Case:
    dst = VM_B[1]
    frame = build_ethernet(
        VROUTER_MAC,
        VM_P[2],
        ETH_P_IP,
        build_ipv4(VM_P[1], dst, PROTO_UDP, build_udp(VM_P[1], dst, 7, 9, b"boom")),
    )

    def run(t: Tables) -> int:
        return sum(len(pipeline.process(t, frame, VM_P[0], NOW)) for _ in range(1000))

    return Case("flow-hit x1000", "1000 packets of an installed flow", 1000 * 46, run)


def cases() -> list[Case]:
    local, remote = VM_B[1], REMOTE_IP[Encap.VXLAN]
    return [
        super_case("sane/local", "gso 1398, delivered whole on the node", local, 1398),
        super_case("sane/vxlan", "gso 1398, cut into 43 segments at the tunnel", remote, 1398),
        super_case("bad/gso1", "gso 1: dropped (gso_size_invalid)", remote, 1),
        super_case("bad/gso8", "gso 8: dropped (gso_size_invalid)", remote, 8),
        super_case("bad/gso64", "gso 64: dropped (gso_size_invalid)", remote, 64),
        super_case("bad/count", "gso 600, 100 segments: dropped (too many)", remote, 600),
        unbounded_case(),
        flood_case(),
        flow_hit_case(),
    ]


def prepared() -> Tables:
    """bench.pipeline's node, with the policy VM's HOLD entries at their limit and one flow."""
    t = build_tables()
    dst = VM_B[1]
    for port in range(DEFAULT_VIF_HOLD_LIMIT):
        t.flows.hold((1, PROTO_UDP, VM_P[1], dst, 60000 + port, 9), NOW, (VM_P[0], 1))
    key = (1, PROTO_UDP, VM_P[1], dst, 7, 9)
    pipeline.install_flow(t, key, FlowAction.FORWARD, NOW)
    t.add_vif(Vif(AGENT_VIF, VifKind.AGENT, "agent"))
    return t


def measure(case: Case, rounds: int) -> tuple[float, int]:
    """Best CPU seconds per call over `rounds` calls on fresh tables, and frames emitted."""
    t = prepared()
    emitted = case.run(t)  # warm up
    best = float("inf")
    for _ in range(rounds):
        t = prepared()
        start = time.process_time()
        case.run(t)
        best = min(best, time.process_time() - start)
    return best, emitted


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hostile", description=__doc__)
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS, help="calls per case")
    parser.add_argument("--results", metavar="PATH", help="append the table here (markdown)")
    args = parser.parse_args(argv)
    given = sys.argv[1:] if argv is None else argv
    info = machine()
    rows = []
    for case in cases():
        best, emitted = measure(case, max(1, args.rounds))
        rows.append(
            f"| {case.name} | {case.what} | {case.bytes_in:,} | {emitted} | {best * 1e3:.3f} |"
        )
        print(rows[-1], file=sys.stderr)
    started = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    command = shlex.join([".venv/bin/python", "-m", "bench.hostile", *given])
    with open("/proc/loadavg", encoding="ascii") as f:
        load = " ".join(f.read().split()[:3])
    text = "\n".join(
        [
            "",
            "## Hostile input: CPU time per call of the pipeline (`bench/hostile.py`)",
            "",
            f"{started}; {info['python']} on {info['cpu']} ({info['nproc']} CPUs),"
            f" `{info['uname']}`; load average {load} at the end.",
            f"Command: `{command}`. Best of {args.rounds} calls, `time.process_time`.",
            "",
            "| case | what | bytes in | frames out | CPU ms |",
            "|---|---|--:|--:|--:|",
            *rows,
            "",
        ]
    )
    print(text)
    if args.results:
        with open(args.results, "a", encoding="utf-8") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
