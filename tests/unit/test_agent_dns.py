"""The agent's DNS server: queries built with scapy, answers read back with scapy and checked
against the VPC's records; other tenants' names never answer; garbage never raises."""

from typing import Any

from agent_setup import CONFIG, DNS_IP, GATEWAY_MAC, PORT1, PORT5, checksums_ok, punt_of
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Packet
from vrouter_setup import AGENT_VIF, RECEIVE_NH, VM1, VRF, build_node

from openvpc.agent.dns_proxy import Zone, handle_dns
from openvpc.agent.punts import PuntState, handle_punt
from openvpc.model.nodeconfig import DnsRecord, PortConfig
from openvpc.packet.ipv4 import ip_to_bytes
from openvpc.vrouter.pipeline import process
from openvpc.vrouter.punt import Punt, parse_punt
from openvpc.vrouter.tables import Route

NOERROR, FORMERR, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 3, 4, 5
SPORT = 43210


def query_frame(
    payload: Packet | bytes, p: PortConfig = PORT1, dst: str = DNS_IP, dport: int = 53
) -> Packet:
    return (
        Ether(src=p.mac, dst=GATEWAY_MAC)
        / IP(src=p.ip, dst=dst)
        / UDP(sport=SPORT, dport=dport)
        / payload
    )


def ask(
    qname: str, qtype: str = "A", p: PortConfig = PORT1, **dns: Any
) -> tuple[str, Packet | None]:
    query = DNS(id=0x4242, rd=1, qd=DNSQR(qname=qname, qtype=qtype), **dns)
    return send(query_frame(query, p), p)


def send(frame: Packet | bytes, p: PortConfig = PORT1) -> tuple[str, Packet | None]:
    """Through the dispatcher, so the port's VRF picks the zone as in the agent."""
    outcome = handle_punt(punt_of(Punt.DNS, p, frame), CONFIG, PuntState(), 0.0)
    if not outcome.injects:
        return outcome.reason, None
    assert len(outcome.injects) == 1
    vif, reply = outcome.injects[0]
    assert vif == p.vif
    assert checksums_ok(reply)
    pkt = Ether(reply)
    assert (pkt[Ether].src, pkt[Ether].dst) == (GATEWAY_MAC, p.mac)
    assert (pkt[IP].src, pkt[IP].dst) == (DNS_IP, p.ip)
    assert (pkt[UDP].sport, pkt[UDP].dport) == (53, SPORT)
    assert pkt[DNS].qr == 1
    assert pkt[DNS].ra == 0
    return outcome.reason, pkt


def a_records(pkt: Packet) -> list[str]:
    return sorted(str(rr.rdata) for rr in pkt[DNS].an if rr.type == 1)


def test_a_query_for_a_vm_name() -> None:
    reason, pkt = ask("r1.ec2.internal")
    assert reason == "dns_answer"
    assert pkt is not None
    d = pkt[DNS]
    assert (d.id, d.rcode, d.aa, d.rd) == (0x4242, NOERROR, 1, 1)
    assert a_records(pkt) == ["10.0.1.3"]
    assert d.an[0].rrname == b"r1.ec2.internal."
    assert d.an[0].ttl == 60


def test_names_match_in_any_case_with_or_without_domain_and_final_dot() -> None:
    for name in ("R1.EC2.Internal.", "r1", "R1.", "i-3", "ip-10-0-1-3.ec2.internal", "r2"):
        reason, pkt = ask(name)
        assert reason == "dns_answer", name
        assert pkt is not None
        want = "10.0.1.4" if name == "r2" else "10.0.1.3"
        assert a_records(pkt) == [want], name
        # the question comes back as asked (resolvers using 0x20 case randomisation check it)
        assert pkt[DNS].qd[0].qname.decode().rstrip(".") == name.rstrip(".")


def test_remote_vm_name_answers_too() -> None:
    _, pkt = ask("r4.ec2.internal")
    assert pkt is not None and a_records(pkt) == ["10.0.1.9"]


