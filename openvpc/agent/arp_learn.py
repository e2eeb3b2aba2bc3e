"""Addresses a VM claims by gratuitous ARP (a VIP taking over), to report to the controller.

Each (interface, address) is reported once, then again only when the config shows the address
somewhere else than when we reported it, or after RETRY_SECONDS if the report had no effect
(the controller may have been unreachable). The record of what was reported is explicit state:
the caller passes it in and keeps what comes back.
"""

from collections.abc import Mapping
from dataclasses import dataclass

from openvpc.agent.config_index import ConfigIndex
from openvpc.agent.outcome import Learned, Outcome
from openvpc.model.nodeconfig import PortConfig
from openvpc.packet.arp import parse_arp
from openvpc.packet.errors import Malformed
from openvpc.packet.ethernet import ETH_P_ARP, mac_from_str, parse_ethernet
from openvpc.packet.ipv4 import ip_to_str

RETRY_SECONDS = 30.0
ZERO_IP = b"\x00" * 4


@dataclass(frozen=True, slots=True)
class Claim:
    """A report we made: where the config showed the address then, and when."""

    location: str | None
    reported_at: float


ClaimKey = tuple[str, str]  # (interface id, address)
Claims = Mapping[ClaimKey, Claim]


def handle_arp(
    frame: bytes, port: PortConfig, index: ConfigIndex, claims: Claims, now: float
) -> tuple[Outcome, Claims]:
    """Decide on one ARP frame punted from `port.vif`; returns the outcome and the new claims."""
    try:
        eth = parse_ethernet(frame)
        if eth.vlan is not None:
            raise Malformed("vlan_tagged")
        if eth.ethertype != ETH_P_ARP:
            raise Malformed("not_arp")
        arp = parse_arp(frame, eth.offset)
    except Malformed as e:
        return Outcome(f"arp_{e.reason}"), claims
    try:
        port_mac = mac_from_str(port.mac)
    except ValueError as e:
        return Outcome("arp_bad_port_config", detail=str(e)), claims
    if eth.src != port_mac or arp.sha != port_mac:
        return Outcome("arp_sha_mismatch"), claims
    if arp.spa == ZERO_IP:
        return Outcome("arp_probe"), claims  # address conflict detection: claims nothing
    if arp.spa != arp.tpa:
        return Outcome("arp_not_gratuitous"), claims
    ip = ip_to_str(arp.spa)
    if ip == port.ip:
        return Outcome("arp_own_address"), claims
    if ip not in port.learn_ips:
        return Outcome("arp_learn_not_allowed"), claims
    return _claim(port, ip, index.location(port.vrf, ip), claims, now)


def _claim(
    port: PortConfig, ip: str, location: str | None, claims: Claims, now: float
) -> tuple[Outcome, Claims]:
    key = (port.interface_id, ip)
    # forget reports that are settled or stale, so the record stays small
    kept = {
        k: c
        for k, c in claims.items()
        if k != key and now - c.reported_at < RETRY_SECONDS and now >= c.reported_at
    }
    if location == f"vif:{port.vif}":
        return Outcome("arp_learn_current"), kept
    previous = claims.get(key)
    if (
        previous is not None
        and previous.location == location
        and 0 <= now - previous.reported_at < RETRY_SECONDS
    ):
        kept[key] = previous
        return Outcome("arp_learn_pending"), kept
    kept[key] = Claim(location, now)
    return Outcome("arp_learn", learned=(Learned(port.interface_id, ip),)), kept
