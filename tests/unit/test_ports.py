"""The pure parts of the fabric ports: rebuilding the 802.1Q tag from PACKET_AUXDATA."""

from scapy.layers.l2 import Dot1Q, Ether

from openvpc.vrouter.ports import (
    AUXDATA,
    PACKET_AUXDATA,
    SOL_PACKET,
    TP_STATUS_VLAN_TPID_VALID,
    TP_STATUS_VLAN_VALID,
    rebuild_vlan_tag,
)

UNTAGGED = bytes(Ether(dst="02:00:00:00:00:02", src="02:00:00:00:00:01", type=0x0800) / (b"x" * 46))


def aux(status: int, tci: int = 0, tpid: int = 0) -> tuple[int, int, bytes]:
    return SOL_PACKET, PACKET_AUXDATA, AUXDATA.pack(status, 60, 60, 0, 14, tci, tpid)


def test_tag_rebuilt_from_auxdata() -> None:
    tci = (5 << 13) | 101
    both = TP_STATUS_VLAN_VALID | TP_STATUS_VLAN_TPID_VALID
    frame = rebuild_vlan_tag(UNTAGGED, [aux(both, tci, 0x88A8)])
    assert frame[12:16] == bytes.fromhex("88a8a065")
    frame = rebuild_vlan_tag(UNTAGGED, [aux(TP_STATUS_VLAN_VALID, tci)])
    tagged = Ether(frame)
    assert tagged[Dot1Q].vlan == 101 and tagged[Dot1Q].prio == 5 and tagged[Dot1Q].type == 0x0800
    assert tagged.dst == "02:00:00:00:00:02" and bytes(tagged[Dot1Q].payload) == UNTAGGED[14:]


def test_frames_without_a_tag_pass_unchanged() -> None:
    assert rebuild_vlan_tag(UNTAGGED, []) == UNTAGGED
    assert rebuild_vlan_tag(UNTAGGED, [aux(0, 101)]) == UNTAGGED
    assert rebuild_vlan_tag(UNTAGGED, [(SOL_PACKET, 99, b"\xff" * 20)]) == UNTAGGED
    assert rebuild_vlan_tag(UNTAGGED, [(SOL_PACKET, PACKET_AUXDATA, b"\xff" * 8)]) == UNTAGGED
