"""Helpers for the in-memory system tests: addresses, per-node traces, fabric decoding.

Fabric frames are decoded with scapy, an implementation independent of ours, so a test
that reads a label or a VNI from a frame checks the wire, not our own parser.
"""

import ipaddress
from collections import deque
from collections.abc import Iterator
from typing import Any

import pytest
from scapy.contrib.mpls import MPLS
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import GRE, Dot1Q, Ether
from scapy.layers.vxlan import VXLAN

import openvpc.lab.sim as sim
from openvpc.lab.sim import SimLab
from openvpc.packet.ethernet import ETH_P_ARP
from openvpc.vrouter import pipeline
from openvpc.vrouter.pipeline import Emit
from openvpc.vrouter.punt import AgentHeader
from openvpc.vrouter.tables import Tables
from openvpc.vrouter.trace import Recorder, Trace

VROUTER_MAC_STR = "00:00:5e:00:01:00"
NODE_MARK = "node"  # the stage name of the marker the per-node trace inserts


def ip(text: str) -> bytes:
    return ipaddress.IPv4Address(text).packed


def ip_str(addr: bytes) -> str:
    return str(ipaddress.IPv4Address(addr))


def mac_str(mac: bytes) -> str:
    return mac.hex(":")


def trace_by_node(lab: SimLab, monkeypatch: pytest.MonkeyPatch) -> Trace:
    """Record the pipeline in `lab`, with a ("node", name) step before each frame a node takes.

    The lab passes one recorder to every vRouter; wrapping the lab's call into the pipeline
    tells which vRouter each step belongs to without touching the pipeline.
    """
    trace = Trace()
    lab.recorder = trace
    names = {id(node.tables): node.name for node in lab.nodes.values()}
    original = pipeline.process

    def process(
        tables: Tables, frame: bytes, vif_id: int, now: float, recorder: Recorder | None = None
    ) -> list[Emit]:
        trace(NODE_MARK, names[id(tables)])
        return original(tables, frame, vif_id, now, recorder)

    monkeypatch.setattr(sim, "process", process)
    return trace


def steps_by_node(trace: Trace) -> list[tuple[str, str, str]]:
    """(node, stage, detail) for every step of a trace made by `trace_by_node`."""
    node = "?"
    out = []
    for stage, detail in trace.steps:
        if stage == NODE_MARK:
            node = detail
        else:
            out.append((node, stage, detail))
    return out


def assert_in_order(
    steps: list[tuple[str, str, str]], expected: list[tuple[str, str, str]]
) -> list[int]:
    """Each expected (node, stage, detail substring) occurs, in this order; returns indices."""
    found = []
    i = 0
    for node, stage, text in expected:
        while i < len(steps) and not (
            steps[i][0] == node and steps[i][1] == stage and text in steps[i][2]
        ):
            i += 1
        assert i < len(steps), f"missing step {node} {stage} {text!r} (in order) in:\n" + "\n".join(
            f"{n:<6} {s:<12} {d}" for n, s, d in steps
        )
        found.append(i)
        i += 1
    return found


# -- the fabric, read by scapy ------------------------------------------------------------
def fabric_packets(lab: SimLab, node: str | None = None, since: int = 0) -> list[Any]:
    """Frames sent on a fabric port (of `node`, if given; from index `since`), read by scapy."""
    return [Ether(f) for n, f in lab.fabric_frames[since:] if node is None or n == node]


def overlay_packets(lab: SimLab, node: str | None = None, since: int = 0) -> list[Any]:
    """The fabric frames that carry tenant traffic (not the underlay's own ARP)."""
    return [p for p in fabric_packets(lab, node, since) if p.type != ETH_P_ARP]


def tunnel_payload(pkt: Any) -> tuple[str, int, bytes]:
    """(encap, label or VNI or VLAN id, inner bytes) of an overlay frame, read by scapy.

    The inner bytes are an Ethernet frame (VXLAN, VLAN with the tag removed, MPLS in the L2
    modes) or an IP packet (MPLS in L3 mode); `inner_ether` tells them apart.
    """
    if Dot1Q in pkt:  # 802.1Q on the L2 underlay: the frame itself, tagged
        raw = bytes(pkt)
        return "vlan", int(pkt[Dot1Q].vlan), raw[:12] + raw[16:]
    outer = pkt[IP]
    if outer.proto == 47:
        gre = outer[GRE]
        assert gre.proto == 0x8847, "GRE must carry MPLS"
        mpls = MPLS(bytes(gre.payload))
        assert mpls.s == 1, "one label, bottom of stack"
        return "mplsogre", int(mpls.label), bytes(mpls.payload)
    udp = outer[UDP]
    if udp.dport == 6635:
        mpls = MPLS(bytes(udp.payload))
        assert mpls.s == 1
        return "mplsoudp", int(mpls.label), bytes(mpls.payload)
    assert udp.dport == 4789, f"unexpected overlay UDP port {udp.dport}"
    vx = VXLAN(bytes(udp.payload))
    assert vx.flags & 0x08, "VXLAN I flag"
    return "vxlan", int(vx.vni), bytes(vx.payload)


def inner_ether(inner: bytes) -> Any:
    """The tunnel payload as an Ethernet frame (an IP packet gets a dummy Ethernet header)."""
    if inner[0] >> 4 == 4:  # IPv4 directly under the label (the test MACs never start 0x4_)
        return Ether(type=0x0800) / IP(inner)
    return Ether(inner)


def inner_frames(lab: SimLab, node: str | None = None) -> Iterator[tuple[str, int, bytes]]:
    """Tunnel payloads of every overlay frame."""
    for pkt in overlay_packets(lab, node):
        yield tunnel_payload(pkt)


# -- playing the agent ----------------------------------------------------------------------
def deliver(lab: SimLab, node: str, emits: list[Emit]) -> None:
    """Send what a vRouter emitted (e.g. packets released by a flow install) through the lab.

    The lab has no public entry for frames that come from a vRouter outside `run()`, so this
    drives its own delivery step, exactly as `run()` does, until the network is quiet.
    """
    queue = deque(lab._from_node(lab.nodes[node], emits))
    while queue:
        device, port, frame = queue.popleft()
        queue.extend(lab._deliver(device, port, frame))
    lab.run()  # whatever the VMs queued in answer


def agent_allows(lab: SimLab, node: str, header: AgentHeader, frame: bytes) -> None:
    """Play the agent for a flow miss on `node`: allow both directions, deliver what it frees."""
    if isinstance(lab.recorder, Trace):
        lab.recorder(NODE_MARK, node)  # the released packets run on `node` first
    deliver(lab, node, lab.allow_flow(lab.nodes[node], header, frame))
