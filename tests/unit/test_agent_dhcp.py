"""The agent's DHCP server: client messages built with scapy as dhclient sends them, answers
read back with scapy; one exchange runs through the real pipeline both ways."""

from dataclasses import replace
from typing import Any

from agent_setup import CONFIG, GATEWAY_MAC, PORT1, checksums_ok, punt_of
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Packet
from vrouter_setup import AGENT_VIF, VM1, build_node

from openvpc.agent.dhcp_server import handle_dhcp
from openvpc.agent.punts import PuntState, handle_punt
from openvpc.vrouter.pipeline import process
from openvpc.vrouter.punt import Punt, parse_punt

XID = 0x5EED1234
CLIENT_IP = "10.0.1.3"
# what isc-dhcp-client 4.4 asks for with Debian's dhclient.conf
PARAM_REQ = [1, 28, 2, 3, 15, 6, 119, 12, 44, 47, 26, 121, 42]


def client_frame(
    kind: str,
    *,
    extra: list[Any] | None = None,
    ciaddr: str = "0.0.0.0",
    flags: int = 0,
    chaddr: bytes = VM1.mac,
    src_mac: str = PORT1.mac,
    giaddr: str = "0.0.0.0",
) -> Packet:
    unicast = ciaddr != "0.0.0.0"
    options: list[Any] = [("message-type", kind), *(extra or [])]
    options += [("hostname", b"vm1"), ("param_req_list", PARAM_REQ), "end"]
    return (
        Ether(src=src_mac, dst=GATEWAY_MAC if unicast else "ff:ff:ff:ff:ff:ff")
        / IP(src=ciaddr, dst="10.0.1.1" if unicast else "255.255.255.255")
        / UDP(sport=68, dport=67)
        / BOOTP(chaddr=chaddr, xid=XID, flags=flags, ciaddr=ciaddr, giaddr=giaddr)
        / DHCP(options=options)
    )


def answer(frame: Packet | bytes) -> tuple[str, Packet | None]:
    """The server's reason and its one reply (as scapy reads it), sent back to vm1's vif."""
    outcome = handle_dhcp(bytes(frame), PORT1, 0.0)
    if not outcome.injects:
        return outcome.reason, None
    assert len(outcome.injects) == 1
    vif, reply = outcome.injects[0]
    assert vif == PORT1.vif
    assert checksums_ok(reply)
    return outcome.reason, Ether(reply)


def options_of(pkt: Packet) -> dict[str, Any]:
    return {o[0]: o[1] for o in pkt[DHCP].options if isinstance(o, tuple)}


def assert_lease_reply(pkt: Packet, kind: int) -> None:
    assert pkt[Ether].src == GATEWAY_MAC
    assert pkt[IP].src == "10.0.1.1"
    assert (pkt[UDP].sport, pkt[UDP].dport) == (67, 68)
    boot = pkt[BOOTP]
    assert boot.op == 2
    assert boot.xid == XID
    assert boot.chaddr[:6] == VM1.mac
    assert boot.yiaddr == CLIENT_IP
    opts = options_of(pkt)
    assert opts["message-type"] == kind
    assert opts["server_id"] == "10.0.1.1"
    assert opts["lease_time"] == 86400
    assert opts["renewal_time"] == 43200
    assert opts["rebinding_time"] == 75600
    assert opts["subnet_mask"] == "255.255.255.0"
    assert opts["broadcast_address"] == "10.0.1.255"
    assert opts["router"] == "10.0.1.1"
    assert opts["name_server"] == "10.0.0.2"
    assert opts["domain"] == b"ec2.internal"
    assert opts["hostname"] == b"ip-10-0-1-3"
    assert opts["interface-mtu"] == 1450


def test_discover_gets_an_offer_of_the_ports_address_unicast() -> None:
    reason, offer = answer(client_frame("discover"))
    assert reason == "dhcp_offer"
    assert offer is not None
    assert_lease_reply(offer, 2)
    assert offer[Ether].dst == PORT1.mac
    assert offer[IP].dst == CLIENT_IP
    assert offer[BOOTP].ciaddr == "0.0.0.0"


def test_discover_asking_for_another_address_still_gets_its_own() -> None:
    _, offer = answer(client_frame("discover", extra=[("requested_addr", "10.0.1.50")]))
    assert offer is not None
    assert offer[BOOTP].yiaddr == CLIENT_IP


