"""A NodeConfig as stable, line-per-object text: golden tests, `openvpc status`, diffs."""

from openvpc.model.nodeconfig import NextHopConfig, NodeConfig, PortConfig


def _label(label: int | None) -> str:
    return "" if label is None else f" label {label}"


def _nexthop(nh: NextHopConfig) -> str:
    if nh.kind == "encap":
        return f"nh {nh.key}: encap vif {nh.vif} mac {nh.dst_mac}"
    if nh.kind == "tunnel":
        return f"nh {nh.key}: tunnel {nh.encap} to {nh.dst_ip}"
    if nh.kind == "composite":
        members = ", ".join(f"{key}{_label(label)}" for key, label in nh.members)
        return f"nh {nh.key}: {'ecmp' if nh.ecmp else 'replicate'} [{members}]"
    if nh.kind == "nat":
        pairs = ", ".join(f"{a} > {b}" for a, b in nh.nat)
        if nh.nat_gateway:
            return f"nh {nh.key}: nat gateway {nh.nat_gateway} {nh.nat_side} [{pairs}]"
        return f"nh {nh.key}: nat {nh.nat_side} [{pairs}] then vrf {nh.nat_vrf}"
    return f"nh {nh.key}: {nh.kind}"


def _policy(p: PortConfig) -> str:
    """A port's compiled policy in numbers ("" when none is compiled, as before groups)."""
    parts = []
    if p.security_groups is not None:
        sg = p.security_groups
        parts.append(f"groups ingress {len(sg.ingress)} egress {len(sg.egress)} rules")
    if p.network_acl is not None:
        acl = p.network_acl
        parts.append(
            f"acl {acl.id} on {acl.subnet} inbound {len(acl.ingress)}"
            f" outbound {len(acl.egress)} entries"
        )
    return f"policy vif {p.vif}: {', '.join(parts)}" if parts else ""


def render(config: NodeConfig) -> str:
    lines = [f"node {config.node} generation {config.generation}"]
    for v in config.vrfs:
        lines.append(
            f"vrf {v.id} {v.name}: mode {v.mode} encap {v.encap} vni {v.vni} vlan {v.vlan}"
            f" labels l3 {v.l3_label} l2 {v.l2_label} arp {v.arp_mode}"
        )
    lines.extend(_nexthop(nh) for nh in config.nexthops)
    for p in config.ports:
        lines.append(
            f"vif {p.vif} {p.interface_id} {p.instance_id} {p.name} in {p.netns}/{p.ifname}:"
            f" vrf {p.vrf} mac {p.mac} ip {p.ip}/{p.prefix_len} gateway {p.gateway}"
            f" dns {p.dns} mtu {p.mtu} host {p.hostname}.{p.domain}"
            f" source_check {p.source_check} allowed {list(p.allowed_ips)}"
        )
    lines.extend(line for p in config.ports if (line := _policy(p)))
    for r in config.routes:
        mac = "" if r.mac is None else f" mac {r.mac}"
        lines.append(f"route vrf {r.vrf} {r.prefix} -> {r.nh}{_label(r.label)}{mac}")
    for m in config.mac_routes:
        lines.append(f"mac vrf {m.vrf} {m.mac} -> {m.nh}{_label(m.label)}")
    lines.extend(f"dns vrf {d.vrf} {d.name} {d.ip}" for d in config.dns)
    return "\n".join(lines) + "\n"
