"""A host on a lab's underlay bridge with the Linux kernel's own VXLAN device: the interop peer
of the tests and the baseline of the overlay benchmark. The caller removes the namespace."""

from dataclasses import dataclass

from openvpc.lab import netns

VXLAN_PORT = 4789
DEVICE = "vx0"


@dataclass(frozen=True, slots=True)
class KernelVtep:
    ns: str  # the namespace to create
    bridge_ns: str  # the namespace holding the underlay bridge
    bridge_port: str  # this host's veth end on the bridge
    underlay: str  # "a.b.c.d/len" on the underlay
    vni: int
    remote: str  # the one VTEP it tunnels to
    overlay: str  # "a.b.c.d/len" on the VXLAN device
    gateway: str | None = None  # a default route on the underlay (l3)
    mac: str | None = None  # the VXLAN device's MAC (kernel-chosen if None)
    mtu: int = 1450
    bridge: str = "br0"

    @property
    def ip(self) -> str:
        return self.underlay.split("/")[0]


def add_kernel_vtep(v: KernelVtep, fabric_mtu: int = 1500) -> None:
    netns.create_netns(v.ns)
    netns.add_veth(v.ns, "u0", v.bridge_ns, v.bridge_port, fabric_mtu)
    netns.enslave(v.bridge_ns, v.bridge_port, v.bridge)
    netns.add_address(v.ns, "u0", v.underlay)
    if v.gateway is not None:
        netns.add_route(v.ns, "default", v.gateway)
    with netns.rtnl(v.ns) as ipr:
        ipr.link(
            "add",
            ifname=DEVICE,
            kind="vxlan",
            vxlan_id=v.vni,
            vxlan_group=v.remote,
            vxlan_local=v.ip,
            vxlan_port=VXLAN_PORT,
            vxlan_learning=0,
        )
    if v.mac is not None:
        netns.set_mac(v.ns, DEVICE, v.mac)
    netns.set_up(v.ns, DEVICE, v.mtu)
    netns.add_address(v.ns, DEVICE, v.overlay)
