"""Routes a punted frame to its handler by the agent header's reason. Pure, one caller thread.

`PuntState` is what the handlers remember between punts (the learned-address claims and the
lookups built over the current NodeConfig); the agent keeps one and passes it to every call.
"""

from dataclasses import dataclass, field

from openvpc.agent import arp_learn, dhcp_server, dns_proxy, flow_policy
from openvpc.agent.config_index import ConfigIndex
from openvpc.agent.outcome import Outcome
from openvpc.model.nodeconfig import NodeConfig
from openvpc.packet.errors import Malformed
from openvpc.vrouter.punt import Punt, parse_punt

_PORT_PUNTS = {Punt.DHCP: "dhcp", Punt.DNS: "dns", Punt.ARP: "arp"}  # answered for a port
_REASONS = {p.value: p for p in Punt}


@dataclass
class PuntState:
    claims: arp_learn.Claims = field(default_factory=dict)
    index: ConfigIndex | None = None

    def index_for(self, config: NodeConfig) -> ConfigIndex:
        """The lookups over `config`, rebuilt when a new config object arrives."""
        if self.index is None or self.index.config is not config:
            self.index = ConfigIndex(config)
        return self.index


def handle_punt(data: bytes, config: NodeConfig, state: PuntState, now: float) -> Outcome:
    """Decide what to do with one frame from the vRouter's agent vif; never raises."""
    try:
        return _dispatch(data, config, state, now)
    except Exception as e:  # a bug must cost one frame, not the agent's punt worker
        return Outcome("agent_handler_error", detail=f"{type(e).__name__}: {e}")


def _dispatch(data: bytes, config: NodeConfig, state: PuntState, now: float) -> Outcome:
    try:
        header, frame = parse_punt(data)
    except Malformed as e:
        return Outcome(f"punt_{e.reason}")
    reason = _REASONS.get(header.reason)
    if reason is None:
        return Outcome("punt_unknown_reason")
    index = state.index_for(config)
    if reason is Punt.FLOW_MISS:
        return flow_policy.handle_flow_miss(frame, header.vif, header.vrf, index, now)
    name = _PORT_PUNTS.get(reason)
    if name is None:
        return Outcome(f"punt_unhandled_{reason.name.lower()}")
    port = index.ports.get(header.vif)
    if port is None:
        return Outcome(f"{name}_unknown_vif")
    if port.vrf != header.vrf:  # tables and config disagree: answer nothing rather than leak
        return Outcome(f"{name}_vrf_mismatch")
    if reason is Punt.DHCP:
        return dhcp_server.handle_dhcp(frame, port, now)
    if reason is Punt.DNS:
        return dns_proxy.handle_dns(frame, port, index.zone(port.vrf), now)
    outcome, state.claims = arp_learn.handle_arp(frame, port, index, state.claims, now)
    return outcome
