"""Security groups and network ACLs from the store compiled for one port (model/rules.py). Pure.

A rule naming another group becomes one /32 per private address (primary, secondary, and the
movable addresses it answers for now) of every interface in that group, attached or not and in
any VPC (peered groups), so a membership change recompiles the rules of every port whose groups
reference the group.
"""

import ipaddress
from collections.abc import Iterable

from openvpc.model.policy import (
    ACL_DEFAULT_RULE,
    ALL_PROTOCOLS,
    NaclEntry,
    NetworkAcl,
    SecurityGroup,
    SecurityGroupRule,
)
from openvpc.model.resources import Interface, Snapshot, Subnet
from openvpc.model.rules import (
    ANY,
    DEFAULT_DENY,
    AclEntry,
    NetworkAclConfig,
    PortSecurity,
    SgRule,
)

_NAMED = {"tcp": 6, "udp": 17, "icmp": 1}


def protocol_number(text: str) -> int:
    """A stored protocol ("-1", "tcp", "udp", "icmp" or a number as text) as ANY or 0-255."""
    if text == ALL_PROTOCOLS:
        return ANY
    return _NAMED[text] if text in _NAMED else int(text)


def _address_key(ip: str) -> int:
    return int(ipaddress.IPv4Address(ip))


class PolicyCompiler:
    """Compiles ports' security groups and subnets' network ACLs over one snapshot; results are
    shared between ports with the same groups or subnet."""

    def __init__(self, s: Snapshot) -> None:
        self.groups = {g.id: g for g in s.security_groups}
        self.default_group = {g.vpc: g.id for g in s.security_groups if g.is_default}
        self.vpc_of_subnet = {n.id: n.vpc for n in s.subnets}
        owned: dict[str, list[str]] = {}
        for owner in s.address_owners:
            owned.setdefault(owner.interface, []).append(owner.ip)
        members: dict[str, set[str]] = {}
        for iface in s.interfaces:
            addresses = (iface.ip, *iface.secondary_ips, *owned.get(iface.id, ()))
            for group in self.groups_of(iface):
                members.setdefault(group, set()).update(addresses)
        self.members = {g: tuple(sorted(a, key=_address_key)) for g, a in members.items()}
        self.acls = {a.id: a for a in s.network_acls}
        self.default_acl = {a.vpc: a.id for a in s.network_acls if a.default}
        self.acl_of_subnet = {a.subnet: a.network_acl for a in s.acl_associations}
        self._security: dict[tuple[str, ...], PortSecurity] = {}
        self._acl: dict[str, NetworkAclConfig | None] = {}

    def groups_of(self, iface: Interface) -> tuple[str, ...]:
        """Its groups; none stored (an interface made without any) means its VPC's default
        group, as every EC2 interface is in one: for its own rules and for membership alike."""
        if iface.groups:
            return iface.groups
        default = self.default_group.get(self.vpc_of_subnet.get(iface.subnet, ""))
        return (default,) if default else ()

    def security(self, iface: Interface) -> PortSecurity | None:
        """The port's rules; None (nothing enforced) only when it has no group the snapshot
        knows, e.g. a store from before security groups."""
        known = tuple(g for g in self.groups_of(iface) if g in self.groups)
        if not known:
            return None
        if known not in self._security:
            self._security[known] = PortSecurity(
                self._rules(known, egress=False), self._rules(known, egress=True)
            )
        return self._security[known]

    def _rules(self, groups: Iterable[str], egress: bool) -> tuple[SgRule, ...]:
        seen: dict[tuple[int, int, int, int, int], SgRule] = {}
        for group_id in groups:
            group = self.groups[group_id]
            for rule in group.egress if egress else group.ingress:
                for compiled in self._expand(group, rule):
                    seen.setdefault(compiled.match_key(), compiled)
        return tuple(seen.values())

    def _expand(self, group: SecurityGroup, rule: SecurityGroupRule) -> list[SgRule]:
        proto = protocol_number(rule.protocol)
        ref = f"{group.id}/{rule.id}"
        if rule.group:
            prefixes = [f"{ip}/32" for ip in self.members.get(rule.group, ())]
        else:
            prefixes = [rule.cidr]
        return [SgRule(proto, rule.from_port, rule.to_port, p, ref) for p in prefixes]

    def network_acl(self, subnet: Subnet) -> NetworkAclConfig | None:
        """The ACL at the subnet's boundary: its association's, else its VPC's default; None
        when the snapshot has neither (a store from before network ACLs)."""
        if subnet.id not in self._acl:
            acl_id = self.acl_of_subnet.get(subnet.id) or self.default_acl.get(subnet.vpc)
            acl = self.acls.get(acl_id or "")
            self._acl[subnet.id] = None if acl is None else compile_acl(acl, subnet.cidr)
        return self._acl[subnet.id]


def _entry(e: NaclEntry) -> AclEntry:
    proto = protocol_number(e.protocol)
    if proto == 1:  # the ICMP type and code ride in the port fields, as in SgRule
        lo, hi = e.icmp_type, e.icmp_code if e.icmp_type >= 0 else -1  # all types: any code
    else:
        lo, hi = e.from_port, e.to_port
    return AclEntry(e.rule_number, proto, lo, hi, e.cidr, e.action == "allow")


def _direction(acl: NetworkAcl, egress: bool) -> tuple[AclEntry, ...]:
    entries = sorted((e for e in acl.entries if e.egress == egress), key=lambda e: e.rule_number)
    compiled = [_entry(e) for e in entries]
    if not compiled or compiled[-1].number != ACL_DEFAULT_RULE:
        compiled.append(DEFAULT_DENY)
    return tuple(compiled)


def compile_acl(acl: NetworkAcl, subnet_cidr: str) -> NetworkAclConfig:
    return NetworkAclConfig(
        acl.id, subnet_cidr, _direction(acl, egress=False), _direction(acl, egress=True)
    )
