"""Learning addresses from gratuitous ARP: scapy GARPs in, reports (or reasons) out, with the
dedup record passed explicitly; one GARP goes through the real pipeline first."""

from agent_setup import CONFIG, PORT1, PORT2, REMOTE_NH, VIP, node_config, punt_of, vip_route
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Packet
from vrouter_setup import AGENT_VIF, VM1, build_node

from openvpc.agent.arp_learn import RETRY_SECONDS, Claim, Claims, handle_arp
from openvpc.agent.config_index import ConfigIndex
from openvpc.agent.outcome import Learned
from openvpc.agent.punts import PuntState, handle_punt
from openvpc.model.nodeconfig import NodeConfig
from openvpc.vrouter.pipeline import process
from openvpc.vrouter.punt import Punt, parse_punt

INDEX = ConfigIndex(CONFIG)
LEARNED = (Learned("eni-3", VIP),)


def garp(
    ip: str = VIP, op: int = 1, sha: str = PORT1.mac, src: str = PORT1.mac, tpa: str | None = None
) -> Packet:
    return Ether(src=src, dst="ff:ff:ff:ff:ff:ff") / ARP(
        op=op, hwsrc=sha, psrc=ip, hwdst="00:00:00:00:00:00", pdst=ip if tpa is None else tpa
    )


def run(
    frame: Packet | bytes,
    claims: Claims | None = None,
    now: float = 100.0,
    index: ConfigIndex = INDEX,
) -> tuple[str, tuple[Learned, ...], Claims]:
    outcome, after = handle_arp(bytes(frame), PORT1, index, claims or {}, now)
    assert outcome.injects == () and outcome.flows == ()
    return outcome.reason, outcome.learned, after


def test_garp_request_for_an_allowed_address_is_reported_once() -> None:
    reason, learned, claims = run(garp())
    assert (reason, learned) == ("arp_learn", LEARNED)
    assert claims == {("eni-3", VIP): Claim(f"nh:{REMOTE_NH}:100", 100.0)}
    reason, learned, again = run(garp(), claims, now=101.0)
    assert (reason, learned) == ("arp_learn_pending", ())
    assert again == claims


def test_garp_reply_counts_too() -> None:
    assert run(garp(op=2))[:2] == ("arp_learn", LEARNED)


def test_nothing_to_report_once_the_config_shows_the_address_here() -> None:
    here = ConfigIndex(node_config(vip_route("encap:3")))
    _, _, claims = run(garp())
    reason, learned, after = run(garp(), claims, 101.0, here)
    assert (reason, learned) == ("arp_learn_current", ())
    assert after == {}  # settled: the record forgets it


def test_reported_again_when_the_config_shows_it_moved_since() -> None:
    """vm1 claimed the VIP, then vm2 took it over: vm1 claiming it back is news again."""
    _, _, claims = run(garp())
    at_vm2 = ConfigIndex(node_config(vip_route("encap:4")))
    reason, learned, after = run(garp(), claims, 102.0, at_vm2)
    assert (reason, learned) == ("arp_learn", LEARNED)
    assert after[("eni-3", VIP)] == Claim("vif:4", 102.0)


def test_reported_again_after_the_retry_interval() -> None:
    """A report lost while the controller was away is repeated, at most once per interval."""
    _, _, claims = run(garp())
    assert run(garp(), claims, 100.0 + RETRY_SECONDS - 1)[0] == "arp_learn_pending"
    assert run(garp(), claims, 100.0 + RETRY_SECONDS)[:2] == ("arp_learn", LEARNED)


def test_unrelated_claims_are_kept_and_stale_ones_dropped() -> None:
    other = {
        ("eni-9", "10.0.1.200"): Claim(None, 95.0),
        ("eni-8", "10.0.1.201"): Claim(None, 100.0 - RETRY_SECONDS),
    }
    _, _, claims = run(garp(), other)
    assert set(claims) == {("eni-9", "10.0.1.200"), ("eni-3", VIP)}


def test_spoofed_sender_mac_is_refused() -> None:
    assert run(garp(sha="02:00:00:09:99:99"))[:2] == ("arp_sha_mismatch", ())
    assert run(garp(src="02:00:00:09:99:99"))[:2] == ("arp_sha_mismatch", ())


def test_addresses_the_port_may_not_claim_are_refused() -> None:
    for ip in ("10.0.1.4", "10.0.1.101", "192.168.0.1"):
        assert run(garp(ip))[:2] == ("arp_learn_not_allowed", ()), ip
    assert run(garp(PORT1.ip))[:2] == ("arp_own_address", ())
    # vm2 may claim nothing: its GARP for the VIP is refused
    frame = bytes(garp(sha=PORT2.mac, src=PORT2.mac))
    outcome, _ = handle_arp(frame, PORT2, INDEX, {}, 100.0)
    assert (outcome.reason, outcome.learned) == ("arp_learn_not_allowed", ())


def test_probes_and_ordinary_arp_are_not_claims() -> None:
    assert run(garp(ip="0.0.0.0", tpa=VIP))[:2] == ("arp_probe", ())
    assert run(garp(ip=VIP, tpa="10.0.1.50"))[:2] == ("arp_not_gratuitous", ())


def test_malformed_frames_are_counted() -> None:
    frame = bytes(garp())
    for cut in range(len(frame)):
        reason, learned, claims = run(frame[:cut])
        assert learned == () and claims == {}, cut
        assert reason in ("arp_short_ethernet", "arp_short_arp"), (cut, reason)
    not_ipv4 = Ether(src=PORT1.mac) / ARP(ptype=0x86DD, psrc=VIP, pdst=VIP, hwsrc=PORT1.mac)
    assert run(not_ipv4)[0] == "arp_arp_not_ipv4_ethernet"
    assert run(Ether(src=PORT1.mac, type=0x0800) / bytes(28))[0] == "arp_not_arp"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80))
def test_random_frames_never_raise(frame: bytes) -> None:
    state = PuntState()
    outcome = handle_punt(punt_of(Punt.ARP, PORT1, frame), CONFIG, state, 0.0)
    assert outcome.reason != "agent_handler_error", outcome.detail
    assert outcome.injects == ()


def test_garp_through_the_pipeline_and_the_dispatcher() -> None:
    """vm1's GARP is punted by the vRouter; the dispatcher keeps the claim in its state."""
    tables = build_node(1)
    out = process(tables, bytes(garp()), VM1.vif, 1.0)
    assert [vif for vif, _ in out] == [AGENT_VIF]
    assert parse_punt(out[0][1])[0].reason == Punt.ARP
    state = PuntState()
    first = handle_punt(out[0][1], CONFIG, state, 1.0)
    second = handle_punt(out[0][1], CONFIG, state, 2.0)
    assert (first.reason, first.learned) == ("arp_learn", LEARNED)
    assert (second.reason, second.learned) == ("arp_learn_pending", ())
    moved: NodeConfig = node_config(vip_route("encap:3"), generation=2)
    assert handle_punt(out[0][1], moved, state, 3.0).reason == "arp_learn_current"
    assert state.claims == {}
