"""One source of truth: the eBPF fast path decides every frame it handles as the Python
pipeline does, on the same tables (encode_tables of one NodeConfig's Tables).

Over 100,000 seeded frames of every class (valid traffic to every route kind, ARP, DHCP, DNS,
gateway pings, every encapsulation from the fabric, and malformed variants) run through
vif_in/fabric_in with BPF_PROG_TEST_RUN and through pipeline.process. When the program
decides (V_TX, V_DROP) it must agree with Python: output vif, bytes (fabric frames from byte
12), drop reason, and the counters Python moved. When it goes up (V_SLOW) the frame must go
up unchanged behind its slow_hdr; the classes the fast path must handle never go up. The
share of each verdict per class is printed (pytest -s).
"""

import os
import random
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from equiv_frames import VIF, Frame, Generator, eth
from equiv_harness import (
    VERDICT_NAMES,
    PySide,
    Tally,
    disagreement,
    load,
    report,
    scratch_net,
)
from equiv_scenario import NOW, build

from openvpc.lab import netns
from openvpc.model.forwarding import AGENT_VIF, FlowKey
from openvpc.packet.ethernet import BROADCAST, ETH_P_IP
from openvpc.packet.ipv4 import PROTO_UDP, build_ipv4
from openvpc.packet.l4 import build_udp
from openvpc.vrouter.drops import Drop
from openvpc.vrouter.ebpf import layout as L
from openvpc.vrouter.ebpf.drops import drop_id
from openvpc.vrouter.ebpf.encode import encode_flow_key
from openvpc.vrouter.flow import FlowAction
from openvpc.vrouter.limits import NodeLimits
from openvpc.vrouter.punt import Punt, build_punt

FRAMES = int(os.environ.get("EQUIV_FRAMES", "100000"))
SEED = int(os.environ.get("EQUIV_SEED", "9"))
# the bulk run: limits no frame reaches, so that only the rate-limit test meets them
BULK_LIMITS = NodeLimits(
    flow_capacity=1 << 20,
    vif_hold_limit=1 << 20,
    vif_punt_rate=1e9,
    vif_punt_burst=1 << 30,
)


_ACTION = {
    FlowAction.FORWARD: L.FlowActionKind.FORWARD,
    FlowAction.DROP: L.FlowActionKind.DROP,
    FlowAction.NAT: L.FlowActionKind.NAT,
    FlowAction.HOLD: 0,
}


@dataclass
class Run:
    tally: Tally
    bpf_drops: Counter[str]
    bpf_stats: dict[int, tuple[int, ...]]
    bpf_slow: Counter[str]
    bpf_flows: dict[bytes, tuple[int, int]]
    bpf_verdicts: dict[FlowKey, tuple[int, str]]
    py_verdicts: dict[FlowKey, tuple[int, str]]
    seconds: float


@pytest.fixture(scope="module")
def bulk() -> Iterator[Run]:
    scenario = build(BULK_LIMITS)
    frames = list(Generator(scenario, SEED).frames(FRAMES))
    with scratch_net(scenario) as net, netns.inside(net.ns):
        home = os.sched_getaffinity(0)
        obj, bpf = load(scenario, net)
        start = time.monotonic()
        try:
            os.sched_setaffinity(0, {bpf.cpu})
            py = PySide(scenario)
            tally = Tally()
            for i, frame in enumerate(frames):
                b = bpf.run(frame)
                p = py.run(frame, NOW + i * 1e-4)
                tally.add(frame, b, p, disagreement(frame, b, p))
            vifs = sorted(scenario.tables.vifs)
            run = Run(
                tally,
                bpf.drops(),
                bpf.vif_stats(vifs),
                bpf.slow(),
                bpf.flow_packets(),
                bpf.flow_verdicts(),
                {k: (_ACTION[f.action], f.by) for k, f in scenario.tables.flows.flows.items()},
                time.monotonic() - start,
            )
        finally:
            os.sched_setaffinity(0, home)
            obj.close()
    print(f"\n{FRAMES} frames (seed {SEED}) in {run.seconds:.1f} s\n{run.tally.shares()}")
    yield run


def test_decided_frames_agree_with_python(bulk: Run) -> None:
    t = bulk.tally
    if t.failures:
        kinds = "\n".join(
            f"  {n:6} {cls}: {why}" for (cls, why), n in t.failure_kinds.most_common()
        )
        pytest.fail(
            f"{sum(t.failure_kinds.values())} disagreements, by class and kind:\n{kinds}\n\n"
            "the first ones:\n" + "\n\n".join(t.failures)
        )


