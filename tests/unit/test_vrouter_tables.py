"""The longest-prefix-match table and the vRouter's programming interface."""

import pytest

from openvpc.model.forwarding import VROUTER_MAC
from openvpc.packet.ipv4 import ip_to_bytes
from openvpc.vrouter.dump import dump_all
from openvpc.vrouter.lpm import Lpm, mask, prefix_int
from openvpc.vrouter.nexthop import DISCARD_NH_ID, DiscardNH, EncapNH, ReceiveNH
from openvpc.vrouter.tables import Fabric, LabelEntry, Route, Tables, Vif, VifKind, Vrf


def ip(text: str) -> bytes:
    return ip_to_bytes(text)


# -- Lpm -------------------------------------------------------------------------------
def test_mask_and_prefix() -> None:
    assert mask(0) == 0
    assert mask(8) == 0xFF000000
    assert mask(32) == 0xFFFFFFFF
    assert prefix_int(ip("10.1.2.3"), 16) == 0x0A010000


def test_longest_prefix_wins() -> None:
    t: Lpm[str] = Lpm()
    t.add(ip("10.0.0.0"), 8, "/8")
    t.add(ip("10.1.0.0"), 16, "/16")
    t.add(ip("10.1.2.0"), 24, "/24")
    t.add(ip("10.1.2.3"), 32, "/32")
    assert t.lookup(ip("10.1.2.3")) == "/32"
    assert t.lookup(ip("10.1.2.4")) == "/24"
    assert t.lookup(ip("10.1.3.4")) == "/16"
    assert t.lookup(ip("10.2.0.1")) == "/8"
    assert t.lookup(ip("11.0.0.1")) is None
    assert len(t) == 4


def test_order_of_insertion_does_not_matter() -> None:
    t: Lpm[str] = Lpm()
    t.add(ip("10.1.2.0"), 24, "/24")
    t.add(ip("10.0.0.0"), 8, "/8")
    assert t.lookup(ip("10.1.2.9")) == "/24"


def test_host_bits_of_the_prefix_are_ignored() -> None:
    t: Lpm[str] = Lpm()
    t.add(ip("10.1.2.77"), 24, "net")
    assert t.exact(ip("10.1.2.0"), 24) == "net"
    assert t.lookup(ip("10.1.2.200")) == "net"
    assert list(t.items()) == [(ip("10.1.2.0"), 24, "net")]


def test_default_route() -> None:
    t: Lpm[str] = Lpm()
    t.add(ip("0.0.0.0"), 0, "default")
    t.add(ip("192.168.0.0"), 16, "lan")
    assert t.lookup(ip("8.8.8.8")) == "default"
    assert t.lookup(ip("255.255.255.255")) == "default"
    assert t.lookup(ip("192.168.9.9")) == "lan"
    assert t.remove(ip("0.0.0.0"), 0)
    assert t.lookup(ip("8.8.8.8")) is None


def test_remove_falls_back_to_shorter_prefix() -> None:
    t: Lpm[str] = Lpm()
    t.add(ip("10.0.0.0"), 8, "/8")
    t.add(ip("10.1.0.0"), 16, "/16")
    assert t.remove(ip("10.1.0.0"), 16)
    assert t.lookup(ip("10.1.0.1")) == "/8"
    assert not t.remove(ip("10.1.0.0"), 16)  # already gone
    assert not t.remove(ip("10.0.0.0"), 9)  # never there
    assert not t.remove(ip("11.0.0.0"), 8)  # length present, prefix absent
    assert len(t) == 1


def test_replace_keeps_one_entry() -> None:
    t: Lpm[str] = Lpm()
    t.add(ip("10.0.0.0"), 8, "old")
    t.add(ip("10.0.0.0"), 8, "new")
    assert t.lookup(ip("10.9.9.9")) == "new"
    assert len(t) == 1


def test_falsy_values_are_found() -> None:
    t: Lpm[bytes] = Lpm()  # the underlay uses b"" for "directly attached"
    t.add(ip("10.1.0.0"), 24, b"")
    assert t.lookup(ip("10.1.0.7")) == b""


def test_items_sorted_by_network_then_length() -> None:
    t: Lpm[int] = Lpm()
    for text, plen in (("10.1.0.0", 16), ("10.0.0.0", 8), ("10.0.0.0", 24), ("9.0.0.0", 8)):
        t.add(ip(text), plen, plen)
    assert [(n, p) for n, p, _ in t.items()] == [
        (ip("9.0.0.0"), 8),
        (ip("10.0.0.0"), 8),
        (ip("10.0.0.0"), 24),
        (ip("10.1.0.0"), 16),
    ]


