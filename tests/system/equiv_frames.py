"""A seeded generator of frames for the equivalence test: every class of traffic a vRouter
sees from its VMs and from the fabric, valid and malformed, each tagged with its class and
whether the fast path must handle it (never send it up)."""

import random
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from equiv_scenario import (
    ENCAPS,
    FABRIC_IP,
    FABRIC_MAC,
    REMOTES,
    VRF_SPECS,
    Scenario,
    Target,
    Vm,
    l2_label,
    l3_label,
    vni,
)

from openvpc.model.forwarding import LINK_LOCAL_GATEWAY, VROUTER_MAC, Encap, overhead
from openvpc.packet.arp import ARP_REPLY, ARP_REQUEST, build_arp
from openvpc.packet.ethernet import (
    BROADCAST,
    ETH_P_8021Q,
    ETH_P_ARP,
    ETH_P_IP,
    ETH_P_MPLS,
    ZERO_MAC,
)
from openvpc.packet.ipv4 import PROTO_GRE, PROTO_ICMP, PROTO_TCP, PROTO_UDP, build_ipv4
from openvpc.packet.l4 import TCP_ACK, TCP_SYN, build_icmp, build_tcp, build_udp
from openvpc.packet.tunnel import build_gre, build_mpls, build_vxlan
from openvpc.vrouter.flow import FlowAction

VIF = "vif"
FABRIC = "fabric"
_ETH = struct.Struct("!6s6sH")
_MODE = {spec[0]: spec[1] for spec in VRF_SPECS}
_VLAN = {spec[0]: spec[3] for spec in VRF_SPECS}
_REMOTE_SRC = {e: (bytes(int(x) for x in ip.split(".")), bytes.fromhex(mac))
               for e, (ip, mac) in REMOTES.items()}  # fmt: skip
_OTHER_MAC = bytes.fromhex("02dd00000001")
_MALFORMED = (
    "truncated",
    "truncated",
    "ip_checksum",
    "ip_version",
    "ip_ihl",
    "ip_total_length",
    "udp_length",
    "byte_flip",
    "inner_truncated",
)


@dataclass(frozen=True)
class Frame:
    cls: str
    port: str  # VIF or FABRIC
    vif: int  # the input vif (the fabric's for FABRIC)
    data: bytes
    must: bool  # the fast path must decide it itself


def eth(dst: bytes, src: bytes, ethertype: int, payload: bytes) -> bytes:
    return _ETH.pack(dst, src, ethertype) + payload


