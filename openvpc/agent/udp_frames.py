"""UDP over IPv4 over Ethernet as the agent's proxies read requests and write answers."""

from typing import NamedTuple

from openvpc.packet.errors import Malformed
from openvpc.packet.ethernet import ETH_P_IP, build_ethernet, parse_ethernet
from openvpc.packet.ipv4 import PROTO_UDP, build_ipv4, parse_ipv4
from openvpc.packet.l4 import UDP_LEN, build_udp, parse_udp


class UdpFrame(NamedTuple):
    src_mac: bytes
    dst_mac: bytes
    src_ip: bytes
    dst_ip: bytes
    sport: int
    dport: int
    payload: bytes


def parse_udp_frame(frame: bytes) -> UdpFrame:
    """Read an untagged Ethernet frame carrying one whole (unfragmented) UDP datagram.

    The UDP checksum is not verified: a VM's kernel may hand a TAP a partial checksum.
    """
    eth = parse_ethernet(frame)
    if eth.vlan is not None:
        raise Malformed("vlan_tagged")
    if eth.ethertype != ETH_P_IP:
        raise Malformed("not_ipv4")
    ip = parse_ipv4(frame, eth.offset)
    if ip.proto != PROTO_UDP:
        raise Malformed("not_udp")
    if ip.is_fragment:
        raise Malformed("fragment")
    packet = frame[eth.offset : eth.offset + ip.total_length]
    udp = parse_udp(packet, ip.header_len)
    start = ip.header_len + UDP_LEN
    payload = packet[start : ip.header_len + udp.length]
    return UdpFrame(eth.src, eth.dst, ip.src, ip.dst, udp.sport, udp.dport, payload)


def build_udp_frame(
    dst_mac: bytes,
    src_mac: bytes,
    src_ip: bytes,
    dst_ip: bytes,
    sport: int,
    dport: int,
    payload: bytes,
) -> bytes:
    """An Ethernet frame with an IPv4/UDP datagram, both checksums filled in."""
    udp = build_udp(src_ip, dst_ip, sport, dport, payload)
    return build_ethernet(dst_mac, src_mac, ETH_P_IP, build_ipv4(src_ip, dst_ip, PROTO_UDP, udp))
