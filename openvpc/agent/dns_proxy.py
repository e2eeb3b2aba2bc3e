"""The VPC's DNS server at base+2: A and PTR records of one routing instance, never recursion.

A name matches with or without the VPC's domain, in any case, with or without the final dot.
Unknown names in the domain get NXDOMAIN, other names REFUSED; garbage with a readable header
gets FORMERR and garbage without one gets nothing.
"""

import ipaddress
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from openvpc.agent.outcome import Outcome
from openvpc.agent.udp_frames import build_udp_frame, parse_udp_frame
from openvpc.model.forwarding import VROUTER_MAC
from openvpc.model.nodeconfig import DnsRecord, PortConfig
from openvpc.packet.errors import Malformed
from openvpc.packet.ethernet import mac_from_str

DNS_PORT = 53
TTL = 60
HEADER = struct.Struct("!HHHHHH")
QR = 0x8000
PLAIN_UDP_LIMIT = 512  # RFC 1035, without EDNS
IP_UDP_HEADERS = 28
REVERSE_ZONE = dns.name.from_text("in-addr.arpa.")


@dataclass(frozen=True, slots=True)
class Zone:
    """One routing instance's records: names (lower case, no final dot) <-> addresses."""

    addresses: dict[str, tuple[str, ...]]
    names: dict[str, tuple[str, ...]]

    @classmethod
    def of(cls, records: Iterable[DnsRecord], vrf: int) -> "Zone":
        addresses: dict[str, list[str]] = {}
        names: dict[str, list[str]] = {}
        for record in records:
            if record.vrf != vrf:  # DNS is scoped to a VPC: another tenant's names never show
                continue
            name = record.name.lower().rstrip(".")
            addresses.setdefault(name, []).append(record.ip)
            names.setdefault(record.ip, []).append(name)
        return cls(
            {k: tuple(sorted(set(v))) for k, v in addresses.items()},
            {k: tuple(sorted(set(v))) for k, v in names.items()},
        )


class _Port(NamedTuple):
    """What the server needs of a port, parsed once per query."""

    mac: bytes
    server: bytes
    subnet: ipaddress.IPv4Network
    domain: dns.name.Name | None
    mtu: int

    @classmethod
    def of(cls, port: PortConfig) -> "_Port":
        return cls(
            mac_from_str(port.mac),
            ipaddress.IPv4Address(port.dns).packed,
            ipaddress.IPv4Network(f"{port.ip}/{port.prefix_len}", strict=False),
            dns.name.from_text(port.domain) if port.domain.strip(".") else None,
            port.mtu,
        )


def handle_dns(frame: bytes, port: PortConfig, zone: Zone, now: float) -> Outcome:
    """Answer one DNS query the VM on `port.vif` sent to the VPC's DNS address."""
    del now  # answers do not depend on the clock
    try:
        query = parse_udp_frame(frame)
    except Malformed as e:
        return Outcome(f"dns_{e.reason}")
    if query.dport != DNS_PORT:
        return Outcome("dns_not_dns")
    try:
        me = _Port.of(port)
    except (ValueError, dns.exception.DNSException) as e:
        return Outcome("dns_bad_port_config", detail=str(e))
    if query.src_mac != me.mac:
        return Outcome("dns_src_mac_mismatch")
    if query.dst_ip != me.server:
        return Outcome("dns_not_our_server")
    reason, answer = _respond(query.payload, me, zone)
    if answer is None:
        return Outcome(reason)
    reply = build_udp_frame(
        query.src_mac, VROUTER_MAC, query.dst_ip, query.src_ip, DNS_PORT, query.sport, answer
    )
    return Outcome(reason, injects=((port.vif, reply),))


def _header_only(wire: bytes, rcode: int) -> bytes:
    """A reply carrying only a header: for queries dnspython cannot or need not read."""
    ident, flags = struct.unpack_from("!HH", wire)
    opcode_rd = flags & 0x7900  # the opcode and RD bits are copied back
    return HEADER.pack(ident, QR | opcode_rd | rcode, 0, 0, 0, 0)


