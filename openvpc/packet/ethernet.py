"""Ethernet II and 802.1Q headers, and MAC address helpers."""

import struct
from typing import NamedTuple

from openvpc.packet.errors import Malformed

ETH = struct.Struct("!6s6sH")
VLAN_TAG = struct.Struct("!HH")
ETH_LEN = 14
VLAN_LEN = 4

ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
ETH_P_8021Q = 0x8100
ETH_P_MPLS = 0x8847
ETH_P_TEB = 0x6558
ETH_P_IPV6 = 0x86DD

BROADCAST = b"\xff" * 6
ZERO_MAC = b"\x00" * 6


class Ethernet(NamedTuple):
    dst: bytes
    src: bytes
    ethertype: int
    vlan: int | None
    pcp: int
    offset: int  # where the payload starts


def parse_ethernet(frame: bytes | memoryview) -> Ethernet:
    """Parse an Ethernet header with at most one 802.1Q tag."""
    if len(frame) < ETH_LEN:
        raise Malformed("short_ethernet")
    dst, src, ethertype = ETH.unpack_from(frame, 0)
    if ethertype != ETH_P_8021Q:
        return Ethernet(dst, src, ethertype, None, 0, ETH_LEN)
    if len(frame) < ETH_LEN + VLAN_LEN:
        raise Malformed("short_vlan")
    tci, inner = VLAN_TAG.unpack_from(frame, ETH_LEN)
    return Ethernet(dst, src, inner, tci & 0x0FFF, tci >> 13, ETH_LEN + VLAN_LEN)


def build_ethernet(
    dst: bytes,
    src: bytes,
    ethertype: int,
    payload: bytes = b"",
    vlan: int | None = None,
    pcp: int = 0,
) -> bytes:
    """An Ethernet frame; with `vlan` the 802.1Q tag goes before `ethertype`."""
    if vlan is None:
        return ETH.pack(dst, src, ethertype) + payload
    if not 0 <= vlan <= 0xFFF or not 0 <= pcp <= 7:
        raise ValueError(f"802.1Q VLAN id or priority out of range: {vlan}, {pcp}")
    return ETH.pack(dst, src, ETH_P_8021Q) + VLAN_TAG.pack((pcp << 13) | vlan, ethertype) + payload


def is_multicast(mac: bytes) -> bool:
    """Group (multicast or broadcast) MAC: the I/G bit of the first octet."""
    return bool(mac[0] & 1)


def mac_to_str(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


def mac_from_str(text: str) -> bytes:
    parts = text.split(":")
    if len(parts) != 6:
        raise ValueError(f"not a MAC address: {text!r}")
    return bytes(int(p, 16) for p in parts)