def test_other_record_types_of_a_known_name_are_empty_answers() -> None:
    reason, pkt = ask("r1.ec2.internal", "AAAA")
    assert reason == "dns_nodata"
    assert pkt is not None
    assert (pkt[DNS].rcode, pkt[DNS].ancount, pkt[DNS].aa) == (NOERROR, 0, 1)


def test_unknown_name_in_our_domain_is_nxdomain() -> None:
    for name in ("nope.ec2.internal", "nope", "ec2.internal"):
        reason, pkt = ask(name)
        assert reason == "dns_nxdomain", name
        assert pkt is not None
        assert (pkt[DNS].rcode, pkt[DNS].ancount) == (NXDOMAIN, 0)


def test_names_outside_our_domain_are_refused() -> None:
    for name in ("www.example.com", "r1.ec2.internal.evil.org", "example.com"):
        reason, pkt = ask(name)
        assert reason == "dns_refused", name
        assert pkt is not None
        assert (pkt[DNS].rcode, pkt[DNS].ancount) == (REFUSED, 0)


def test_another_tenants_names_never_answer() -> None:
    """blue's `secret` is not red's, though both VPCs use ec2.internal and overlap."""
    reason, pkt = ask("secret.ec2.internal")
    assert reason == "dns_nxdomain"
    assert pkt is not None and pkt[DNS].ancount == 0
    _, pkt = ask("secret.ec2.internal", p=PORT5)
    assert pkt is not None and a_records(pkt) == ["10.0.1.77"]
    _, pkt = ask("r2.ec2.internal", p=PORT5)  # red's r2 is unknown in blue
    assert pkt is not None and pkt[DNS].rcode == NXDOMAIN


def test_reverse_lookup_of_our_records() -> None:
    reason, pkt = ask("3.1.0.10.in-addr.arpa", "PTR")
    assert reason == "dns_answer"
    assert pkt is not None
    names = sorted(rr.rdata.decode() for rr in pkt[DNS].an)
    assert names == ["i-3.ec2.internal.", "ip-10-0-1-3.ec2.internal.", "r1.ec2.internal."]
    _, pkt = ask("77.1.0.10.in-addr.arpa", "PTR")  # blue's address, asked from red
    assert pkt is not None and (pkt[DNS].rcode, pkt[DNS].ancount) == (NXDOMAIN, 0)
    _, pkt = ask("8.8.8.8.in-addr.arpa", "PTR")
    assert pkt is not None and pkt[DNS].rcode == REFUSED
    _, pkt = ask("1.0.10.in-addr.arpa", "PTR")  # not a host address
    assert pkt is not None and pkt[DNS].rcode == REFUSED


def test_edns_query_gets_an_edns_answer() -> None:
    from scapy.layers.dns import DNSRROPT

    reason, pkt = ask("r1.ec2.internal", ar=DNSRROPT(rclass=1232))
    assert reason == "dns_answer"
    assert pkt is not None and a_records(pkt) == ["10.0.1.3"]
    assert any(rr.type == 41 for rr in pkt[DNS].ar)


def test_answer_too_big_for_udp_is_truncated() -> None:
    records = [
        DnsRecord(1, "big.ec2.internal", f"10.0.{i // 250}.{i % 250 + 1}") for i in range(60)
    ]
    zone = Zone.of(records, 1)
    query = DNS(id=7, rd=1, qd=DNSQR(qname="big.ec2.internal", qtype="A"))
    outcome = handle_dns(bytes(query_frame(query)), PORT1, zone, 0.0)
    pkt = Ether(outcome.injects[0][1])
    assert (pkt[DNS].tc, pkt[DNS].ancount) == (1, 0)
    assert len(pkt[UDP].payload) <= 512


def test_garbage_with_a_header_gets_formerr() -> None:
    junk = bytes.fromhex("beef0100") + bytes.fromhex("0001000000000000") + b"\x40zzz"
    reason, pkt = send(query_frame(junk))
    assert reason == "dns_formerr"
    assert pkt is not None
    assert (pkt[DNS].id, pkt[DNS].rcode, pkt[DNS].qdcount) == (0xBEEF, FORMERR, 0)