def test_broadcast_flag_gets_a_broadcast_reply() -> None:
    _, offer = answer(client_frame("discover", flags=0x8000))
    assert offer is not None
    assert offer[Ether].dst == "ff:ff:ff:ff:ff:ff"
    assert offer[IP].dst == "255.255.255.255"
    assert offer[BOOTP].flags == 0x8000


def test_request_after_offer_is_acked() -> None:
    extra = [("server_id", "10.0.1.1"), ("requested_addr", CLIENT_IP)]
    reason, ack = answer(client_frame("request", extra=extra))
    assert reason == "dhcp_ack"
    assert ack is not None
    assert_lease_reply(ack, 5)
    assert (ack[Ether].dst, ack[IP].dst) == (PORT1.mac, CLIENT_IP)


def test_init_reboot_request_for_an_old_address_is_nakked() -> None:
    """A VM that moved asks for the address of its old lease: NAK, so it starts over."""
    reason, nak = answer(client_frame("request", extra=[("requested_addr", "10.0.2.7")]))
    assert reason == "dhcp_nak"
    assert nak is not None
    assert (nak[Ether].dst, nak[IP].dst) == ("ff:ff:ff:ff:ff:ff", "255.255.255.255")
    assert nak[BOOTP].yiaddr == "0.0.0.0"
    opts = options_of(nak)
    assert opts["message-type"] == 6
    assert opts["server_id"] == "10.0.1.1"
    assert "lease_time" not in opts


def test_request_without_any_address_is_nakked() -> None:
    reason, _ = answer(client_frame("request"))
    assert reason == "dhcp_nak"


def test_renewal_is_acked_unicast_to_ciaddr() -> None:
    reason, ack = answer(client_frame("request", ciaddr=CLIENT_IP))
    assert reason == "dhcp_ack"
    assert ack is not None
    assert (ack[Ether].dst, ack[IP].dst) == (PORT1.mac, CLIENT_IP)
    assert ack[BOOTP].ciaddr == CLIENT_IP
    assert ack[BOOTP].yiaddr == CLIENT_IP


def test_renewal_of_another_address_is_nakked() -> None:
    reason, _ = answer(client_frame("request", ciaddr="10.0.1.50", src_mac=PORT1.mac))
    assert reason == "dhcp_nak"


def test_request_for_another_server_gets_nothing() -> None:
    extra = [("server_id", "10.9.9.9"), ("requested_addr", CLIENT_IP)]
    assert answer(client_frame("request", extra=extra)) == ("dhcp_other_server", None)


def test_inform_gets_an_ack_without_a_lease() -> None:
    reason, ack = answer(client_frame("inform", ciaddr=CLIENT_IP))
    assert reason == "dhcp_inform_ack"
    assert ack is not None
    assert ack[BOOTP].yiaddr == "0.0.0.0"
    assert ack[IP].dst == CLIENT_IP
    opts = options_of(ack)
    assert opts["message-type"] == 5
    assert opts["router"] == "10.0.1.1"
    assert opts["name_server"] == "10.0.0.2"
    assert "lease_time" not in opts


def test_release_and_decline_are_ignored() -> None:
    assert answer(client_frame("release", ciaddr=CLIENT_IP)) == ("dhcp_release_ignored", None)
    extra = [("server_id", "10.0.1.1"), ("requested_addr", CLIENT_IP)]
    assert answer(client_frame("decline", extra=extra)) == ("dhcp_decline_ignored", None)


def test_spoofed_chaddr_is_refused() -> None:
    """A VM asking for an address on behalf of another MAC gets nothing."""
    frame = client_frame("discover", chaddr=bytes.fromhex("020000099999"))
    assert answer(frame) == ("dhcp_chaddr_mismatch", None)


def test_frame_from_another_mac_is_refused() -> None:
    frame = client_frame("discover", src_mac="02:00:00:09:99:99")
    assert answer(frame) == ("dhcp_src_mac_mismatch", None)


def test_relayed_request_and_server_messages_are_refused() -> None:
    assert answer(client_frame("discover", giaddr="10.0.1.9")) == ("dhcp_relayed", None)
    rogue = client_frame("offer")
    rogue[BOOTP].op = 2
    assert answer(rogue) == ("dhcp_not_a_request", None)
    plain = client_frame("offer")
    assert answer(plain) == ("dhcp_unexpected_type", None)