@pytest.mark.parametrize("plen", [-1, 33])
def test_bad_prefix_length(plen: int) -> None:
    t: Lpm[int] = Lpm()
    with pytest.raises(ValueError):
        t.add(ip("10.0.0.0"), plen, 1)


# -- programming interface ---------------------------------------------------------------
FABRIC_IP = ip("10.1.0.1")
FABRIC_MAC = bytes.fromhex("02000a010001")
VM_MAC = bytes.fromhex("020000010003")


def program(t: Tables) -> None:
    """One agent reconcile pass: the same calls every time."""
    t.add_vif(Vif(1, VifKind.AGENT, "pkt0"))
    t.add_vif(Vif(3, VifKind.VIRTUAL, "tap0", vrf=1, mac=VM_MAC, ip=ip("10.0.1.3"), prefix_len=24))
    t.add_vrf(Vrf(1, "vpc-a"))
    t.add_nexthop(2, ReceiveNH())
    t.add_nexthop(13, EncapNH(3, VM_MAC, VROUTER_MAC))
    t.add_route(1, ip("10.0.1.3"), 32, Route(13, mac=VM_MAC))
    t.add_route(1, ip("10.0.1.1"), 32, Route(2))
    t.add_mac_route(1, VM_MAC, Route(13))
    t.add_label(17, LabelEntry(1))
    t.add_vni(100, 1)
    t.add_vlan(100, 1)
    t.add_underlay_route(ip("10.1.0.0"), 24, None)
    t.add_underlay_route(ip("0.0.0.0"), 0, ip("10.1.0.254"))
    t.add_neighbor(ip("10.1.0.254"), bytes.fromhex("02000a0100fe"))


def fresh() -> Tables:
    return Tables(Fabric(0, FABRIC_IP, FABRIC_MAC))


def test_programming_twice_is_the_same_as_once() -> None:
    once, twice = fresh(), fresh()
    program(once)
    program(twice)
    program(twice)
    assert dump_all(twice) == dump_all(once)
    assert len(twice.vrfs[1].ip_fib) == 2
    assert twice.nexthops.keys() == {DISCARD_NH_ID, 2, 13}


def test_deletes_are_idempotent_too() -> None:
    t = fresh()
    program(t)
    for _ in range(2):
        t.delete_route(1, ip("10.0.1.3"), 32)
        t.delete_mac_route(1, VM_MAC)
        t.delete_nexthop(13)
        t.delete_label(17)
        t.delete_vni(100)
        t.delete_vlan(100)
        t.delete_vif(3)
    assert t.vrfs[1].ip_fib.lookup(ip("10.0.1.3")) is None
    assert not t.vrfs[1].mac_fib
    assert 13 not in t.nexthops and 3 not in t.vifs
    assert not t.labels and not t.vnis and not t.vlans
    t.delete_vrf(1)
    t.delete_vrf(1)
    assert not t.vrfs


def test_the_fabric_vif_exists_from_the_start() -> None:
    t = fresh()
    fabric = t.vifs[0]
    assert fabric.kind is VifKind.FABRIC
    assert (fabric.ip, fabric.mac) == (FABRIC_IP, FABRIC_MAC)
    assert isinstance(t.nexthops[DISCARD_NH_ID], DiscardNH)


def test_discard_nexthop_is_fixed() -> None:
    t = fresh()
    with pytest.raises(ValueError):
        t.add_nexthop(DISCARD_NH_ID, ReceiveNH())
    t.delete_nexthop(DISCARD_NH_ID)
    assert isinstance(t.nexthops[DISCARD_NH_ID], DiscardNH)


def test_agent_vif_is_tracked() -> None:
    t = fresh()
    assert t.agent_vif is None
    t.add_vif(Vif(1, VifKind.AGENT, "pkt0"))
    assert t.agent_vif == 1
    t.delete_vif(1)
    assert t.agent_vif is None


@pytest.mark.parametrize("vlan", [0, 4095])
def test_vlan_range(vlan: int) -> None:
    with pytest.raises(ValueError):
        fresh().add_vlan(vlan, 1)


def test_generation_bumps_on_route_changes() -> None:
    t = fresh()
    t.add_vrf(Vrf(1, "vpc-a"))
    g = t.generation
    t.add_route(1, ip("10.0.1.0"), 24, Route(DISCARD_NH_ID))
    assert t.generation == g + 1
    t.add_mac_route(1, VM_MAC, Route(DISCARD_NH_ID))
    t.delete_route(1, ip("10.0.1.0"), 24)
    assert t.generation == g + 3


def test_count_drop_charges_the_vif() -> None:
    t = fresh()
    t.count_drop("no_route", t.vifs[0])
    t.count_drop("no_route", None)
    assert t.drops["no_route"] == 2
    assert t.vifs[0].stats.drops == 1
