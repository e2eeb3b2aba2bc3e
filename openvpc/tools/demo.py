"""The in-memory demo: two tenants with the same 10.0.0.0/16 on two compute nodes, every
encapsulation and both underlays; real frames, expected vs observed reachability."""

import ipaddress
from dataclasses import dataclass

from openvpc.lab.sim import SimLab
from openvpc.model.forwarding import Encap
from openvpc.tools.fabric_view import describe

SCHEMES: tuple[tuple[str, Encap], ...] = (
    ("l2", Encap.VLAN),
    ("l2", Encap.VXLAN),
    ("l3", Encap.VXLAN),
    ("l3", Encap.MPLSOUDP),
    ("l3", Encap.MPLSOGRE),
)
# (name, node, address, MAC): both tenants use the same addresses and the same MACs
VMS = (
    ("web", "node1", "10.0.1.10", "02:00:0a:00:01:0a"),
    ("app", "node1", "10.0.2.20", "02:00:0a:00:02:14"),
    ("db", "node2", "10.0.2.30", "02:00:0a:00:02:1e"),
)
TENANTS = ("red", "blue")


@dataclass(frozen=True)
class Row:
    scheme: str
    source: str
    target: str
    expected: str  # who should answer: a VM name, "gateway", or "nobody"
    observed: str
    carried_by: str

    @property
    def ok(self) -> bool:
        return self.expected == self.observed


def _addr(text: str) -> bytes:
    return ipaddress.IPv4Address(text).packed


def run_scheme(underlay: str, encap: Encap) -> list[Row]:
    """Build the two-tenant lab on one scheme and probe every pair, one probe at a time."""
    lab = SimLab(2, "l2" if underlay == "l2" else "l3")
    vpcs = {t: lab.add_vpc(t, "vpc", ["10.0.1.0/24", "10.0.2.0/24"], encap=encap) for t in TENANTS}
    for tenant in TENANTS:
        for name, node, ip, mac in VMS:
            lab.add_vm(vpcs[tenant], f"{tenant}-{name}", node, ip, mac=mac)
    lab.build()
    scheme = f"{encap} / {underlay} underlay"
    rows = []
    probes: list[tuple[str, str, str]] = []
    for tenant in TENANTS:
        src = f"{tenant}-web"
        for name, _node, ip, _mac in VMS[1:]:
            probes.append((src, ip, f"{tenant}-{name}"))
        probes.append((src, "10.0.1.1", "gateway"))  # its own subnet's gateway
        probes.append((src, "10.0.2.1", "nobody"))  # another subnet's gateway
        probes.append((src, "10.0.1.255", "nobody"))  # broadcast: not forwarded in l3
    for seq, (src, target, expected) in enumerate(probes, start=1):
        before = len(lab.fabric_frames)
        lab.vm(src).ping(_addr(target), ident=7, seq=seq)
        lab.run()
        answered = [
            name
            for name, port in lab.ports.items()
            if any(
                r.kind == "echo_request" and r.detail[2] & 0xFFFF == seq for r in port.vm.received
            )
        ]
        got_reply = any(
            r.kind == "echo_reply" and r.detail[2] & 0xFFFF == seq for r in lab.vm(src).received
        )
        observed = ",".join(sorted(answered)) or ("gateway" if got_reply else "nobody")
        carried = sorted({describe(f) for _, f in lab.fabric_frames[before:]} - {"arp"})
        rows.append(Row(scheme, src, target, expected, observed, ", ".join(carried) or "local"))
    return rows


def run_demo() -> list[Row]:
    return [row for underlay, encap in SCHEMES for row in run_scheme(underlay, encap)]


def figure13_walk() -> str:
    """The seed's Figure 13 walk, as the pipeline recorded it: red-web pings red-db over GRE."""
    lab = SimLab(2, "l3")
    vpc = lab.add_vpc(
        "red", "vpc", ["10.0.1.0/24", "10.0.2.0/24"], encap=Encap.MPLSOGRE, link_local=True
    )
    src = lab.add_vm(vpc, "vm-1a", "node1", "10.0.1.10")
    lab.add_vm(vpc, "vm-2a", "node2", "10.0.2.30")
    lab.build()
    steps: list[tuple[str, str, str]] = []
    lab.recorder = lambda stage, detail: steps.append((lab.current_node, stage, detail))
    src.ping(_addr("10.0.2.30"))
    lab.run()
    lines = []
    for node, stage, detail in steps:
        lines.append(f"{node:<6} {stage:<12} {detail}")
        if node == "node2" and stage == "tx" and detail.startswith("vif 2 "):
            break  # delivered to vm-2a
    return "\n".join(lines)
