"""What a punt handler decides: frames to inject, flows to install, addresses to report.

Handlers never raise on bad input: they return an `Outcome` with nothing to do and a reason the
agent counts (snake_case, prefixed by the handler: "dhcp_chaddr_mismatch").
"""

from dataclasses import dataclass
from typing import Any, Literal

from openvpc.vrouter.punt import Punt, build_punt

FlowVerdict = Literal["forward", "drop"]
# (vrf, protocol, source ip, destination ip, source port, destination port), addresses as text
FlowKeyText = tuple[int, int, str, str, int, int]


@dataclass(frozen=True, slots=True)
class Learned:
    """An address a VM claimed by gratuitous ARP, for the controller's Learn call."""

    interface_id: str
    ip: str


@dataclass(frozen=True, slots=True)
class FlowRequest:
    """A flow for the vRouter's `flow` control op: both directions and one action."""

    key: FlowKeyText
    reverse: FlowKeyText | None
    action: FlowVerdict

    def fields(self) -> dict[str, Any]:
        """The request's fields as `ControlClient.request("flow", **fields)` takes them."""
        return {
            "key": list(self.key),
            "reverse": None if self.reverse is None else list(self.reverse),
            "action": self.action,
        }


@dataclass(frozen=True, slots=True)
class Outcome:
    """The answer to one punted frame; `reason` is counted whether or not there is work."""

    reason: str
    injects: tuple[tuple[int, bytes], ...] = ()  # (vif, Ethernet frame)
    flows: tuple[FlowRequest, ...] = ()
    learned: tuple[Learned, ...] = ()
    detail: str = ""  # for the log: what went wrong, when something did

    @property
    def acted(self) -> bool:
        return bool(self.injects or self.flows or self.learned)

    def inject_packets(self) -> list[bytes]:
        """The injects in the agent-header format the control channel's packet frames carry."""
        return [build_punt(Punt.INJECT, vif, 0, frame) for vif, frame in self.injects]
