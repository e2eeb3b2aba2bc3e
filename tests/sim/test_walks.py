"""The seed's Figure 13 walk (layer 3 unicast), step by step, on two compute nodes.

VM 1a on node1 sends an IP packet to VM 2a on node2. The VPC uses Contrail's link-local
default gateway, and the two VMs sit in different subnets, so VM 1a resolves its
169.254.x.x gateway first, as in steps 1-2 of the walk.
"""

import pytest
from scapy.layers.inet import ICMP, IP
from scapy.layers.l2 import ARP, Ether
from simkit import (
    VROUTER_MAC_STR,
    assert_in_order,
    inner_ether,
    ip,
    mac_str,
    overlay_packets,
    steps_by_node,
    trace_by_node,
    tunnel_payload,
)

from openvpc.lab.endpoint import VmEndpoint
from openvpc.lab.sim import SimLab, Underlay, Vpc
from openvpc.model.forwarding import LINK_LOCAL_GATEWAY, VROUTER_MAC, Encap

GATEWAY = "169.254.0.1"
DECAP = {Encap.MPLSOGRE: "gre", Encap.MPLSOUDP: "udp/mpls", Encap.VXLAN: "udp/vxlan"}


def figure13(encap: Encap, underlay: Underlay = "l2") -> tuple[SimLab, Vpc, VmEndpoint, VmEndpoint]:
    lab = SimLab(2, underlay)
    vpc = lab.add_vpc("blue", "vn", ["10.1.1.0/24", "10.1.2.0/24"], encap=encap, link_local=True)
    vm1a = lab.add_vm(vpc, "vm1a", "node1", "10.1.1.10")
    vm2a = lab.add_vm(vpc, "vm2a", "node2", "10.1.2.20")
    lab.build()
    return lab, vpc, vm1a, vm2a


@pytest.mark.parametrize("encap", [Encap.MPLSOGRE, Encap.MPLSOUDP, Encap.VXLAN])
def test_figure13_walk(encap: Encap, monkeypatch: pytest.MonkeyPatch) -> None:
    lab, vpc, vm1a, vm2a = figure13(encap)
    node1, node2 = lab.nodes["node1"], lab.nodes["node2"]
    trace = trace_by_node(lab, monkeypatch)
    assert vm1a.gateway == LINK_LOCAL_GATEWAY  # 1. default route via 169.254.x.x

    vm1a.ping(vm2a.ip)
    lab.run()
    steps = steps_by_node(trace)

    # the label node1 imposes is the one node2 allocated for its instance (4a), and it is
    # meaningful only on node2; with VXLAN the VNI, global per network, takes its place
    if encap is Encap.VXLAN:
        tag = vpc.vni
        tag_step = ("node2", "vxlan", f"vni {tag} -> vrf {vpc.label}")
    else:
        tag = node2.labels[vpc.label][0]
        assert tag != node1.labels[vpc.label][0]
        tag_step = ("node2", "mpls", f"label {tag} -> vrf {vpc.label}")
    route = node1.tables.vrfs[node1.vrf_of[vpc.label]].ip_fib.exact(vm2a.ip, 32)
    assert route is not None and route.label == tag  # 4. a /32 route to VM 2a
    vif2a = lab.ports["vm2a"].vif
    walk = [
        # 2. the ARP proxy in routing instance 1a answers for the link-local gateway
        ("node1", "vif", "(vm1a)"),
        ("node1", "arp_proxy", f"{GATEWAY} is-at {VROUTER_MAC_STR}"),
        ("node1", "tx", f"vif {lab.ports['vm1a'].vif} "),
        # 3-4. the IP packet: IP FIB 1a, /32 route with node2's label, tunnel next hop
        ("node1", "vif", "(vm1a)"),
        ("node1", "ip_fib", f"{vpc.label}/main: 10.1.2.20 -> nh {route.nh} label {tag}"),
        ("node1", "nexthop", "TunnelNH"),
        ("node1", "encap", f"{encap} label/vni {tag} to 192.168.0.11"),
        # 5-6. global IP FIB 1 for the outer destination; the L2 underlay resolves node2
        ("node1", "global_fib", "192.168.0.11 via 192.168.0.11"),
        ("node1", "underlay_arp", "who-has 192.168.0.11"),
        ("node2", "underlay_arp", "192.168.0.10 is-at 02:fa:00:00:00:01"),
        ("node1", "underlay_arp", "192.168.0.11 is-at 02:fa:00:00:00:02"),
        ("node1", "tx", "vif 0 "),
        # 7. global IP FIB 2: the outer destination is local, decapsulate
        ("node2", "vif", "rx fabric"),
        ("node2", "global_fib", "192.168.0.11 is local: decapsulate"),
        ("node2", "decap", DECAP[encap]),
        # 8. label (or VNI) -> routing instance 2a
        tag_step,
        # 9. IP FIB 2a -> the vif of VM 2a
        ("node2", "ip_fib", f"{vpc.label}/main: 10.1.2.20 -> nh"),
        ("node2", "nexthop", "EncapNH"),
        # 10. to VM 2a
        ("node2", "tx", f"vif {vif2a} "),
    ]
    assert_in_order(steps, walk)
    # the walk's packet never went anywhere else first: no drops anywhere
    assert not node1.tables.drops and not node2.tables.drops
    assert [s for s in steps if s[1] == "drop"] == []

    # step 2 from the VM's side: the reply carries the vRouter MAC for 169.254.0.1
    replies = [Ether(f) for f in vm1a.inbox if Ether(f).haslayer(ARP)]
    assert len(replies) == 1
    arp = replies[0][ARP]
    assert (arp.op, arp.psrc, arp.hwsrc) == (2, GATEWAY, VROUTER_MAC_STR)
    assert vm1a.arp_cache[LINK_LOCAL_GATEWAY] == VROUTER_MAC

    # 10. VM 2a got the echo request, untouched TTL; VM 1a the reply
    [request] = vm2a.got("echo_request")
    assert (request.src, request.ttl) == (vm1a.ip, 64)
    assert len(vm1a.got("echo_reply", src=vm2a.ip)) == 1

    # the wire, read by scapy: outer node1 -> node2, the encapsulation, the tag, the inner packet
    [first, back] = overlay_packets(lab)
    outer = first[IP]
    assert (outer.src, outer.dst) == ("192.168.0.10", "192.168.0.11")
    assert first[Ether].dst == "02:fa:00:00:00:02"  # 6. switched to node2's MAC
    kind, wire_tag, inner = tunnel_payload(first)
    assert (kind, wire_tag) == (str(encap), tag)
    if encap is Encap.MPLSOGRE:
        assert outer.proto == 47
    else:
        assert 49152 <= outer.sport <= 65535  # flow entropy
    packet = inner_ether(inner)
    if encap is Encap.VXLAN:  # Ethernet inside: to VM 2a's MAC, from the vRouter
        assert (packet.dst, packet.src) == (mac_str(vm2a.mac), VROUTER_MAC_STR)
    assert (packet[IP].src, packet[IP].dst) == ("10.1.1.10", "10.1.2.20")
    assert (packet[ICMP].type, packet[IP].ttl) == (8, 64)
    # the reply goes back with the label node1 allocated (VNI for VXLAN)
    back_tag = vpc.vni if encap is Encap.VXLAN else node1.labels[vpc.label][0]
    assert tunnel_payload(back)[:2] == (str(encap), back_tag)
    assert (back[IP].src, back[IP].dst) == ("192.168.0.11", "192.168.0.10")


