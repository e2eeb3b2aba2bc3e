"""Underlay neighbour retries: ask again, then give up and count what waited."""

from scapy.layers.l2 import ARP, Ether

from openvpc.vrouter.drops import Drop
from openvpc.vrouter.neighbors import MAX_ARP_RETRIES, retry_pending
from openvpc.vrouter.tables import Fabric, Tables

ME = bytes([192, 168, 0, 10])
PEER = bytes([192, 168, 0, 11])
MAC = bytes.fromhex("02fa00000001")


def tables_waiting(packets: int) -> Tables:
    t = Tables(Fabric(0, ME, MAC))
    t.pending[PEER] = [b"\x81\x00\x00\x65" + b"x" * 40] * packets
    return t


def test_a_pending_neighbour_is_asked_again_then_given_up_with_its_packets_counted() -> None:
    t = tables_waiting(2)
    for _ in range(MAX_ARP_RETRIES):
        [(vif, frame)] = retry_pending(t)
        arp = Ether(frame)[ARP]
        assert (vif, arp.op, arp.pdst, arp.psrc) == (0, 1, "192.168.0.11", "192.168.0.10")
    assert retry_pending(t) == []
    assert t.pending == {} and t.arp_retries == {}
    assert t.drops == {Drop.NEIGHBOR_UNRESOLVED: 2}


def test_a_neighbour_resolved_between_ticks_is_forgotten() -> None:
    t = tables_waiting(1)
    retry_pending(t)
    del t.pending[PEER]  # what the pipeline does when the ARP reply arrives
    assert retry_pending(t) == []
    assert t.arp_retries == {} and not t.drops
