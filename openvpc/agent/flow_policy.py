"""The first packet of a new flow: its keys, exactly as the pipeline keys flows, and a verdict.

The verdict is a policy (a function of the packet's facts, one port and a direction) asked for
the sending port's egress and the receiving port's ingress when they are on this node; the flow
is dropped if either says drop. The policy is allow-all until security groups exist.
"""

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from openvpc.agent.config_index import ConfigIndex
from openvpc.agent.outcome import FlowKeyText, FlowRequest, FlowVerdict, Outcome
from openvpc.model.forwarding import FABRIC_VIF
from openvpc.model.nodeconfig import PortConfig
from openvpc.packet.errors import Malformed
from openvpc.packet.ethernet import ETH_P_IP, parse_ethernet
from openvpc.packet.ipv4 import ip_to_str, parse_ipv4
from openvpc.packet.l4 import l4_ports


class Direction(StrEnum):
    EGRESS = "egress"  # leaving the port's VM
    INGRESS = "ingress"  # entering the port's VM


@dataclass(frozen=True, slots=True)
class FlowFacts:
    """What a policy may look at: the flow's key fields, addresses as text."""

    vrf: int
    proto: int
    src: str
    dst: str
    sport: int  # for ICMP echo: the identifier; other ICMP: the type
    dport: int  # for ICMP echo: the identifier; other ICMP: the code
    fragment: bool  # a non-first or first fragment: ports are 0

    def key(self) -> FlowKeyText:
        return (self.vrf, self.proto, self.src, self.dst, self.sport, self.dport)

    def reverse_key(self) -> FlowKeyText:
        return (self.vrf, self.proto, self.dst, self.src, self.dport, self.sport)


Policy = Callable[[FlowFacts, PortConfig, Direction], FlowVerdict]


def allow_all(facts: FlowFacts, port: PortConfig, direction: Direction) -> FlowVerdict:
    """The policy until security groups come in."""
    return "forward"


def decide(
    facts: FlowFacts,
    src_port: PortConfig | None,
    dst_port: PortConfig | None,
    policy: Policy = allow_all,
) -> FlowVerdict:
    """Forward unless the sender's egress or the receiver's ingress policy drops the flow."""
    for port, direction in ((src_port, Direction.EGRESS), (dst_port, Direction.INGRESS)):
        if port is not None and port.policy and policy(facts, port, direction) == "drop":
            return "drop"
    return "forward"


def flow_facts(frame: bytes, vrf: int) -> FlowFacts:
    """The flow key fields of a punted first packet; raises Malformed."""
    eth = parse_ethernet(frame)
    if eth.ethertype != ETH_P_IP:
        raise Malformed("not_ipv4")
    ip = parse_ipv4(frame, eth.offset)
    packet = frame[eth.offset : eth.offset + ip.total_length]
    sport, dport = l4_ports(packet, ip)  # the pipeline's definition of a flow's ports
    return FlowFacts(
        vrf, ip.proto, ip_to_str(ip.src), ip_to_str(ip.dst), sport, dport, ip.is_fragment
    )


def handle_flow_miss(
    frame: bytes,
    in_vif: int,
    vrf: int,
    index: ConfigIndex,
    now: float,
    policy: Policy = allow_all,
) -> Outcome:
    """The flow to install for a FLOW_MISS punted from `in_vif` in routing instance `vrf`."""
    del now  # flows age in the vRouter; the decision does not depend on time
    try:
        facts = flow_facts(frame, vrf)
    except Malformed as e:
        return Outcome(f"flow_{e.reason}")
    src_port: PortConfig | None = None
    if in_vif != FABRIC_VIF:
        src_port = index.ports.get(in_vif)
        if src_port is None:
            return Outcome("flow_unknown_vif")
        if src_port.vrf != vrf:
            return Outcome("flow_vrf_mismatch")
    dst_port = index.local_port(vrf, facts.dst)
    action = decide(facts, src_port, dst_port, policy)
    request = FlowRequest(facts.key(), facts.reverse_key(), action)
    return Outcome(f"flow_{action}", flows=(request,))
