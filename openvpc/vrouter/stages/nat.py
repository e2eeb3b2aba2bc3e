"""The NAT next hop: 1:1 stateless translation between a private address of a VRF and its
public (Elastic IP) address, after which the packet goes on in another VRF
(docs/internet.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from openvpc.packet.ipv4 import IPv4, ip_to_str, parse_ipv4
from openvpc.packet.l4 import l4_ports
from openvpc.vrouter.drops import Drop
from openvpc.vrouter.nexthop import NatNH
from openvpc.vrouter.trace import Stage

if TYPE_CHECKING:
    from openvpc.vrouter.pipeline import Pass


def nat_nexthop(run: Pass, nh: NatNH, packet: bytes, ip: IPv4, depth: int) -> None:
    """Rewrite the source (outbound) or destination (inbound) address and route on in the
    next hop's VRF. Inbound goes through that VRF's flow stage (the receiving port's security
    groups decide); outbound was decided by the flow stage of the VRF it came from."""
    from openvpc.vrouter.stages import route  # route imports this module

    addr = ip.dst if nh.dst else ip.src
    to = nh.translate(addr)
    vrf = run.t.vrfs.get(nh.vrf)
    if to is None or vrf is None:
        return run.drop(Drop.NO_ROUTE)  # no public address: no way out (or in)
    run.rewrites()  # a super-frame goes segment by segment: checksums are recomputed
    ports = l4_ports(packet, ip)
    src, dst = (ip.src, to) if nh.dst else (to, ip.dst)
    packet = route.nat_rewrite(packet, ip, (src, dst, *ports))
    ip = parse_ipv4(packet, verify=False)
    if run.rec is not None:
        side = "destination" if nh.dst else "source"
        run.rec(Stage.NEXTHOP, f"nat {side} {ip_to_str(addr)} -> {ip_to_str(to)} in {vrf.name}")
    if nh.dst:
        return route.route(run, vrf, packet, ip, depth + 1)
    found = vrf.ip_fib.lookup(ip.dst)
    if found is None:
        return run.drop(Drop.NO_ROUTE)
    route.ip_nexthop(run, vrf, found.nh, found.label, found.mac, packet, ip, ports, depth + 1)
