"""First-packet flow policy: a miss holds the packet and punts it to the agent; the agent's
decision installs both directions and releases what was held (seed: "punt the packets for
which no flow rule is found ... to the vRouter agent which then installs a rule")."""

import pytest
from scapy.layers.inet import ICMP, IP
from scapy.layers.l2 import Ether
from simkit import agent_allows, assert_in_order, deliver, steps_by_node, trace_by_node

from openvpc.lab.endpoint import VmEndpoint
from openvpc.lab.sim import Node, SimLab, Vpc
from openvpc.model.forwarding import FlowKey
from openvpc.packet.ipv4 import PROTO_ICMP, PROTO_TCP
from openvpc.vrouter.drops import Drop
from openvpc.vrouter.flow import MAX_HELD, FlowAction
from openvpc.vrouter.pipeline import install_flow
from openvpc.vrouter.punt import AgentHeader, Punt

PING_ID = 7


def flow_lab(
    auto_allow: bool, policy_on: str = "a", b_node: str = "node2"
) -> tuple[SimLab, Vpc, VmEndpoint, VmEndpoint]:
    lab = SimLab(2, auto_allow=auto_allow)
    vpc = lab.add_vpc("acme", "prod", ["10.1.1.0/24"])
    a = lab.add_vm(vpc, "a", "node1", "10.1.1.10", policy=policy_on == "a")
    b = lab.add_vm(vpc, "b", b_node, "10.1.1.20", policy=policy_on == "b")
    lab.build()
    return lab, vpc, a, b


def flow_misses(node: Node) -> list[tuple[AgentHeader, bytes]]:
    return [(h, f) for h, f in node.punted if h.reason == Punt.FLOW_MISS]


def ping_key(node: Node, vpc: Vpc, src: VmEndpoint, dst: VmEndpoint) -> FlowKey:
    return (node.vrf_of[vpc.label], PROTO_ICMP, src.ip, dst.ip, PING_ID, PING_ID)


def seqs(vm: VmEndpoint, kind: str) -> list[int]:
    return [r.detail[2] & 0xFFFF for r in vm.got(kind)]


def ping_twice_and_connect_back(lab: SimLab, a: VmEndpoint, b: VmEndpoint) -> None:
    """Two pings a -> b, then a TCP connection b -> a to a closed port: all answered."""
    for seq in (1, 2):
        a.ping(b.ip, ident=PING_ID, seq=seq)
        lab.run()
    b.tcp_syn(a.ip, 5555, 22)
    lab.run()
    assert seqs(b, "echo_request") == [1, 2]
    assert seqs(a, "echo_reply") == [1, 2]
    assert [r.detail[:2] for r in b.got("tcp_rst")] == [(22, 5555)]


def test_auto_allow_punts_the_first_packet_only(monkeypatch: pytest.MonkeyPatch) -> None:
    lab, vpc, a, b = flow_lab(auto_allow=True)
    node1 = lab.nodes["node1"]
    trace = trace_by_node(lab, monkeypatch)
    a.ping(b.ip, ident=PING_ID, seq=1)
    lab.run()
    a.ping(b.ip, ident=PING_ID, seq=2)
    lab.run()
    assert seqs(b, "echo_request") == [1, 2]
    assert seqs(a, "echo_reply") == [1, 2]
    [(header, frame)] = flow_misses(node1)  # the first packet, once
    assert (header.vif, header.vrf) == (lab.ports["a"].vif, node1.vrf_of[vpc.label])
    assert frame[-56:] == bytes(range(56))  # the VM's own frame, whole
    assert_in_order(
        steps_by_node(trace),
        [
            ("node1", "flow", "miss: hold and punt"),
            ("node1", "punt", "flow_miss to agent"),
            ("node1", "flow", "hit: forward"),  # the held packet, released
            ("node2", "tx", f"vif {lab.ports['b'].vif} "),
            ("node1", "flow", "hit: forward"),  # the reply: the reverse flow
            ("node1", "tx", f"vif {lab.ports['a'].vif} "),
            ("node1", "flow", "hit: forward"),  # the second request
        ],
    )
    forward = node1.tables.flows.lookup(ping_key(node1, vpc, a, b))
    reverse = node1.tables.flows.lookup(ping_key(node1, vpc, b, a))
    assert forward is not None and reverse is not None
    assert (forward.packets, reverse.packets) == (2, 2)
    assert forward.reverse == reverse.key and reverse.reverse == forward.key
    assert len(lab.nodes["node2"].tables.flows.flows) == 0  # b has no policy