def test_two_questions_get_formerr() -> None:
    query = DNS(id=9, qd=DNSQR(qname="r1.ec2.internal") / DNSQR(qname="r2.ec2.internal"))
    reason, pkt = send(query_frame(query))
    assert reason == "dns_formerr"
    assert pkt is not None and pkt[DNS].rcode == FORMERR


def test_other_opcodes_get_notimp() -> None:
    query = DNS(id=10, opcode=5, qd=DNSQR(qname="r1.ec2.internal"))  # UPDATE
    reason, pkt = send(query_frame(query))
    assert reason == "dns_notimp"
    assert pkt is not None and (pkt[DNS].rcode, pkt[DNS].opcode) == (NOTIMP, 5)


def test_what_we_cannot_reply_to_gets_nothing() -> None:
    assert send(query_frame(b"\x01\x02\x03")) == ("dns_short", None)
    response = DNS(id=11, qr=1, qd=DNSQR(qname="r1.ec2.internal"), an=DNSRR(rrname="x"))
    assert send(query_frame(response)) == ("dns_not_a_query", None)


def test_queries_to_other_addresses_or_ports_get_nothing() -> None:
    query = DNS(id=12, qd=DNSQR(qname="r1.ec2.internal"))
    assert send(query_frame(query, dst="10.0.1.1")) == ("dns_not_our_server", None)
    assert send(query_frame(query, dport=5353)) == ("dns_not_dns", None)
    spoofed = query_frame(query)
    spoofed[Ether].src = "02:00:00:09:99:99"
    assert send(spoofed) == ("dns_src_mac_mismatch", None)


def test_truncated_frames_never_answer() -> None:
    frame = bytes(query_frame(DNS(id=13, qd=DNSQR(qname="r1.ec2.internal"))))
    for cut in range(len(frame)):
        reason, pkt = send(frame[:cut])
        assert pkt is None, (cut, reason)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_random_payloads_never_raise(payload: bytes) -> None:
    outcome = handle_punt(punt_of(Punt.DNS, PORT1, query_frame(payload)), CONFIG, PuntState(), 0)
    assert outcome.reason != "agent_handler_error", outcome.detail
    for _, reply in outcome.injects:
        assert checksums_ok(reply)
        assert Ether(reply)[DNS].qr == 1


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=60), st.binary(min_size=1, max_size=6))
def test_corrupted_queries_never_raise(offset: int, junk: bytes) -> None:
    wire = bytearray(bytes(DNS(id=14, rd=1, qd=DNSQR(qname="r1.ec2.internal", qtype="A"))))
    offset %= len(wire)
    wire[offset : offset + len(junk)] = junk
    outcome = handle_punt(
        punt_of(Punt.DNS, PORT1, query_frame(bytes(wire))), CONFIG, PuntState(), 0
    )
    assert outcome.reason != "agent_handler_error", outcome.detail


def test_dns_query_through_the_pipeline() -> None:
    """A query to base+2 from vm1's TAP is punted, answered, and injected back to vm1."""
    tables = build_node(1)
    tables.add_route(VRF, ip_to_bytes(DNS_IP), 32, Route(RECEIVE_NH))
    query = query_frame(DNS(id=15, rd=1, qd=DNSQR(qname="r2", qtype="A")))
    out = process(tables, bytes(query), VM1.vif, 1.0)
    assert [vif for vif, _ in out] == [AGENT_VIF]
    assert parse_punt(out[0][1])[0].reason == Punt.DNS
    outcome = handle_punt(out[0][1], CONFIG, PuntState(), 1.0)
    delivered = [f for p in outcome.inject_packets() for f in process(tables, p, AGENT_VIF, 1.0)]
    assert [vif for vif, _ in delivered] == [VM1.vif]
    assert a_records(Ether(delivered[0][1])) == ["10.0.1.4"]
