"""The agent header on frames punted to, and injected by, the agent vif (Contrail's agent_hdr)."""

import struct
from enum import IntEnum
from typing import NamedTuple

from openvpc.packet.errors import Malformed

AGENT_HDR = struct.Struct("!HHI")  # reason, vif, vrf
AGENT_HDR_LEN = AGENT_HDR.size


class Punt(IntEnum):
    ARP = 1  # an ARP the forwarding plane cannot answer (unknown target, gratuitous)
    DHCP = 2
    FLOW_MISS = 3
    RESOLVE = 4
    DNS = 5
    INJECT = 100  # agent -> vRouter: send the frame out of `vif`


class AgentHeader(NamedTuple):
    reason: int
    vif: int
    vrf: int


def build_punt(reason: int, vif: int, vrf: int, frame: bytes) -> bytes:
    return AGENT_HDR.pack(reason, vif, vrf) + frame


def punt_source(data: bytes) -> bytes:
    """The vif and VRF of a punt's agent header, as bytes: whom the punt is charged to."""
    return data[2:AGENT_HDR_LEN]  # after the 2-byte reason


def parse_punt(data: bytes) -> tuple[AgentHeader, bytes]:
    if len(data) < AGENT_HDR_LEN:
        raise Malformed("short_agent_header")
    return AgentHeader(*AGENT_HDR.unpack_from(data, 0)), data[AGENT_HDR_LEN:]