def _respond(wire: bytes, port: _Port, zone: Zone) -> tuple[str, bytes | None]:
    """(reason, DNS reply or None) for one DNS message."""
    if len(wire) < HEADER.size:
        return "dns_short", None
    flags = struct.unpack_from("!H", wire, 2)[0]
    if flags & QR:  # never answer an answer: two resolvers must not ping-pong
        return "dns_not_a_query", None
    if dns.opcode.from_flags(flags) != dns.opcode.QUERY:
        return "dns_notimp", _header_only(wire, dns.rcode.NOTIMP)
    try:
        message = dns.message.from_wire(wire)
    except Exception:  # dnspython raises many exception types on hostile input
        return "dns_formerr", _header_only(wire, dns.rcode.FORMERR)
    response = dns.message.make_response(message)
    response.flags &= ~dns.flags.RA  # we do not recurse
    if len(message.question) != 1:
        response.set_rcode(dns.rcode.FORMERR)
        return "dns_formerr", _wire(response, message, port)
    reason = _answer(response, message.question[0], port, zone)
    return reason, _wire(response, message, port)


def _answer(
    response: dns.message.Message, question: dns.rrset.RRset, port: _Port, zone: Zone
) -> str:
    """Fill `response` for `question`; returns the reason to count."""
    qname, qtype = question.name, question.rdtype
    if question.rdclass != dns.rdataclass.IN:
        response.set_rcode(dns.rcode.REFUSED)
        return "dns_refused"
    if qname.is_subdomain(REVERSE_ZONE):
        return _answer_reverse(response, qname, qtype, port, zone)
    domain = port.domain
    addresses = zone.addresses.get(_key(qname))
    if addresses is None and domain is not None and not qname.is_subdomain(domain):
        try:
            addresses = zone.addresses.get(_key(qname.relativize(dns.name.root) + domain))
        except dns.name.NameTooLong:
            addresses = None
    if addresses is not None:
        response.flags |= dns.flags.AA
        if qtype in (dns.rdatatype.A, dns.rdatatype.ANY):
            response.answer.append(dns.rrset.from_text_list(qname, TTL, "IN", "A", list(addresses)))
            return "dns_answer"
        return "dns_nodata"  # the name exists, without records of that type
    if (domain is not None and qname.is_subdomain(domain)) or len(qname.labels) == 2:
        # a single label is a name in our domain written without it
        response.flags |= dns.flags.AA
        response.set_rcode(dns.rcode.NXDOMAIN)
        return "dns_nxdomain"
    response.set_rcode(dns.rcode.REFUSED)
    return "dns_refused"


def _answer_reverse(
    response: dns.message.Message,
    qname: dns.name.Name,
    qtype: int,
    port: _Port,
    zone: Zone,
) -> str:
    address = _reverse_address(qname)
    names = zone.names.get(address) if address is not None else None
    if names is not None:
        response.flags |= dns.flags.AA
        if qtype in (dns.rdatatype.PTR, dns.rdatatype.ANY):
            targets = [f"{name}." for name in names]
            response.answer.append(dns.rrset.from_text_list(qname, TTL, "IN", "PTR", targets))
            return "dns_answer"
        return "dns_nodata"
    if address is not None and ipaddress.IPv4Address(address) in port.subnet:
        response.flags |= dns.flags.AA
        response.set_rcode(dns.rcode.NXDOMAIN)
        return "dns_nxdomain"
    response.set_rcode(dns.rcode.REFUSED)
    return "dns_refused"


def _key(name: dns.name.Name) -> str:
    return name.to_text(omit_final_dot=True).lower()


def _reverse_address(qname: dns.name.Name) -> str | None:
    """The address of a full d.c.b.a.in-addr.arpa name, or None for anything else."""
    labels = qname.labels
    if len(labels) != 7:  # four octets, in-addr, arpa, root
        return None
    octets = []
    for label in reversed(labels[:4]):
        if not label.isdigit() or len(label) > 3 or int(label) > 255:
            return None
        octets.append(str(int(label)))
    return ".".join(octets)


def _wire(response: dns.message.Message, query: dns.message.Message, port: _Port) -> bytes:
    """The response in wire format, truncated (TC) to what the client said it can take."""
    limit = query.payload if query.edns >= 0 else PLAIN_UDP_LIMIT
    limit = max(PLAIN_UDP_LIMIT, min(limit, port.mtu - IP_UDP_HEADERS))
    try:
        return response.to_wire(max_size=limit)
    except dns.exception.TooBig:
        response.answer = []
        response.flags |= dns.flags.TC
        return response.to_wire(max_size=limit)
