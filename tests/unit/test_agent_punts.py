"""The punt dispatcher: routing by reason, port checks, the INJECT format, and its safety net."""

from dataclasses import replace

from agent_setup import CONFIG, PORT1, PORT5, node_config, punt_of
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from openvpc.agent.punts import PuntState, handle_punt
from openvpc.model.nodeconfig import NodeConfig
from openvpc.vrouter.punt import AGENT_HDR, Punt, build_punt, parse_punt

DISCOVER = bytes(
    Ether(src=PORT1.mac, dst="ff:ff:ff:ff:ff:ff")
    / IP(src="0.0.0.0", dst="255.255.255.255")
    / UDP(sport=68, dport=67)
    / BOOTP(chaddr=bytes.fromhex(PORT1.mac.replace(":", "")), xid=1)
    / DHCP(options=[("message-type", "discover"), "end"])
)


def reason_of(data: bytes, config: NodeConfig = CONFIG) -> str:
    outcome = handle_punt(data, config, PuntState(), 0.0)
    if outcome.reason.startswith("punt_") or outcome.reason.endswith(("_vif", "_mismatch")):
        assert not outcome.acted
    return outcome.reason


def test_short_agent_header() -> None:
    assert reason_of(b"\x00\x02\x00") == "punt_short_agent_header"


def test_unknown_and_unhandled_reasons_are_counted() -> None:
    assert reason_of(build_punt(77, PORT1.vif, 1, DISCOVER)) == "punt_unknown_reason"
    assert reason_of(build_punt(Punt.RESOLVE, PORT1.vif, 1, DISCOVER)) == "punt_unhandled_resolve"
    assert reason_of(build_punt(Punt.INJECT, PORT1.vif, 1, DISCOVER)) == "punt_unhandled_inject"


def test_port_punts_need_a_known_vif_in_its_own_vrf() -> None:
    assert reason_of(build_punt(Punt.DHCP, 42, 1, DISCOVER)) == "dhcp_unknown_vif"
    assert reason_of(build_punt(Punt.DNS, 42, 1, DISCOVER)) == "dns_unknown_vif"
    assert reason_of(build_punt(Punt.ARP, PORT5.vif, 1, DISCOVER)) == "arp_vrf_mismatch"
    assert reason_of(build_punt(Punt.DHCP, PORT1.vif, 2, DISCOVER)) == "dhcp_vrf_mismatch"


def test_answers_come_back_as_inject_packets_for_the_port() -> None:
    outcome = handle_punt(punt_of(Punt.DHCP, PORT1, DISCOVER), CONFIG, PuntState(), 0.0)
    assert outcome.reason == "dhcp_offer"
    (packet,) = outcome.inject_packets()
    header, frame = parse_punt(packet)
    assert (header.reason, header.vif, header.vrf) == (Punt.INJECT, PORT1.vif, 0)
    assert frame == outcome.injects[0][1]
    assert Ether(frame)[BOOTP].yiaddr == PORT1.ip


def test_the_index_follows_the_config_it_is_given() -> None:
    state = PuntState()
    punt = punt_of(Punt.DHCP, PORT1, DISCOVER)
    assert handle_punt(punt, CONFIG, state, 0.0).reason == "dhcp_offer"
    without_vm1 = replace(CONFIG, ports=CONFIG.ports[1:], generation=2)
    assert handle_punt(punt, without_vm1, state, 1.0).reason == "dhcp_unknown_vif"
    assert state.index is not None and state.index.config is without_vm1


def test_a_handler_bug_costs_one_frame_not_the_worker() -> None:
    broken = replace(PORT1, mtu=None)  # type: ignore[arg-type]
    config = replace(node_config(), ports=(broken,))
    outcome = handle_punt(punt_of(Punt.DHCP, PORT1, DISCOVER), config, PuntState(), 0.0)
    assert outcome.reason == "agent_handler_error"
    assert "TypeError" in outcome.detail
    assert not outcome.acted


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_random_punts_never_raise(data: bytes) -> None:
    outcome = handle_punt(data, CONFIG, PuntState(), 0.0)
    assert outcome.reason != "agent_handler_error", outcome.detail


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(list(Punt)), st.integers(0, 6), st.integers(0, 3), st.binary(max_size=200))
def test_random_frames_under_every_reason_never_raise(
    reason: Punt, vif: int, vrf: int, frame: bytes
) -> None:
    outcome = handle_punt(AGENT_HDR.pack(reason, vif, vrf) + frame, CONFIG, PuntState(), 0.0)
    assert outcome.reason != "agent_handler_error", outcome.detail
