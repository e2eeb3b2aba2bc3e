"""Lookups over one NodeConfig that the punt handlers need, built once per config."""

from openvpc.agent.dns_proxy import Zone
from openvpc.model.nodeconfig import NextHopConfig, NodeConfig, PortConfig, RouteConfig


class ConfigIndex:
    """Ports by vif, host (/32) routes by (VRF, address), next hops by key, DNS zones by VRF."""

    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self.ports: dict[int, PortConfig] = {p.vif: p for p in config.ports}
        self.nexthops: dict[str, NextHopConfig] = {nh.key: nh for nh in config.nexthops}
        self.host_routes: dict[tuple[int, str], RouteConfig] = {
            (r.vrf, r.prefix[:-3]): r for r in config.routes if r.prefix.endswith("/32")
        }
        self._zones: dict[int, Zone] = {}

    def zone(self, vrf: int) -> Zone:
        zone = self._zones.get(vrf)
        if zone is None:
            zone = self._zones[vrf] = Zone.of(self.config.dns, vrf)
        return zone

    def local_vif(self, vrf: int, ip: str) -> int | None:
        """The vif on this node that `vrf`'s host route for `ip` delivers to, if any."""
        route = self.host_routes.get((vrf, ip))
        nh = self.nexthops.get(route.nh) if route is not None else None
        if nh is None or nh.kind != "encap":
            return None
        return nh.vif

    def location(self, vrf: int, ip: str) -> str | None:
        """Where `vrf` sends `ip` by its host route: "vif:N" for a local vif, else the next
        hop and label ("nh:tunnel:vxlan:172.16.2.11:5001"); None without a host route."""
        vif = self.local_vif(vrf, ip)
        if vif is not None:
            return f"vif:{vif}"
        route = self.host_routes.get((vrf, ip))
        return None if route is None else f"nh:{route.nh}:{route.label}"

    def local_port(self, vrf: int, ip: str) -> PortConfig | None:
        """The port on this node that `vrf` delivers `ip` to, if any."""
        vif = self.local_vif(vrf, ip)
        return None if vif is None else self.ports.get(vif)
