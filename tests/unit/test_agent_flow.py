"""First-packet flow policy: keys computed from scapy-built packets, and proof that they are the
pipeline's keys: installing them releases the held packet and the reply hits the reverse flow."""

from dataclasses import replace
from typing import Any

from agent_setup import CONFIG, PORT1, PORT2, PORT5, punt_of
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Packet
from vrouter_setup import (
    AGENT_VIF,
    FABRIC_VIF,
    NODES,
    VM1,
    VM2,
    VM4,
    VNI,
    build_node,
    vxlan_frame,
)

from openvpc.agent.config_index import ConfigIndex
from openvpc.agent.flow_policy import Direction, FlowFacts, decide, handle_flow_miss
from openvpc.agent.outcome import FlowKeyText, FlowRequest, FlowVerdict
from openvpc.agent.punts import PuntState, handle_punt
from openvpc.model.forwarding import VROUTER_MAC, FlowKey
from openvpc.model.nodeconfig import PortConfig
from openvpc.packet.ipv4 import ip_to_bytes
from openvpc.vrouter.flow import FlowAction
from openvpc.vrouter.pipeline import install_flow, process
from openvpc.vrouter.punt import Punt, parse_punt
from openvpc.vrouter.tables import Tables

INDEX = ConfigIndex(CONFIG)
GW = VROUTER_MAC.hex(":")


def from_vm1(l4: Packet | bytes, dst: str = "10.0.1.4", **ip: Any) -> Packet:
    return Ether(src=PORT1.mac, dst=GW) / IP(src=PORT1.ip, dst=dst, **ip) / l4


def flow_of(frame: Packet | bytes, in_vif: int = PORT1.vif, vrf: int = 1) -> FlowRequest:
    outcome = handle_flow_miss(bytes(frame), in_vif, vrf, INDEX, 0.0)
    assert outcome.reason == "flow_forward"
    assert len(outcome.flows) == 1
    return outcome.flows[0]


def test_tcp_first_packet() -> None:
    flow = flow_of(from_vm1(TCP(sport=40000, dport=80, flags="S")))
    assert flow.key == (1, 6, "10.0.1.3", "10.0.1.4", 40000, 80)
    assert flow.reverse == (1, 6, "10.0.1.4", "10.0.1.3", 80, 40000)
    assert flow.action == "forward"
    assert flow.fields() == {
        "key": [1, 6, "10.0.1.3", "10.0.1.4", 40000, 80],
        "reverse": [1, 6, "10.0.1.4", "10.0.1.3", 80, 40000],
        "action": "forward",
    }


def test_udp_first_packet() -> None:
    flow = flow_of(from_vm1(UDP(sport=5353, dport=5001) / b"x", dst="10.0.1.9"))
    assert flow.key == (1, 17, "10.0.1.3", "10.0.1.9", 5353, 5001)
    assert flow.reverse == (1, 17, "10.0.1.9", "10.0.1.3", 5001, 5353)


def test_icmp_echo_keys_on_the_identifier_both_ways() -> None:
    flow = flow_of(from_vm1(ICMP(type=8, id=0x77, seq=3)))
    assert flow.key == (1, 1, "10.0.1.3", "10.0.1.4", 0x77, 0x77)
    assert flow.reverse == (1, 1, "10.0.1.4", "10.0.1.3", 0x77, 0x77)


def test_icmp_error_keys_on_type_and_code() -> None:
    flow = flow_of(from_vm1(ICMP(type=3, code=1) / bytes(28)))
    assert flow.key[4:] == (3, 1)


def test_fragments_have_no_ports() -> None:
    first = from_vm1(UDP(sport=1, dport=2) / bytes(40), flags="MF")
    assert flow_of(first).key == (1, 17, "10.0.1.3", "10.0.1.4", 0, 0)
    later = from_vm1(bytes(16), proto=17, frag=5)
    assert flow_of(later).key == (1, 17, "10.0.1.3", "10.0.1.4", 0, 0)


def test_other_protocols_have_no_ports() -> None:
    flow = flow_of(from_vm1(bytes(20), proto=47))
    assert flow.key == (1, 47, "10.0.1.3", "10.0.1.4", 0, 0)


def test_policy_sees_egress_of_the_sender_and_ingress_of_the_receiver() -> None:
    asked: list[tuple[str, Direction]] = []

    def no_ssh_into_vm2(facts: FlowFacts, port: PortConfig, direction: Direction) -> FlowVerdict:
        asked.append((port.interface_id, direction))
        closed = port is PORT2 and direction is Direction.INGRESS and facts.dport == 22
        return "drop" if closed else "forward"

    ssh = from_vm1(TCP(sport=40001, dport=22, flags="S"))
    outcome = handle_flow_miss(bytes(ssh), PORT1.vif, 1, INDEX, 0.0, no_ssh_into_vm2)
    assert outcome.reason == "flow_drop"
    assert outcome.flows[0].action == "drop"
    assert outcome.flows[0].reverse == (1, 6, "10.0.1.4", "10.0.1.3", 22, 40001)
    assert asked == [("eni-3", Direction.EGRESS), ("eni-4", Direction.INGRESS)]
    web = from_vm1(TCP(sport=40002, dport=80, flags="S"))
    assert handle_flow_miss(bytes(web), PORT1.vif, 1, INDEX, 0.0, no_ssh_into_vm2).reason == (
        "flow_forward"
    )