def test_must_handle_classes_never_go_up(bulk: Run) -> None:
    t = bulk.tally
    kinds = "\n".join(f"  {n:6} {cls}: {how}" for (cls, how), n in t.must_up_kinds.most_common())
    assert not t.must_up, (
        f"frames the fast path must decide itself went up, by class:\n{kinds}\n\nthe first "
        "ones:\n" + "\n\n".join(t.must_up)
    )


def test_enough_frames_of_every_kind(bulk: Run) -> None:
    t = bulk.tally
    assert sum(t.per_class.values()) == FRAMES
    decided = sum(n for (_, v), n in t.verdicts.items() if v in ("V_TX", "V_DROP"))
    # the test compares only what the fast path decides: most frames must be decided
    assert decided > FRAMES // 2, t.shares()


def test_drop_counters_move_as_in_python(bulk: Run) -> None:
    """ov_drops holds exactly what Python counted on the frames the fast path decided: a frame
    going up counts nothing (the slow path counts it)."""
    expected = +bulk.tally.drops
    got = +bulk.bpf_drops
    diff = {k: (got[k], expected[k]) for k in set(got) | set(expected) if got[k] != expected[k]}
    assert not diff, f"drop counters (bpf, python) that differ: {diff}"


def test_vif_counters_move_as_in_python(bulk: Run) -> None:
    """ov_vif_stats: rx, tx and drops per vif as Python moved them on the decided frames; a
    frame going up is counted by the slow path, which runs it again (counting it in the fast
    path too would count it twice in the vRouter's stats)."""
    t = bulk.tally
    wrong = []
    for vif, (rx, rx_bytes, tx, tx_bytes, drops) in bulk.bpf_stats.items():
        want = (t.rx[vif], t.rx_bytes[vif], t.tx[vif], t.tx_bytes[vif], t.vif_drops[vif])
        if (rx, rx_bytes, tx, tx_bytes, drops) != want:
            wrong.append(f"vif {vif}: bpf {(rx, rx_bytes, tx, tx_bytes, drops)}, python {want}")
    assert not wrong, "vif counters (rx, rx bytes, tx, tx bytes, drops):\n" + "\n".join(wrong)


def test_slow_counters_count_every_frame_sent_up(bulk: Run) -> None:
    assert +bulk.bpf_slow == +bulk.tally.slow


def test_flow_counters_move_as_in_python(bulk: Run) -> None:
    """Fast-path hits counted in ov_flows: the packets Python counted on the decided frames."""
    t = bulk.tally
    wrong = []
    for key in set(t.flows) | {k for k, (n, _) in bulk.bpf_flows.items() if n}:
        if isinstance(key, bytes):
            continue
        packets, _ = bulk.bpf_flows.get(encode_flow_key(key), (0, 0))
        if packets != t.flows[key]:
            wrong.append(f"{key}: bpf {packets} packets, python {t.flows[key]}")
    python_keys = {encode_flow_key(k) for k in t.flows}
    for raw, (packets, _) in bulk.bpf_flows.items():
        if packets and raw not in python_keys:
            wrong.append(f"{L.FlowKey.unpack(raw)}: bpf {packets} packets, python none")
    assert not wrong, "flow packet counters:\n" + "\n".join(wrong[:30])


def test_flows_made_carry_pythons_verdict(bulk: Run) -> None:
    """Every flow the fast path made (security groups and ACLs decided it) is the flow Python
    made for the same packets: the same action, and the same rule or entry named as its
    cause (the `by` id read back through encode's Names)."""
    wrong = [
        f"{key}: bpf {got}, python {bulk.py_verdicts.get(key)}"
        for key, got in bulk.bpf_verdicts.items()
        if bulk.py_verdicts.get(key) != got
    ]
    assert not wrong, "flow verdicts:\n" + "\n".join(wrong[:30])
    ruled = {by for _, by in bulk.bpf_verdicts.values() if by}
    assert any(by.startswith("acl-1/") for by in ruled), ruled
    assert any(by.endswith("/replies") for by in ruled), ruled
    assert any(by.startswith("sg-") for by in ruled), ruled
    assert any("no security group rule" in by for by in ruled), ruled
    # the last two of the 312 rules of CROWDED that apply to 10.5.1.6 (equiv_scenario), in the
    # seventh chunk of its entry
    assert {"sg-many/sgr-http", "sg-many/sgr-udp"} <= ruled, ruled


