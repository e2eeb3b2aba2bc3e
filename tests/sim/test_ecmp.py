"""ECMP on a routed (leaf-spine) underlay: the outer UDP source port carries the flow's
entropy, so flows spread over both spines while each flow keeps to one (seed, step 6)."""

from collections import Counter

import pytest
from scapy.layers.inet import IP, UDP
from simkit import overlay_packets

from openvpc.lab.endpoint import VmEndpoint
from openvpc.lab.sim import SimLab
from openvpc.model.forwarding import Encap, Mode
from openvpc.vrouter.encap import ENTROPY_BASE

FLOWS = 200
REPEATS = 3
SPINES = ("spine1", "spine2")


def spine_counts(lab: SimLab) -> list[int]:
    return [lab.routers[s].forwarded for s in SPINES]


def send_alone(lab: SimLab, src: VmEndpoint, dst: VmEndpoint, sport: int) -> tuple[str, int]:
    """One packet of the flow with nothing else in flight: (the spine it took, outer sport)."""
    before = spine_counts(lab)
    seen = len(lab.fabric_frames)
    src.udp(dst.ip, sport, 5001, b"flow %d" % sport)
    lab.run()
    delta = [after - b for after, b in zip(spine_counts(lab), before, strict=True)]
    assert sorted(delta) == [0, 1], f"one packet crosses exactly one spine, not {delta}"
    [outer] = overlay_packets(lab, since=seen)
    assert outer[IP].dst == "172.16.2.11"
    return SPINES[delta.index(1)], int(outer[UDP].sport)


def ecmp_lab(encap: Encap, mode: Mode) -> tuple[SimLab, VmEndpoint, VmEndpoint]:
    lab = SimLab(2, "l3")
    vpc = lab.add_vpc("acme", "prod", ["10.1.0.0/16"], mode=mode, encap=encap)
    a = lab.add_vm(vpc, "a", "node1", "10.1.1.10")
    b = lab.add_vm(vpc, "b", "node2", "10.1.2.20")
    lab.build()
    a.ping(b.ip)  # resolve the VM and underlay neighbours first
    lab.run()
    assert len(a.got("echo_reply")) == 1
    return lab, a, b


@pytest.mark.parametrize("mode", [Mode.L3, Mode.L2])
@pytest.mark.parametrize("encap", [Encap.VXLAN, Encap.MPLSOUDP])
def test_flows_spread_over_both_spines_and_stick(encap: Encap, mode: Mode) -> None:
    lab, a, b = ecmp_lab(encap, mode)
    first: dict[int, tuple[str, int]] = {}
    for sport in range(20000, 20000 + FLOWS):
        first[sport] = send_alone(lab, a, b, sport)
    # every flow stays on its spine, with its outer source port, packet after packet
    for _ in range(REPEATS):
        for sport in range(20000, 20000 + FLOWS):
            assert send_alone(lab, a, b, sport) == first[sport], f"flow {sport} moved"
    per_spine = Counter(spine for spine, _ in first.values())
    assert set(per_spine) == set(SPINES)
    for spine in SPINES:
        assert per_spine[spine] >= FLOWS // 4, per_spine
    # the entropy: outer source ports in the dynamic range, (almost) one per flow
    ports = [port for _, port in first.values()]
    assert all(ENTROPY_BASE <= p <= 65535 for p in ports)
    assert len(set(ports)) > FLOWS * 0.9
    assert len(b.got("udp")) == FLOWS * (1 + REPEATS)
    # nothing else crossed the spines: one forwarded packet per packet sent, plus the warm-up
    assert sum(spine_counts(lab)) == FLOWS * (1 + REPEATS) + 2


def test_both_directions_and_many_node_pairs_use_both_spines() -> None:
    """Four nodes, two per leaf: flows between every cross-leaf pair, both ways."""
    lab = SimLab(4, "l3")
    vpc = lab.add_vpc("acme", "prod", ["10.1.0.0/16"], encap=Encap.VXLAN)
    vms = [lab.add_vm(vpc, f"vm{i}", f"node{i + 1}", f"10.1.0.{10 + i}") for i in range(4)]
    lab.build()
    for src in vms:  # warm up: VM and underlay neighbours resolved before the burst
        for dst in vms:
            if src is not dst:
                src.ping(dst.ip)
    lab.run()
    assert all(len(vm.got("echo_reply")) == 3 for vm in vms)
    before = spine_counts(lab)
    for src in vms:
        for dst in vms:
            if src is not dst:
                for sport in range(30000, 30025):
                    src.udp(dst.ip, sport, 7)
    lab.run()
    for dst in vms:
        assert len(dst.got("udp")) == 3 * 25
    used = [after - b for after, b in zip(spine_counts(lab), before, strict=True)]
    cross_leaf = 8 * 25  # node1, node3 under leaf1; node2, node4 under leaf2
    assert sum(used) == cross_leaf
    assert min(used) >= cross_leaf // 4, used