def test_ports_without_policy_are_not_asked() -> None:
    facts = FlowFacts(1, 6, "10.0.1.3", "10.0.1.4", 1, 2, False)
    unpoliced = replace(PORT2, policy=False)

    def drop_all(facts: FlowFacts, port: PortConfig, direction: Direction) -> FlowVerdict:
        return "drop"

    assert decide(facts, None, unpoliced, drop_all) == "forward"
    assert decide(facts, PORT1, unpoliced, drop_all) == "drop"


def test_bad_punts_install_nothing() -> None:
    frame = bytes(from_vm1(TCP(sport=1, dport=2)))
    cases = {
        "flow_unknown_vif": handle_flow_miss(frame, 9, 1, INDEX, 0.0),
        "flow_vrf_mismatch": handle_flow_miss(frame, PORT5.vif, 1, INDEX, 0.0),
        "flow_not_ipv4": handle_flow_miss(bytes(Ether(src=PORT1.mac) / bytes(40)), 3, 1, INDEX, 0),
        "flow_short_l4": handle_flow_miss(bytes(from_vm1(b"", proto=6)), 3, 1, INDEX, 0.0),
    }
    for reason, outcome in cases.items():
        assert (outcome.reason, outcome.flows) == (reason, ())
    for cut in range(len(frame)):
        assert handle_flow_miss(frame[:cut], 3, 1, INDEX, 0.0).flows == ()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120), st.integers(min_value=0, max_value=6))
def test_random_frames_never_raise(frame: bytes, vif: int) -> None:
    data = punt_of(Punt.FLOW_MISS, PORT1, frame)[:2] + vif.to_bytes(2, "big") + bytes(4)
    outcome = handle_punt(data + frame, CONFIG, PuntState(), 0.0)
    assert outcome.reason != "agent_handler_error", outcome.detail


def _bytes_key(key: FlowKeyText) -> FlowKey:
    vrf, proto, src, dst, sport, dport = key
    return (vrf, proto, ip_to_bytes(src), ip_to_bytes(dst), sport, dport)


def install(tables: Tables, punt: bytes, now: float) -> list[tuple[int, bytes]]:
    """What the agent and the vRouter's `flow` op do together with one punt."""
    outcome = handle_punt(punt, CONFIG, PuntState(), now)
    assert outcome.reason == "flow_forward"
    (flow,) = outcome.flows
    assert flow.reverse is not None
    action = FlowAction(flow.action)
    return install_flow(tables, _bytes_key(flow.key), action, now, _bytes_key(flow.reverse))


def test_keys_match_the_pipeline_for_a_local_flow() -> None:
    tables = build_node(1, policy=True)
    syn = bytes(from_vm1(TCP(sport=40000, dport=80, flags="S")))
    out = process(tables, syn, VM1.vif, 1.0)
    assert [vif for vif, _ in out] == [AGENT_VIF]
    assert parse_punt(out[0][1])[0].reason == Punt.FLOW_MISS
    released = install(tables, out[0][1], 1.0)
    assert [vif for vif, _ in released] == [VM2.vif]
    assert Ether(released[0][1])[TCP].dport == 80
    # the answer hits the reverse flow: no second punt
    synack = Ether(src=PORT2.mac, dst=GW) / IP(src=PORT2.ip, dst=PORT1.ip)
    synack /= TCP(sport=80, dport=40000, flags="SA")
    assert [vif for vif, _ in process(tables, bytes(synack), VM2.vif, 2.0)] == [VM1.vif]
    assert tables.drops.total() == 0


def test_keys_match_the_pipeline_for_a_flow_from_the_fabric() -> None:
    """A first packet from node 2 is punted with the fabric vif and its inner packet."""
    tables = build_node(1, policy=True)
    inner = Ether(src=VM4.mac.hex(":"), dst=GW) / IP(src="10.0.1.9", dst=PORT1.ip)
    inner /= ICMP(type=8, id=5, seq=1)
    out = process(tables, vxlan_frame(NODES[2], NODES[1], VNI, bytes(inner)), FABRIC_VIF, 1.0)
    assert [vif for vif, _ in out] == [AGENT_VIF]
    header, _ = parse_punt(out[0][1])
    assert (header.reason, header.vif) == (Punt.FLOW_MISS, FABRIC_VIF)
    released = install(tables, out[0][1], 1.0)
    assert [vif for vif, _ in released] == [VM1.vif]
    reply = Ether(src=PORT1.mac, dst=GW) / IP(src=PORT1.ip, dst="10.0.1.9")
    reply /= ICMP(type=0, id=5, seq=1)
    assert [vif for vif, _ in process(tables, bytes(reply), VM1.vif, 2.0)] == [FABRIC_VIF]
    assert tables.drops.total() == 0