class Generator:
    """Frames by weighted class; `malformed` variants mutate a valid frame of any class."""

    def __init__(self, scenario: Scenario, seed: int) -> None:
        self.s = scenario
        self.r = random.Random(seed)
        self.senders = [vm for vm in scenario.vms if vm.attached]
        self.routers = [v for v in self.senders if _MODE[v.vrf] != "l2"]
        self.bridgers = [v for v in self.senders if _MODE[v.vrf] != "l3"]
        # the VRFs whose vRouter-decided ports have security groups or a network ACL
        self.ruled_vrfs = sorted({v.vrf for v in scenario.vms if v.ruled})
        self.ruled_routers = [v for v in self.routers if v.vrf in self.ruled_vrfs]
        self._targets: dict[tuple[int, bool], list[Target]] = {}
        self.flows = {key for key, _ in scenario.flows}
        self.nat_flows = {key for key, action in scenario.flows if action is FlowAction.NAT}
        self.classes: list[tuple[Callable[[], Frame], int]] = [
            (self.vm_routed, 30),
            (self.vm_ruled, 6),
            (self.vm_bridged, 10),
            (self.vm_gateway, 6),
            (self.vm_arp, 10),
            (self.vm_dhcp, 1),
            (self.vm_special, 8),
            (self.vm_oversize, 2),
            (self.fabric_decap, 15),
            (self.fabric_ruled, 4),
            (self.fabric_other, 5),
            (self.malformed, 13),
        ]
        self._pick = [c for c, _ in self.classes]
        self._weights = [w for _, w in self.classes]

    def frames(self, n: int) -> Iterator[Frame]:
        for _ in range(n):
            yield self.r.choices(self._pick, self._weights)[0]()

    # -- building blocks ---------------------------------------------------------------
    def payload(self, big: bool = False) -> bytes:
        n = self.r.randint(1400, 1480) if big else self.r.choice((0, 1, 8, 18, 64, 200, 600))
        return self.r.randbytes(n)

    def l4(self, src: bytes, dst: bytes, proto: int, sport: int, dport: int, data: bytes) -> bytes:
        if proto == PROTO_UDP:
            return build_udp(src, dst, sport, dport, data, with_checksum=self.r.random() < 0.8)
        if proto == PROTO_TCP:
            flags = self.r.choice((TCP_SYN, TCP_ACK, TCP_ACK | 0x08, TCP_SYN | TCP_ACK, 0x11))
            return build_tcp(
                src, dst, sport, dport, flags, seq=self.r.getrandbits(32), payload=data
            )
        rest = struct.pack("!HH", sport, self.r.getrandbits(16))
        return build_icmp(8, 0, rest, data)

    def ip(
        self, src: bytes, dst: bytes, proto: int, l4: bytes, ttl: int = 64, df: bool = False
    ) -> bytes:
        return build_ipv4(
            src,
            dst,
            proto,
            l4,
            ttl=ttl,
            df=df,
            ident=self.r.getrandbits(16),
            tos=self.r.choice((0, 0, 0x10)),
        )

    def pad(self, frame: bytes) -> bytes:
        """Ethernet padding as a NIC adds it to short frames, now and then."""
        if len(frame) < 60 and self.r.random() < 0.3:
            return frame + bytes(60 - len(frame))
        return frame

    def tuple_for(self, vm: Vm, dst: bytes) -> tuple[int, int, int, bool]:
        """(proto, sport, dport, flow installed): an installed flow's tuple half the time."""
        if vm.policy and self.r.random() < 0.6:
            proto, sport, dport = self.r.choice(
                (
                    (PROTO_UDP, 40000, 53),
                    (PROTO_TCP, 40001, 80),
                    (PROTO_ICMP, 77, 77),
                    (PROTO_TCP, 40002, 22),
                    (PROTO_UDP, 40003, 5353),
                )
            )
        else:
            proto = self.r.choice((PROTO_UDP, PROTO_TCP, PROTO_ICMP))
            sport, dport = self.r.randint(1024, 65535), self.r.choice((80, 443, 5001, 9999))
            if proto == PROTO_ICMP:
                dport = sport
        installed = (vm.vrf, proto, vm.ip, dst, sport, dport) in self.flows
        return proto, sport, dport, installed

    def targets(self, vrf: int, routed: bool) -> list[Target]:
        key = (vrf, routed)
        found = self._targets.get(key)
        if found is None:
            found = self._targets[key] = [
                t
                for t in self.s.targets
                if t.vrf == vrf and (t.ip if routed else t.mac) is not None
            ]
        return found

    def fits(self, target: Target, size: int, l2: bool) -> bool:
        """Whether an IP packet of `size` bytes fits the target's next hop without fragmenting."""
        if target.vm is not None:
            return size <= target.vm.mtu
        if target.kind in ENCAPS:
            return size <= 1500 - overhead(Encap(target.kind), l2)
        return size <= 1400  # an ECMP member: any encap

    # -- from a VM ------------------------------------------------------------------------
    def vm_routed(self) -> Frame:
        vm = self.r.choice(self.routers)
        t = self.r.choice(self.targets(vm.vrf, routed=True))
        assert t.ip is not None
        return self._routed(vm, t, *self.tuple_for(vm, t.ip))

    def vm_ruled(self) -> Frame:
        """New TCP and UDP flows between ports with rules and anything, on the ports the rules
        and ACL entries name and next to them."""
        vm = self.r.choice(self.ruled_routers)
        t = self.r.choice(self.targets(vm.vrf, routed=True))
        assert t.ip is not None
        proto = self.r.choice((PROTO_UDP, PROTO_TCP))
        sport = self.r.choice(_RULE_SPORTS)
        dport = self.r.choice(_RULE_DPORTS)
        installed = (vm.vrf, proto, vm.ip, t.ip, sport, dport) in self.flows
        return self._routed(vm, t, proto, sport, dport, installed)

    def _routed(
        self, vm: Vm, t: Target, proto: int, sport: int, dport: int, installed: bool
    ) -> Frame:
        assert t.ip is not None
        l4 = self.l4(vm.ip, t.ip, proto, sport, dport, self.payload())
        packet = self.ip(vm.ip, t.ip, proto, l4, ttl=self.r.choice((64, 64, 2, 1)))
        frame = self.pad(eth(VROUTER_MAC, vm.mac, ETH_P_IP, packet))
        ttl1 = packet[8] == 1 and any(s[0] == vm.vrf and s[6] for s in VRF_SPECS)
        to_self = t.vm is vm
        needs_flow = vm.policy or (t.vm is not None and t.vm.policy)
        made = needs_flow and not _agent_decides(vm, t.vm)  # the fast path makes TCP/UDP flows
        ruled = made and (vm.ruled or (t.vm is not None and t.vm.ruled))
        overflow = made and t.vm is not None and vm.ip in t.vm.overflow
        must = (
            t.fast
            and not to_self
            and not ttl1
            and (installed or not needs_flow or (made and proto != PROTO_ICMP and not overflow))
            and self.fits(t, len(packet), False)
        )
        nat = (vm.vrf, proto, vm.ip, t.ip, sport, dport) in self.nat_flows
        if to_self:
            cls = "vm_routed_to_self"
        elif nat:
            cls, must = f"vm_routed_nat_{t.kind}", False
        elif installed:
            cls = f"vm_routed_flow_{t.kind}"
        elif needs_flow:
            how = "made" if made else "miss"
            how += "_ruled" if ruled else ""
            how += "_overflow" if overflow else ""
            cls = f"vm_routed_flow_{how}_{t.kind}"
        else:
            cls = f"vm_routed_{t.kind}"
        return Frame(cls + ("_ttl1" if ttl1 else ""), VIF, vm.vif, frame, must)

    def vm_bridged(self) -> Frame:
        vm = self.r.choice(self.bridgers)
        t = self.r.choice(
            [*self.targets(vm.vrf, routed=False), Target("unknown_mac", vm.vrf, mac=_OTHER_MAC)]
        )
        assert t.mac is not None
        dst_ip = bytes([10, vm.vrf, 1, 200])  # in no IP FIB: bridged in l2_l3 too
        if self.r.random() < 0.25:
            frame = eth(t.mac, vm.mac, 0x88B6, self.r.randbytes(self.r.choice((46, 100, 300))))
            size, cls = len(frame) - 14, f"vm_bridged_non_ip_{t.kind}"
        else:
            proto = self.r.choice((PROTO_UDP, PROTO_TCP, PROTO_ICMP))
            sport = self.r.randint(1024, 65535)
            l4 = self.l4(
                vm.ip, dst_ip, proto, sport, sport if proto == PROTO_ICMP else 80, self.payload()
            )
            packet = self.ip(vm.ip, dst_ip, proto, l4)
            frame = self.pad(eth(t.mac, vm.mac, ETH_P_IP, packet))
            size, cls = len(packet), f"vm_bridged_{t.kind}"
        to_self = t.vm is vm
        must = t.fast and not to_self and self.fits(t, size, True)
        return Frame(cls if not to_self else "vm_bridged_to_self", VIF, vm.vif, frame, must)

    def vm_gateway(self) -> Frame:
        vm = self.r.choice([v for v in self.senders if _MODE[v.vrf] != "l2"])
        link_local = any(s[0] == vm.vrf and s[5] for s in VRF_SPECS)
        choice = self.r.random()
        gw = LINK_LOCAL_GATEWAY if link_local and self.r.random() < 0.3 else vm.gateway
        if choice < 0.6:
            data = self.payload()
            l4 = build_icmp(8, 0, struct.pack("!HH", self.r.getrandbits(16), 1), data)
            other = vm.vrf == 1 and vm.vif != 14 and self.r.random() < 0.3
            dst = bytes([10, 1, 2, 1]) if other else gw
            cls, must = (
                ("vm_gateway_ping_other_subnet", False)
                if other
                else ("vm_gateway_ping", not vm.policy)
            )
        elif choice < 0.8:
            l4 = build_udp(vm.ip, gw, self.r.randint(1024, 65535), 53, self.payload())
            dst, cls, must = gw, "vm_dns", False
        else:
            l4 = build_udp(vm.ip, gw, self.r.randint(1024, 65535), 161, self.payload())
            dst, cls, must = gw, "vm_gateway_udp", False
        proto = PROTO_ICMP if choice < 0.6 else PROTO_UDP
        packet = self.ip(vm.ip, dst, proto, l4)
        return Frame(cls, VIF, vm.vif, self.pad(eth(VROUTER_MAC, vm.mac, ETH_P_IP, packet)), must)

    def vm_arp(self) -> Frame:
        vm = self.r.choice(self.senders)
        mode = _MODE[vm.vrf]
        op, spa, tpa = ARP_REQUEST, vm.ip, vm.gateway
        answered = True
        roll = self.r.random()
        if roll < 0.3:
            cls = "arp_request_gateway"
        elif roll < 0.5 and vm.vif != 14:  # 14 is alone in its subnet
            peers = [
                v for v in self.s.vms if v.vrf == vm.vrf and v is not vm and v.ip[:3] == vm.ip[:3]
            ]
            tpa = self.r.choice(peers).ip
            cls = "arp_request_vm"
            answered = mode != "l2" or self._single_mac(vm.vrf)
        elif roll < 0.6:
            tpa, cls = bytes([10, vm.vrf, 1, 77]), "arp_request_unknown"
            answered = self._single_mac(vm.vrf)
        elif roll < 0.7:
            tpa, cls, answered = vm.ip, "arp_request_self", False
        elif roll < 0.8:
            tpa, cls, answered = spa, "arp_gratuitous", False
        elif roll < 0.85:
            spa, cls, answered = bytes(4), "arp_probe", False
        else:
            op, cls, answered = ARP_REPLY, "arp_reply", False
        tha = ZERO_MAC if op == ARP_REQUEST else VROUTER_MAC
        body = build_arp(op, vm.mac, spa, tha, tpa)
        frame = eth(BROADCAST if op == ARP_REQUEST else VROUTER_MAC, vm.mac, ETH_P_ARP, body)
        if self.r.random() < 0.3:
            frame += bytes(18)
            cls += "_padded"
        return Frame(cls, VIF, vm.vif, frame, answered)

    def _single_mac(self, vrf: int) -> bool:
        return any(s[0] == vrf and s[4] == "single_mac" for s in VRF_SPECS)

    def vm_dhcp(self) -> Frame:
        vm = self.r.choice(self.senders)
        udp = build_udp(bytes(4), b"\xff" * 4, 68, 67, self.r.randbytes(300))
        packet = self.ip(bytes(4), b"\xff" * 4, PROTO_UDP, udp)
        return Frame("vm_dhcp", VIF, vm.vif, eth(BROADCAST, vm.mac, ETH_P_IP, packet), False)

    def vm_special(self) -> Frame:
        """Checks and Amazon rules: multicast/broadcast, non-IP, tagged, spoofed, VIPs."""
        vm = self.r.choice(self.senders)
        t = self.r.choice([t for t in self.s.targets if t.vrf == vm.vrf and t.kind in ENCAPS])
        dst_ip = t.ip or bytes([10, vm.vrf, 1, 200])

        def udp(src: bytes, dst: bytes) -> bytes:
            return build_udp(src, dst, 5555, 6666, self.payload())

        roll = self.r.randrange(8)
        if roll == 0:
            dst = self.r.choice(
                (b"\xe0\x00\x00\x05", b"\xff\xff\xff\xff", bytes([10, vm.vrf, 1, 255]))
            )
            frame = eth(
                BROADCAST, vm.mac, ETH_P_IP, self.ip(vm.ip, dst, PROTO_UDP, udp(vm.ip, dst))
            )
            return Frame("vm_multicast", VIF, vm.vif, frame, False)
        if roll == 1:
            frame = eth(VROUTER_MAC, vm.mac, 0x86DD, self.r.randbytes(60))
            return Frame("vm_non_ip", VIF, vm.vif, frame, False)
        if roll == 2:
            packet = self.ip(vm.ip, dst_ip, PROTO_UDP, udp(vm.ip, dst_ip))
            tag = struct.pack("!HH", self.r.choice((0, 7, 101)), ETH_P_IP)
            frame = _ETH.pack(VROUTER_MAC, vm.mac, ETH_P_8021Q) + tag + packet
            return Frame("vm_vlan_tagged", VIF, vm.vif, frame, False)
        if roll == 3:
            packet = self.ip(vm.ip, dst_ip, PROTO_UDP, udp(vm.ip, dst_ip))
            frame = eth(VROUTER_MAC, bytes.fromhex("020000000bad"), ETH_P_IP, packet)
            return Frame("vm_wrong_src_mac", VIF, vm.vif, frame, False)
        src = bytes([10, vm.vrf, 1, self.r.choice((100, 101, 150))])
        packet = self.ip(src, dst_ip, PROTO_UDP, udp(src, dst_ip))
        frame = self.pad(
            eth(t.mac if _MODE[vm.vrf] == "l2" and t.mac else VROUTER_MAC, vm.mac, ETH_P_IP, packet)
        )
        if not vm.source_check:
            cls = "vm_source_check_off"
        elif src in vm.allowed_ips:
            cls = "vm_allowed_ip"
        else:
            cls = "vm_wrong_src_ip"
        must = cls != "vm_wrong_src_ip" and not vm.policy and t.fast and _MODE[vm.vrf] == "l3"
        return Frame(cls, VIF, vm.vif, frame, must)

    def vm_oversize(self) -> Frame:
        vm = self.r.choice([v for v in self.senders if _MODE[v.vrf] != "l2" and not v.policy])
        t = self.r.choice([t for t in self.targets(vm.vrf, routed=True) if t.fast])
        assert t.ip is not None
        df = self.r.random() < 0.5
        udp = build_udp(vm.ip, t.ip, 7000, 7001, self.payload(big=True))
        packet = self.ip(vm.ip, t.ip, PROTO_UDP, udp, df=df)
        frame = eth(VROUTER_MAC, vm.mac, ETH_P_IP, packet)
        return Frame("vm_oversize_df" if df else "vm_oversize", VIF, vm.vif, frame, False)

    # -- from the fabric ---------------------------------------------------------------
    def outer(
        self, encap: str, payload: bytes, src: bytes | None = None, frag: bool = False
    ) -> bytes:
        """The outer Ethernet/IPv4 (+UDP or GRE) around an MPLS or VXLAN payload."""
        node_ip, node_mac = _REMOTE_SRC[encap if encap in _REMOTE_SRC else "vxlan"]
        src = src or node_ip
        if encap == "mplsogre":
            inner, proto = build_gre(ETH_P_MPLS) + payload, PROTO_GRE
        else:
            port = {"vxlan": 4789, "mplsoudp": self.r.choice((6635, 51234))}[encap]
            sport = 49152 + self.r.getrandbits(14)
            inner = build_udp(
                src, FABRIC_IP, sport, port, payload, with_checksum=self.r.random() < 0.3
            )
            proto = PROTO_UDP
        packet = build_ipv4(src, FABRIC_IP, proto, inner, ttl=63, df=True, mf=frag,
                            ident=self.r.getrandbits(16))  # fmt: skip
        return eth(FABRIC_MAC, node_mac, ETH_P_IP, packet)

    def fabric_ruled(self) -> Frame:
        """New flows from remote addresses into ports with rules, on the ports they name."""
        vrf = self.r.choice(self.ruled_vrfs)
        encap = self.r.choice([e for e in ENCAPS if e != "vlan" or _VLAN[vrf] is not None])
        ports = (self.r.choice((PROTO_UDP, PROTO_TCP)), self.r.choice((*_RULE_SPORTS, 33000)))
        return self.fabric_decap(encap, vrf, (*ports, self.r.choice(_RULE_DPORTS)))

    def fabric_decap(
        self,
        encap: str | None = None,
        vrf: int | None = None,
        ruled: tuple[int, int, int] | None = None,
    ) -> Frame:
        """An overlay frame from a remote node to a local VM (or a gateway, or elsewhere)."""
        if encap is None:
            encap = self.r.choice(ENCAPS)
        if vrf is None:
            vrf = self.r.choice([s[0] for s in VRF_SPECS if encap != "vlan" or s[3] is not None])
        mode = _MODE[vrf]
        vm = self.r.choice([v for v in self.s.vms if v.vrf == vrf])
        remote = self.r.choice([t for t in self.s.targets if t.vrf == vrf and t.kind in ENCAPS])
        src_ip = remote.ip or bytes([10, vrf, 3, 11])
        remote_mac = remote.mac or _OTHER_MAC
        proto = self.r.choice((PROTO_UDP, PROTO_TCP, PROTO_ICMP))
        installed = False
        if ruled is not None:
            proto, sport, dport = ruled
            installed = (vrf, proto, src_ip, vm.ip, sport, dport) in self.flows
        elif vm.policy and self.r.random() < 0.6:
            # the reverse of an installed flow: remote -> VM
            proto, sport, dport = self.r.choice(((PROTO_UDP, 53, 40000), (PROTO_TCP, 80, 40001)))
            installed = (vrf, proto, src_ip, vm.ip, sport, dport) in self.flows
        else:
            sport = self.r.randint(1024, 65535)
            dport = sport if proto == PROTO_ICMP else self.r.choice((80, 22, 8080))
        dst_ip = vm.ip
        kind = "local"
        roll = self.r.random()
        if roll < 0.08 and mode != "l2":
            dst_ip, kind = bytes([10, vrf, 3, 12]), "transit"  # back to the fabric
        elif roll < 0.12 and mode != "l2":
            dst_ip, kind = vm.gateway, "gateway"
        l4 = self.l4(src_ip, dst_ip, proto, sport, dport, self.payload())
        packet = self.ip(src_ip, dst_ip, proto, l4, ttl=self.r.choice((64, 1)))
        l2_inside = mode == "l2" or (mode == "l2_l3" and self.r.random() < 0.3)
        inner_dst = vm.mac if l2_inside and kind == "local" else VROUTER_MAC
        inner_eth = eth(inner_dst, remote_mac, ETH_P_IP, packet)
        if encap == "vxlan":
            frame = self.outer("vxlan", build_vxlan(vni(vrf)) + inner_eth)
        elif encap == "vlan":
            vlan = _VLAN[vrf]
            assert vlan is not None
            dst_mac = FABRIC_MAC if not l2_inside else vm.mac
            tag = struct.pack("!HH", vlan, ETH_P_IP)
            frame = _ETH.pack(dst_mac, remote_mac, ETH_P_8021Q) + tag + packet
        else:
            label = l2_label(vrf) if l2_inside else l3_label(vrf)
            body = inner_eth if l2_inside else packet
            frame = self.outer(encap, build_mpls(label, 64) + body)
        needs_flow = vm.policy and kind == "local"
        made = needs_flow and not vm.agent_decides and not installed
        must = (
            kind == "local"
            and encap != "vlan"
            and vm.attached
            and (installed or not needs_flow or (made and proto != PROTO_ICMP))
            and len(packet) <= vm.mtu
        )
        cls = f"fabric_{encap}_{kind}" + ("_l2" if l2_inside else "") + ("_made" if made else "")
        cls += "_ruled" if made and vm.ruled else ""
        return Frame(cls, FABRIC, 0, frame, must)

    def fabric_other(self) -> Frame:
        """Unknown labels, VNIs and VLANs, GRE not MPLS, fragments, ARP, not for us."""
        vrf = self.r.choice([s[0] for s in VRF_SPECS])
        vm = self.r.choice([v for v in self.s.vms if v.vrf == vrf])
        src = bytes([10, vrf, 3, 11])
        packet = self.ip(src, vm.ip, PROTO_UDP, build_udp(src, vm.ip, 1234, 80, self.payload()))
        inner = eth(VROUTER_MAC, _OTHER_MAC, ETH_P_IP, packet)
        roll = self.r.randrange(11)
        if roll == 0:
            return Frame(
                "fabric_unknown_vni",
                FABRIC,
                0,
                self.outer("vxlan", build_vxlan(999) + inner),
                False,
            )
        if roll == 1:
            encap = self.r.choice(("mplsoudp", "mplsogre"))
            return Frame(
                "fabric_unknown_label",
                FABRIC,
                0,
                self.outer(encap, build_mpls(999) + packet),
                False,
            )
        if roll == 2:
            frame = (
                _ETH.pack(FABRIC_MAC, _OTHER_MAC, ETH_P_8021Q)
                + struct.pack("!HH", 999, ETH_P_IP)
                + packet
            )
            return Frame("fabric_unknown_vlan", FABRIC, 0, frame, False)
        if roll == 3:
            node_ip, node_mac = _REMOTE_SRC["mplsogre"]
            outer = build_ipv4(node_ip, FABRIC_IP, PROTO_GRE, build_gre(ETH_P_IP) + packet)
            return Frame(
                "fabric_gre_not_mpls", FABRIC, 0, eth(FABRIC_MAC, node_mac, ETH_P_IP, outer), False
            )
        if roll == 4:
            frame = self.outer(
                self.r.choice(ENCAPS[:3]), build_mpls(l3_label(vrf)) + packet, frag=True
            )
            return Frame("fabric_outer_fragment", FABRIC, 0, frame, False)
        if roll == 5:
            frame = self.outer("vxlan", build_vxlan(vni(vrf)) + inner)
            frame = _OTHER_MAC + frame[6:]
            return Frame("fabric_not_for_us_mac", FABRIC, 0, frame, False)
        if roll == 6:
            node_ip, node_mac = _REMOTE_SRC["vxlan"]
            other = bytes([192, 168, 0, 99])
            udp = build_udp(node_ip, other, 5555, 4789, build_vxlan(vni(vrf)) + inner)
            frame = eth(FABRIC_MAC, node_mac, ETH_P_IP, build_ipv4(node_ip, other, PROTO_UDP, udp))
            return Frame("fabric_not_for_us_ip", FABRIC, 0, frame, False)
        if roll == 7:
            node_ip, node_mac = _REMOTE_SRC["vxlan"]
            udp = build_udp(node_ip, FABRIC_IP, 5555, 9999, self.payload())
            frame = eth(
                FABRIC_MAC, node_mac, ETH_P_IP, build_ipv4(node_ip, FABRIC_IP, PROTO_UDP, udp)
            )
            return Frame("fabric_not_overlay", FABRIC, 0, frame, False)
        if roll == 8:
            node_ip, node_mac = _REMOTE_SRC[self.r.choice(ENCAPS)]
            tpa = self.r.choice((FABRIC_IP, bytes([192, 168, 0, 99])))
            op = self.r.choice((ARP_REQUEST, ARP_REPLY))
            body = build_arp(op, node_mac, node_ip, ZERO_MAC, tpa)
            return Frame("fabric_arp", FABRIC, 0, eth(BROADCAST, node_mac, ETH_P_ARP, body), False)
        if roll == 9:
            # MPLS without bottom of stack: Python reads it as an unknown label
            word = struct.pack("!I", (l3_label(vrf) << 12) | 64)
            frame = self.outer(
                self.r.choice(("mplsoudp", "mplsogre")), word + build_mpls(l3_label(vrf)) + packet
            )
            return Frame("fabric_mpls_not_bos", FABRIC, 0, frame, False)
        frame = self.outer("vxlan", b"\x00" * 4 + vni(vrf).to_bytes(3, "big") + b"\x00" + inner)
        return Frame("fabric_vxlan_no_i_flag", FABRIC, 0, frame, False)

    # -- malformed ---------------------------------------------------------------------
    def malformed(self) -> Frame:
        """A valid frame of another class, broken one way (the kernel delivers >= 14 bytes)."""
        base = self.r.choices(self._pick[:-1], self._weights[:-1])[0]()
        data = bytearray(base.data)
        ip_at = self._ip_offset(bytes(data))
        how = self.r.choice(_MALFORMED)
        if how == "truncated" or (ip_at is None and how != "byte_flip"):
            shortest = _shortest(bytes(data))
            data = data[: self.r.randint(shortest, max(shortest, len(data) - 1))]
            how = "truncated"
        elif how == "ip_checksum":
            data[ip_at + 10] ^= 1 << self.r.randrange(8)  # type: ignore[operator]
        elif how == "ip_version":
            data[ip_at] = (self.r.choice((0, 5, 6, 15)) << 4) | (data[ip_at] & 0xF)  # type: ignore[index]
        elif how == "ip_ihl":
            data[ip_at] = 0x40 | self.r.choice((0, 4, 15))  # type: ignore[index]
        elif how == "ip_total_length":
            assert ip_at is not None
            length = self.r.choice((0, 19, len(data) - ip_at + 1, 65535))
            struct.pack_into("!H", data, ip_at + 2, length)
        elif how == "udp_length":
            assert ip_at is not None
            if data[ip_at + 9] == PROTO_UDP and len(data) >= ip_at + 28:
                struct.pack_into("!H", data, ip_at + 24, self.r.choice((0, 7, 65535)))
            else:
                how = "ip_checksum"
                data[ip_at + 10] ^= 0x80
        elif how == "byte_flip":
            at = self.r.randrange(len(data))
            data[at] ^= 1 << self.r.randrange(8)
        else:  # cut inside the innermost headers: after the outer ones
            cut = self.r.randint(min(len(data) - 1, (ip_at or 14) + 20), len(data) - 1)
            data = data[: max(_shortest(bytes(data)), cut)]
        return Frame(f"malformed_{how}", base.port, base.vif, bytes(data), False)

    @staticmethod
    def _ip_offset(frame: bytes) -> int | None:
        if len(frame) < 34:
            return None
        ethertype = int.from_bytes(frame[12:14], "big")
        if ethertype == ETH_P_IP:
            return 14
        if ethertype == ETH_P_8021Q and frame[16:18] == b"\x08\x00":
            return 18
        return None


# ports around what the scenario's rules and ACL entries name (equiv_scenario.WEB, ACL_1, ...)
_RULE_DPORTS = (22, 53, 80, 443, 445, 451, 5001, 7000, 7059, 8080, 9999, 10000, 40000)
_RULE_SPORTS = (53, 80, 1000, 1023, 1024, 32767, 32768, 50000, 65535)


def _shortest(frame: bytes) -> int:
    """The shortest frame BPF_PROG_TEST_RUN takes with this ethertype: the kernel refuses
    (EINVAL) an IPv4 or IPv6 frame without room for the network header (what its receive
    path would not deliver to tc either)."""
    ethertype = int.from_bytes(frame[12:14], "big")
    return {ETH_P_IP: 34, 0x86DD: 54}.get(ethertype, 14)


def _agent_decides(vm: Vm, target: Vm | None) -> bool:
    """Whether a new flow between them waits for the agent (route.agent_decides)."""
    return any(v is not None and v.policy and v.agent_decides for v in (vm, target))