@pytest.mark.parametrize("b_node", ["node2", "node1"], ids=["across-nodes", "same-node"])
def test_nothing_passes_until_the_agent_allows(
    b_node: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    lab, vpc, a, b = flow_lab(auto_allow=False, b_node=b_node)
    node1 = lab.nodes["node1"]
    for seq in range(1, 6):
        a.ping(b.ip, ident=PING_ID, seq=seq)
    lab.run()
    assert b.received == [] and a.received == []
    assert lab.fabric_frames == []  # held at the ingress vRouter
    [(header, frame)] = flow_misses(node1)  # one punt per flow, not per packet
    assert node1.tables.drops == {Drop.FLOW_QUEUE_LIMIT: 5 - MAX_HELD}
    flow = node1.tables.flows.lookup(ping_key(node1, vpc, a, b))
    assert flow is not None and flow.action is FlowAction.HOLD and len(flow.held) == MAX_HELD

    # the test plays the agent: allow, both directions
    trace = trace_by_node(lab, monkeypatch)
    agent_allows(lab, "node1", header, frame)
    assert seqs(b, "echo_request") == list(range(1, MAX_HELD + 1))
    assert seqs(a, "echo_reply") == list(range(1, MAX_HELD + 1))
    reverse = node1.tables.flows.lookup(ping_key(node1, vpc, b, a))
    assert reverse is not None and reverse.packets == MAX_HELD  # the replies hit it
    hits = [s for s in steps_by_node(trace) if s[1] == "flow"]
    assert hits == [("node1", "flow", "hit: forward")] * (2 * MAX_HELD)

    a.ping(b.ip, ident=PING_ID, seq=9)  # the flow is there now: straight through
    lab.run()
    assert seqs(b, "echo_request")[-1] == 9
    assert len(flow_misses(node1)) == 1


def test_policy_on_the_receiver_holds_at_the_receiving_vrouter() -> None:
    lab, vpc, a, b = flow_lab(auto_allow=False, policy_on="b")
    node1, node2 = lab.nodes["node1"], lab.nodes["node2"]
    a.ping(b.ip, ident=PING_ID)
    lab.run()
    assert b.received == []
    assert lab.fabric_frames  # it crossed the fabric: the policy is applied at node2
    assert flow_misses(node1) == []
    [(header, frame)] = flow_misses(node2)
    assert (header.vif, header.vrf) == (0, node2.vrf_of[vpc.label])  # from the fabric
    # the agent is shown the tenant's packet, decapsulated, to key the flow on
    punted = Ether(frame)
    assert (punted[IP].src, punted[IP].dst, punted[ICMP].id) == ("10.1.1.10", "10.1.1.20", 7)
    agent_allows(lab, "node2", header, frame)
    assert seqs(b, "echo_request") == [1]
    assert seqs(a, "echo_reply") == [1]
    reverse = node2.tables.flows.lookup(ping_key(node2, vpc, b, a))
    assert reverse is not None and reverse.packets == 1


def test_auto_allow_with_policy_on_a_remote_receiver() -> None:
    """Both ends with policy, on two vRouters: each holds, punts and releases its own flow."""
    lab = SimLab(2)
    vpc = lab.add_vpc("acme", "prod", ["10.1.1.0/24"])
    a = lab.add_vm(vpc, "a", "node1", "10.1.1.10", policy=True)
    b = lab.add_vm(vpc, "b", "node2", "10.1.1.20", policy=True)
    lab.build()
    ping_twice_and_connect_back(lab, a, b)
    for name, other in (("node1", b), ("node2", a)):
        node = lab.nodes[name]
        assert len(flow_misses(node)) == 2  # the ping and the TCP connection, once each
        assert ping_key(node, vpc, a, b) in node.tables.flows.flows
        assert ping_key(node, vpc, b, a) in node.tables.flows.flows
        # only tenant flows: nothing keyed on the underlay's addresses
        assert all(k[2] in (a.ip, b.ip) for k in node.tables.flows.flows), other.name


def test_agent_denies_with_a_drop_flow() -> None:
    lab, vpc, a, b = flow_lab(auto_allow=False)
    node1 = lab.nodes["node1"]
    for seq in range(1, 3):
        a.ping(b.ip, ident=PING_ID, seq=seq)
    lab.run()
    key = ping_key(node1, vpc, a, b)
    reverse = ping_key(node1, vpc, b, a)
    deliver(lab, "node1", install_flow(node1.tables, key, FlowAction.DROP, lab.now, reverse))
    a.ping(b.ip, ident=PING_ID, seq=3)
    lab.run()
    assert b.received == [] and lab.fabric_frames == []
    assert node1.tables.drops == {Drop.FLOW_ACTION_DROP: 3}
    assert len(flow_misses(node1)) == 1  # a decision, not a new miss per packet


def test_flows_are_per_five_tuple() -> None:
    """Allowing one TCP connection does not allow another port; the reply hits the reverse."""
    lab, vpc, a, b = flow_lab(auto_allow=False)
    node1 = lab.nodes["node1"]
    b.listening.add(80)
    vrf = node1.vrf_of[vpc.label]
    key: FlowKey = (vrf, PROTO_TCP, a.ip, b.ip, 40000, 80)
    back: FlowKey = (vrf, PROTO_TCP, b.ip, a.ip, 80, 40000)
    assert install_flow(node1.tables, key, FlowAction.FORWARD, lab.now, back) == []  # none held
    a.tcp_syn(b.ip, 40000, 80)
    a.tcp_syn(b.ip, 40001, 80)
    lab.run()
    assert [r.detail[:2] for r in b.got("tcp_syn")] == [(40000, 80)]
    assert [r.detail[:2] for r in a.got("tcp_synack")] == [(80, 40000)]
    [(header, frame)] = flow_misses(node1)  # the second connection waits for the agent
    assert frame[14 + 20 : 14 + 24] == (40001).to_bytes(2, "big") + (80).to_bytes(2, "big")
    reverse = node1.tables.flows.lookup(back)
    assert reverse is not None and reverse.packets == 1 and reverse.tcp_flags == 0x12
    agent_allows(lab, "node1", header, frame)
    assert [r.detail[:2] for r in a.got("tcp_synack")] == [(80, 40000), (80, 40001)]


def test_flows_are_per_vrf() -> None:
    """The same 5-tuple in another tenant's VPC is another flow."""
    lab = SimLab(2, auto_allow=False)
    vms = []
    for tenant in ("red", "blue"):
        vpc = lab.add_vpc(tenant, "prod", ["10.1.1.0/24"])
        a = lab.add_vm(vpc, f"{tenant}-a", "node1", "10.1.1.10", "02:00:00:00:00:0a", True)
        b = lab.add_vm(vpc, f"{tenant}-b", "node2", "10.1.1.20", "02:00:00:00:00:0b")
        vms.append((a, b))
    lab.build()
    node1 = lab.nodes["node1"]
    (red_a, red_b), (blue_a, blue_b) = vms
    red_a.ping(red_b.ip, ident=PING_ID)
    lab.run()
    [(header, frame)] = flow_misses(node1)
    agent_allows(lab, "node1", header, frame)
    assert len(red_a.got("echo_reply")) == 1
    blue_a.ping(blue_b.ip, ident=PING_ID)
    lab.run()
    assert blue_b.received == []  # red's flow does not let blue's identical packet through
    assert [h.vrf for h, _ in flow_misses(node1)] == [header.vrf, node1.vrf_of["blue/prod"]]


def decided_lab() -> tuple[SimLab, Vpc, VmEndpoint, VmEndpoint]:
    """Both ends with policy on two vRouters that decide new flows themselves."""
    lab = SimLab(2, auto_allow=False)  # an agent that would never answer
    vpc = lab.add_vpc("acme", "prod", ["10.1.1.0/24"])
    a = lab.add_vm(vpc, "a", "node1", "10.1.1.10", policy=True, agent_decides=False)
    b = lab.add_vm(vpc, "b", "node2", "10.1.1.20", policy=True, agent_decides=False)
    lab.build()
    return lab, vpc, a, b


def test_a_vrouter_that_decides_makes_both_directions_without_the_agent() -> None:
    lab, vpc, a, b = decided_lab()
    ping_twice_and_connect_back(lab, a, b)
    for node in lab.nodes.values():
        assert flow_misses(node) == []  # nothing waited for the agent
        flows = node.tables.flows
        forward, back = (
            flows.lookup(ping_key(node, vpc, a, b)),
            flows.lookup(ping_key(node, vpc, b, a)),
        )
        assert forward is not None and back is not None
        assert (forward.action, back.action) == (FlowAction.FORWARD, FlowAction.FORWARD)
        assert (forward.packets, back.packets) == (2, 2)  # the first packet counted too
        assert forward.reverse == back.key and back.reverse == forward.key
        assert len(flows.flows) == 4  # the ping's and the TCP connection's, both ways
        assert node.tables.flows.holds == {}


def test_a_vrouter_that_decides_keeps_to_the_vrfs_quota() -> None:
    lab, _, a, b = decided_lab()
    node1 = lab.nodes["node1"]
    node1.tables.flows.vrf_quota = 2  # one flow and its reverse
    a.ping(b.ip, ident=PING_ID)
    lab.run()
    a.ping(b.ip, ident=PING_ID + 1)
    lab.run()
    assert seqs(a, "echo_reply") == [1]
    assert node1.tables.drops[Drop.FLOW_QUOTA] == 1
    assert flow_misses(node1) == []
    assert node1.tables.vifs[lab.ports["a"].vif].stats.drops == 1
