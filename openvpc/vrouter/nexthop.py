"""Next hops: what a route or a MAC entry points to (Contrail's nh table kinds)."""

from dataclasses import dataclass

from openvpc.model.forwarding import Encap
from openvpc.model.rules import NetworkAclConfig


@dataclass(frozen=True, slots=True)
class EncapNH:
    """Deliver to a local vif, rewriting the Ethernet header when routed."""

    vif: int
    dst_mac: bytes
    src_mac: bytes


@dataclass(frozen=True, slots=True)
class TunnelNH:
    """Send to a remote vRouter; the label or VNI comes from the route that points here."""

    encap: Encap
    dst_ip: bytes


@dataclass(frozen=True, slots=True)
class ReceiveNH:
    """Addressed to the vRouter itself (a gateway address)."""


@dataclass(frozen=True, slots=True)
class L2ReceiveNH:
    """A frame to the gateway MAC in an L2 network: strip L2 and route it in its VRF."""


@dataclass(frozen=True, slots=True)
class DiscardNH:
    """Drop, counted."""


@dataclass(frozen=True, slots=True)
class ResolveNH:
    """Punt to the agent to resolve."""


@dataclass(frozen=True, slots=True)
class CompositeNH:
    """ECMP (one member per flow) or replication (every member); members are (nh, label)."""

    ecmp: bool
    members: tuple[tuple[int, int | None], ...]


@dataclass(frozen=True, slots=True)
class NatNH:
    """1:1 stateless NAT (docs/internet.md): the source (or, with `dst`, the destination)
    address found in `table` is rewritten to its value and the packet continues in VRF `vrf`;
    an address not in the table has no way out (dropped). With `gateway`, NAT gateway
    `gateway`'s stateful source NAT instead (stages/natgw.py): `table` holds its private
    address and its Elastic IP."""

    dst: bool
    vrf: int
    table: tuple[tuple[bytes, bytes], ...]
    gateway: str = ""
    acl: NetworkAclConfig | None = None  # the NAT gateway's subnet's, checked per packet

    def translate(self, addr: bytes) -> bytes | None:
        return next((to for frm, to in self.table if frm == addr), None)


NextHop = EncapNH | TunnelNH | ReceiveNH | L2ReceiveNH | DiscardNH | ResolveNH | CompositeNH | NatNH

DISCARD_NH_ID = 0