def test_figure13_walk_l3_underlay(monkeypatch: pytest.MonkeyPatch) -> None:
    """Step 6 on a routed underlay: the global FIB sends node2's address via the leaf."""
    lab, vpc, vm1a, vm2a = figure13(Encap.MPLSOUDP, "l3")
    trace = trace_by_node(lab, monkeypatch)
    vm1a.ping(vm2a.ip)
    lab.run()
    label = lab.nodes["node2"].labels[vpc.label][0]
    assert_in_order(
        steps_by_node(trace),
        [
            ("node1", "arp_proxy", f"{GATEWAY} is-at {VROUTER_MAC_STR}"),
            ("node1", "ip_fib", f"label {label}"),
            ("node1", "encap", f"mplsoudp label/vni {label} to 172.16.2.11"),
            ("node1", "global_fib", "172.16.2.11 via 172.16.1.1"),
            ("node1", "underlay_arp", "who-has 172.16.1.1"),
            ("node1", "tx", "vif 0 "),
            ("node2", "global_fib", "172.16.2.11 is local: decapsulate"),
            ("node2", "mpls", f"label {label} -> vrf {vpc.label}"),
            ("node2", "tx", f"vif {lab.ports['vm2a'].vif} "),
        ],
    )
    assert len(vm2a.got("echo_request")) == 1
    assert len(vm1a.got("echo_reply")) == 1
    # routed through the spines: the outer TTL shows the three underlay hops
    first = overlay_packets(lab, "node1")[0]
    assert first[IP].dst == "172.16.2.11"
    assert first[Ether].dst == "02:aa:00:00:00:01"  # leaf1's port toward node1
    assert sum(r.forwarded for n, r in lab.routers.items() if n.startswith("spine")) == 2


def test_same_node_walk_stays_local(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two VMs of the instance on one vRouter: IP FIB -> local vif, nothing on the fabric."""
    lab = SimLab(2)
    vpc = lab.add_vpc("blue", "vn", ["10.1.1.0/24"], link_local=True)
    a = lab.add_vm(vpc, "a", "node1", "10.1.1.10")
    b = lab.add_vm(vpc, "b", "node1", "10.1.1.11")
    lab.build()
    trace = trace_by_node(lab, monkeypatch)
    a.ping(b.ip)
    lab.run()
    assert_in_order(
        steps_by_node(trace),
        [
            ("node1", "arp_proxy", f"10.1.1.11 is-at {mac_str(b.mac)}"),
            ("node1", "ip_fib", f"{vpc.label}/main: 10.1.1.11 -> nh"),
            ("node1", "nexthop", "EncapNH"),
            ("node1", "tx", f"vif {lab.ports['b'].vif} "),
        ],
    )
    assert lab.fabric_frames == []
    assert len(a.got("echo_reply", src=ip("10.1.1.11"))) == 1
