"""Frames the forwarding plane answers with itself: ARP replies, ICMP echo replies and errors."""

from openvpc.packet.arp import ARP_REPLY, ARP_REQUEST, Arp, build_arp
from openvpc.packet.ethernet import BROADCAST, ETH_P_ARP, ETH_P_IP, ZERO_MAC, build_ethernet
from openvpc.packet.ipv4 import PROTO_ICMP, IPv4, build_ipv4
from openvpc.packet.l4 import (
    ICMP_DEST_UNREACH,
    ICMP_ECHO_REPLY,
    ICMP_FRAG_NEEDED,
    ICMP_TIME_EXCEEDED,
    build_icmp,
)


def arp_reply(request: Arp, answer_mac: bytes) -> bytes:
    """The reply to `request` claiming its target address for `answer_mac`."""
    body = build_arp(ARP_REPLY, answer_mac, request.tpa, request.sha, request.spa)
    return build_ethernet(request.sha, answer_mac, ETH_P_ARP, body)


def arp_request(src_mac: bytes, src_ip: bytes, target_ip: bytes) -> bytes:
    body = build_arp(ARP_REQUEST, src_mac, src_ip, ZERO_MAC, target_ip)
    return build_ethernet(BROADCAST, src_mac, ETH_P_ARP, body)


def echo_reply(packet: bytes, ip: IPv4, dst_mac: bytes, src_mac: bytes) -> bytes:
    """An ICMP echo reply to the echo request `packet`, from its destination address."""
    icmp = packet[ip.header_len : ip.total_length]
    body = build_icmp(ICMP_ECHO_REPLY, 0, icmp[4:8], icmp[8:])
    return build_ethernet(dst_mac, src_mac, ETH_P_IP, build_ipv4(ip.dst, ip.src, PROTO_ICMP, body))


def _icmp_error(
    type_: int,
    code: int,
    rest: bytes,
    packet: bytes,
    ip: IPv4,
    src_ip: bytes,
    dst_mac: bytes,
    src_mac: bytes,
) -> bytes:
    quoted = packet[: ip.header_len + 8]  # RFC 792: the header and 64 bits of data
    body = build_icmp(type_, code, rest, quoted)
    return build_ethernet(dst_mac, src_mac, ETH_P_IP, build_ipv4(src_ip, ip.src, PROTO_ICMP, body))


def frag_needed(
    packet: bytes, ip: IPv4, mtu: int, src_ip: bytes, dst_mac: bytes, src_mac: bytes
) -> bytes:
    """ICMP destination unreachable, fragmentation needed, with the next-hop MTU (RFC 1191)."""
    rest = b"\x00\x00" + mtu.to_bytes(2, "big")
    return _icmp_error(
        ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED, rest, packet, ip, src_ip, dst_mac, src_mac
    )


def time_exceeded(packet: bytes, ip: IPv4, src_ip: bytes, dst_mac: bytes, src_mac: bytes) -> bytes:
    return _icmp_error(ICMP_TIME_EXCEEDED, 0, b"\x00" * 4, packet, ip, src_ip, dst_mac, src_mac)
