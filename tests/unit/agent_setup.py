"""A NodeConfig for the agent's punt handler tests, matching node 1 of `vrouter_setup`.

Tenant red's VRF 1 holds vm1 (vif 3, 10.0.1.3) and vm2 (vif 4, 10.0.1.4) here and vm4
(10.0.1.9) on node 2; vm1 may claim the VIP 10.0.1.100, which lives on node 2 for now. Tenant
blue's VRF 2 overlaps: its vm5 (vif 5) has 10.0.1.3 too, and its own DNS names.
"""

from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Packet
from vrouter_setup import VM1, VM2

from openvpc.model.forwarding import VROUTER_MAC
from openvpc.model.nodeconfig import (
    DnsRecord,
    NextHopConfig,
    NodeConfig,
    PortConfig,
    RouteConfig,
)
from openvpc.packet.ethernet import mac_to_str
from openvpc.vrouter.punt import Punt, build_punt

GATEWAY_MAC = mac_to_str(VROUTER_MAC)
VIP = "10.0.1.100"
DNS_IP = "10.0.0.2"
REMOTE_NH = "tunnel:vxlan:10.1.0.2"


def port(
    vif: int, vrf: int, mac: str, ip: str, learn_ips: tuple[str, ...] = (), **more: object
) -> PortConfig:
    fields: dict[str, object] = {
        "vif": vif,
        "interface_id": f"eni-{vif}",
        "instance_id": f"i-{vif}",
        "name": f"vm{vif}",
        "netns": f"vm{vif}",
        "ifname": "eth0",
        "vrf": vrf,
        "mac": mac,
        "ip": ip,
        "prefix_len": 24,
        "gateway": "10.0.1.1",
        "dns": DNS_IP,
        "domain": "ec2.internal",
        "hostname": "ip-" + ip.replace(".", "-"),
        "mtu": 1450,
        "learn_ips": learn_ips,
        **more,
    }
    return PortConfig(**fields)  # type: ignore[arg-type]


PORT1 = port(VM1.vif, 1, mac_to_str(VM1.mac), "10.0.1.3", learn_ips=(VIP,))
PORT2 = port(VM2.vif, 1, mac_to_str(VM2.mac), "10.0.1.4")
PORT5 = port(5, 2, "02:00:00:02:00:05", "10.0.1.3")


def vip_route(nh: str, label: int | None = None) -> RouteConfig:
    return RouteConfig(1, f"{VIP}/32", nh, label)


def node_config(vip: RouteConfig | None = None, generation: int = 1) -> NodeConfig:
    """Node 1's config; `vip` is where VRF 1 sends the VIP (on node 2 by default)."""
    records = [
        DnsRecord(1, "r1.ec2.internal", "10.0.1.3"),
        DnsRecord(1, "i-3.ec2.internal", "10.0.1.3"),
        DnsRecord(1, "ip-10-0-1-3.ec2.internal", "10.0.1.3"),
        DnsRecord(1, "r2.ec2.internal", "10.0.1.4"),
        DnsRecord(1, "r4.ec2.internal", "10.0.1.9"),
        DnsRecord(2, "secret.ec2.internal", "10.0.1.77"),
        DnsRecord(2, "r1.ec2.internal", "10.0.1.3"),
    ]
    return NodeConfig(
        node="node1",
        generation=generation,
        nexthops=(
            NextHopConfig("encap:3", "encap", vif=3, dst_mac=PORT1.mac),
            NextHopConfig("encap:4", "encap", vif=4, dst_mac=PORT2.mac),
            NextHopConfig("encap:5", "encap", vif=5, dst_mac=PORT5.mac),
            NextHopConfig(REMOTE_NH, "tunnel", encap="vxlan", dst_ip="10.1.0.2"),
        ),
        ports=(PORT1, PORT2, PORT5),
        routes=(
            RouteConfig(1, "10.0.1.3/32", "encap:3", mac=PORT1.mac),
            RouteConfig(1, "10.0.1.4/32", "encap:4", mac=PORT2.mac),
            RouteConfig(1, "10.0.1.9/32", REMOTE_NH, 100),
            vip if vip is not None else vip_route(REMOTE_NH, 100),
            RouteConfig(2, "10.0.1.3/32", "encap:5", mac=PORT5.mac),
        ),
        dns=tuple(records),
    )


CONFIG = node_config()


def punt_of(reason: Punt, p: PortConfig, frame: Packet | bytes) -> bytes:
    """The punt the vRouter would send for `frame` from `p`'s vif."""
    return build_punt(reason, p.vif, p.vrf, bytes(frame))


def checksums_ok(frame: bytes) -> bool:
    """Whether scapy computes the same IPv4 and UDP checksums as the frame carries."""
    pkt = Ether(frame)
    sent_ip, sent_udp = pkt[IP].chksum, pkt[UDP].chksum
    del pkt[IP].chksum
    del pkt[UDP].chksum
    again = Ether(bytes(pkt))
    return bool(again[IP].chksum == sent_ip and again[UDP].chksum == sent_udp)