def test_beyond_the_chunks_new_flows_go_up(bulk: Run) -> None:
    """Where more rules apply than MAX_RULE_CHUNKS chunks hold (CROWDED for 10.5.1.7), the
    first packet goes up, and only there."""
    over = {
        v: n
        for (cls, v), n in bulk.tally.verdicts.items()
        if "_overflow_" in cls and not cls.endswith("_ttl1")
    }
    assert over and set(over) == {"V_SLOW"}, over


def test_punts_are_rate_limited_per_source() -> None:
    """burst punts from one vif go up; the next is dropped "punt_rate_limited", as in Python."""
    burst = 5
    limits = NodeLimits(vif_punt_rate=0.001, vif_punt_burst=burst)
    scenario = build(limits)
    vm = next(v for v in scenario.vms if v.attached and not v.policy)
    udp = build_udp(bytes(4), b"\xff" * 4, 68, 67, bytes(300))
    dhcp = eth(BROADCAST, vm.mac, ETH_P_IP, build_ipv4(bytes(4), b"\xff" * 4, PROTO_UDP, udp))
    frame = Frame("vm_dhcp", VIF, vm.vif, dhcp, False)
    with scratch_net(scenario) as net, netns.inside(net.ns):
        home = os.sched_getaffinity(0)
        obj, bpf = load(scenario, net)
        try:
            os.sched_setaffinity(0, {bpf.cpu})
            py = PySide(scenario)
            seen = []
            for i in range(burst + 1):
                b, p = bpf.run(frame), py.run(frame, NOW + i * 1e-3)
                why = disagreement(frame, b, p)
                assert why is None, report(frame, b, p, why)
                seen.append((b.kind, b.reason))
        finally:
            os.sched_setaffinity(0, home)
            obj.close()
    assert seen[:burst] == [(L.VerdictKind.SLOW, L.SlowReason.DHCP)] * burst
    assert seen[burst] == (L.VerdictKind.DROP, drop_id(Drop.PUNT_RATE_LIMITED))


def test_frames_from_the_slow_path_leave_by_their_vif() -> None:
    """slow_in sends what the slow path injects (slow_hdr + frame) out of the vif the header
    names, as the pipeline's agent injection does; it refuses what the pipeline refuses."""
    scenario = build(BULK_LIMITS)
    frames = list(Generator(scenario, SEED + 1).frames(2000))
    targets = [vm.vif for vm in scenario.vms if vm.attached]
    r = random.Random(SEED)
    with scratch_net(scenario) as net, netns.inside(net.ns):
        home = os.sched_getaffinity(0)
        obj, bpf = load(scenario, net)
        try:
            os.sched_setaffinity(0, {bpf.cpu})
            py = PySide(scenario)
            failures: list[str] = []
            verdicts: Counter[str] = Counter()
            for i, base in enumerate(frames):
                vif, reason, punt = r.choice(targets), L.SlowReason.INJECT, Punt.INJECT
                roll = r.random()
                if roll < 0.05:
                    vif = 99  # no such vif
                elif roll < 0.1:
                    reason, punt = L.SlowReason.ARP, Punt.ARP  # up, not down
                hdr = L.SlowHdr(bytes(6), bytes(6), L.SLOW_ETH_P, vif, reason).pack()
                b = bpf.run_slow_in(hdr + base.data)
                frame = Frame(
                    f"inject {base.cls}",
                    "agent",
                    AGENT_VIF,
                    build_punt(punt, vif, 0, base.data),
                    False,
                )
                p = py.run(frame, NOW + i * 1e-4)
                verdicts[VERDICT_NAMES.get(b.kind, "none")] += 1
                why = disagreement(frame, b, p)
                if why is None and b.kind not in (L.VerdictKind.TX, L.VerdictKind.DROP):
                    why = "slow_in neither sent nor dropped"
                if why is not None and len(failures) < 20:
                    failures.append(report(frame, b, p, why))
        finally:
            os.sched_setaffinity(0, home)
            obj.close()
    print(f"\nslow_in: {dict(verdicts)}")
    assert not failures, "\n\n".join(failures)
    assert verdicts["V_TX"] > len(frames) // 2