def test_plain_bootp_and_bad_cookie_are_refused() -> None:
    frame = bytes(client_frame("discover"))
    cookie = frame.index(b"\x63\x82\x53\x63")
    # the message type option follows the cookie: make it a pad, then END everything
    no_type = frame[: cookie + 4] + b"\xff" + bytes(len(frame) - cookie - 5)
    assert answer(fix_udp(no_type)) == ("dhcp_bootp_unsupported", None)
    bad_cookie = frame[:cookie] + b"\x00\x00\x00\x00" + frame[cookie + 4 :]
    assert answer(fix_udp(bad_cookie)) == ("dhcp_dhcp_bad_cookie", None)


def fix_udp(frame: bytes) -> bytes:
    pkt = Ether(frame)
    del pkt[UDP].chksum
    return bytes(pkt)


def test_truncated_frames_are_counted_never_answered() -> None:
    frame = bytes(client_frame("discover"))
    reasons = set()
    for cut in range(len(frame)):
        outcome = handle_dhcp(frame[:cut], PORT1, 0.0)
        assert outcome.injects == ()
        reasons.add(outcome.reason)
    assert {"dhcp_short_ethernet", "dhcp_short_ipv4"} <= reasons


def test_udp_length_past_the_ip_payload_is_malformed() -> None:
    pkt = client_frame("discover")
    pkt[UDP].len = 2000
    assert answer(pkt) == ("dhcp_udp_bad_length", None)


def test_bad_port_config_is_a_reason_not_a_crash() -> None:
    broken = replace(PORT1, ip="10.0.1")
    outcome = handle_dhcp(bytes(client_frame("discover")), broken, 0.0)
    assert (outcome.reason, outcome.injects) == ("dhcp_bad_port_config", ())


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_random_payloads_to_port_67_never_raise(payload: bytes) -> None:
    frame = (
        Ether(src=PORT1.mac, dst="ff:ff:ff:ff:ff:ff")
        / IP(src="0.0.0.0", dst="255.255.255.255")
        / UDP(sport=68, dport=67)
        / payload
    )
    outcome = handle_punt(punt_of(Punt.DHCP, PORT1, frame), CONFIG, PuntState(), 0.0)
    assert outcome.reason != "agent_handler_error", outcome.detail
    for _, reply in outcome.injects:  # whatever we answer is a well-formed DHCP reply
        assert checksums_ok(reply)
        assert Ether(reply)[BOOTP].op == 2


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=400), st.binary(min_size=1, max_size=8))
def test_corrupted_discovers_never_raise(offset: int, junk: bytes) -> None:
    frame = bytearray(bytes(client_frame("discover")))
    offset %= len(frame)
    frame[offset : offset + len(junk)] = junk
    outcome = handle_punt(punt_of(Punt.DHCP, PORT1, bytes(frame)), CONFIG, PuntState(), 0.0)
    assert outcome.reason != "agent_handler_error", outcome.detail


def test_dhcp_exchange_through_the_pipeline() -> None:
    """DISCOVER from vm1's TAP -> punt on the agent vif -> agent -> INJECT -> OFFER on vm1."""
    tables = build_node(1)
    state = PuntState()
    out = process(tables, bytes(client_frame("discover")), VM1.vif, 1.0)
    assert [vif for vif, _ in out] == [AGENT_VIF]
    header, _ = parse_punt(out[0][1])
    assert (header.reason, header.vif) == (Punt.DHCP, VM1.vif)

    outcome = handle_punt(out[0][1], CONFIG, state, 1.0)
    assert outcome.reason == "dhcp_offer"
    delivered = [f for p in outcome.inject_packets() for f in process(tables, p, AGENT_VIF, 1.0)]
    assert [vif for vif, _ in delivered] == [VM1.vif]
    offer = Ether(delivered[0][1])
    assert_lease_reply(offer, 2)
    assert checksums_ok(delivered[0][1])

    extra = [("server_id", options_of(offer)["server_id"]), ("requested_addr", offer.yiaddr)]
    request = client_frame("request", extra=extra)
    out = process(tables, bytes(request), VM1.vif, 2.0)
    outcome = handle_punt(out[0][1], CONFIG, state, 2.0)
    delivered = [f for p in outcome.inject_packets() for f in process(tables, p, AGENT_VIF, 2.0)]
    assert [vif for vif, _ in delivered] == [VM1.vif]
    assert_lease_reply(Ether(delivered[0][1]), 5)
    assert tables.drops.total() == 0
