"""A recorder for the pipeline: each stage notes what it did, for `openvpc trace` and tests.
`Stage` names every record; docs/forwarding.md lists them."""

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum


class Stage(StrEnum):
    """What a trace step is about; the values are what traces print."""

    VIF = "vif"  # a frame received on a vif
    ARP = "arp"  # an ARP request the forwarding plane does not answer
    ARP_PROXY = "arp_proxy"  # an ARP request answered in the forwarding plane
    FALLBACK = "fallback"  # l2_l3: an IP FIB hit routes instead of switching
    IP_FIB = "ip_fib"  # the VRF's IP FIB lookup
    FLOW = "flow"  # the flow table: miss, hold or hit
    NEXTHOP = "nexthop"  # the next hop a route or a MAC entry points to
    ECMP = "ecmp"  # the member of an ECMP next hop a flow takes
    MTU = "mtu"  # a packet larger than its next hop's MTU
    RECEIVE = "receive"  # a packet to a gateway address
    MAC_FIB = "mac_fib"  # the VRF's MAC FIB lookup
    L2_RECEIVE = "l2_receive"  # a frame to the gateway MAC in an L2 network: routed
    ENCAP = "encap"  # the tunnel header (or 802.1Q tag) toward another node
    GLOBAL_FIB = "global_fib"  # the underlay route toward a node, or our own address
    UNDERLAY_ARP = "underlay_arp"  # the underlay neighbour table
    DECAP = "decap"  # the outer IPv4 header and its GRE or UDP
    MPLS = "mpls"  # the MPLS label: which VRF
    VXLAN = "vxlan"  # the VNI: which VRF
    VLAN = "vlan"  # the 802.1Q tag: which VRF
    AGENT = "agent"  # a frame the agent injects
    PUNT = "punt"  # sent up to the agent
    DROP = "drop"  # dropped, with the counted reason
    TX = "tx"  # sent out of a vif


Recorder = Callable[[Stage, str], None]


@dataclass
class Trace:
    """Collects (stage, detail) steps; pass an instance as the pipeline's recorder."""

    steps: list[tuple[str, str]] = field(default_factory=list)

    def __call__(self, stage: str, detail: str) -> None:
        self.steps.append((stage, detail))

    def stages(self) -> list[str]:
        return [s for s, _ in self.steps]

    def render(self) -> str:
        return "\n".join(f"{stage:<12} {detail}" for stage, detail in self.steps)
