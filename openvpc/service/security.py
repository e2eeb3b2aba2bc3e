"""Security groups and their rules with EC2's rules: names, the default group of each VPC,
rule validation and canonical form, duplicates, quotas and what blocks a deletion."""

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from openvpc.model.gateways import VpcPeeringConnection
from openvpc.model.policy import ALL_PROTOCOLS, SecurityGroup, SecurityGroupRule
from openvpc.model.resources import Interface, Vpc
from openvpc.service.errors import ServiceError, dependency, invalid_value, not_found
from openvpc.service.repo import Repo
from openvpc.service.validate import parse_cidr

DEFAULT = "default"
DEFAULT_DESCRIPTION = "default VPC security group"
ANYWHERE = "0.0.0.0/0"
RULES_PER_DIRECTION = 60  # AWS's default quota (IPv4 and IPv6 rules counted apart)
GROUPS_PER_VPC = 2500
GROUPS_PER_INTERFACE = 5
MAX_TEXT = 255
# names and descriptions of groups in a VPC, and rule descriptions
_TEXT = re.compile(r"[A-Za-z0-9 ._\-:/()#,@\[\]+=&;{}!$*]*")
_NAMED = {"tcp": "tcp", "6": "tcp", "udp": "udp", "17": "udp", "icmp": "icmp", "1": "icmp"}
_PORTED = ("tcp", "udp")


@dataclass(frozen=True, slots=True)
class RuleSpec:
    """A rule as a request gives it (one IP range or one referenced group of an
    IpPermission); ports None when absent."""

    protocol: str
    from_port: int | None = None
    to_port: int | None = None
    cidr: str = ""
    group: str = ""
    description: str = ""


# -- groups ---------------------------------------------------------------------------------
def create_default_group(repo: Repo, vpc: Vpc) -> SecurityGroup:
    """The group a VPC is created with: ingress from its own members, egress anywhere."""
    group_id = repo.new_id("sg", SecurityGroup)
    ingress = SecurityGroupRule(
        repo.new_id("sgr", SecurityGroup), False, ALL_PROTOCOLS, group=group_id
    )
    group = SecurityGroup(
        group_id, vpc.tenant, vpc.id, DEFAULT, DEFAULT_DESCRIPTION, (ingress,), (_egress_all(repo),)
    )
    repo.put(group)
    return group


def default_group(repo: Repo, vpc: Vpc) -> SecurityGroup:
    """The VPC's default group (made now for a VPC stored before groups existed)."""
    for group in repo.find(SecurityGroup, "vpc", vpc.id):
        if group.is_default:
            return group
    return create_default_group(repo, vpc)


def create_group(
    repo: Repo, tenant: str, vpc_id: str, name: str, description: str
) -> SecurityGroup:
    """A group with EC2's one egress rule (allow all to anywhere) and no ingress."""
    vpc = repo.owned(Vpc, vpc_id, tenant)
    name = _check_text(name, "GroupName").rstrip(" ")
    description = _check_text(description, "GroupDescription")
    if not name:
        raise invalid_value("GroupName", name, "A group name may not be empty.")
    if name.startswith("sg-"):
        raise invalid_value("GroupName", name, "Group names may not be in the format sg-*.")
    if name.lower() == DEFAULT:
        raise ServiceError("InvalidGroup.Reserved", f"The security group '{name}' is reserved.")
    siblings = repo.find(SecurityGroup, "vpc", vpc.id)
    if any(g.name.lower() == name.lower() for g in siblings):
        raise ServiceError(
            "InvalidGroup.Duplicate",
            f"The security group '{name}' already exists for VPC '{vpc.id}'",
        )
    if len(siblings) >= GROUPS_PER_VPC:
        raise ServiceError(
            "SecurityGroupLimitExceeded", "The maximum number of security groups has been reached."
        )
    group = SecurityGroup(
        repo.new_id("sg", SecurityGroup),
        tenant,
        vpc.id,
        name,
        description,
        (),
        (_egress_all(repo),),
    )
    repo.put(group)
    return group


def group_named(repo: Repo, tenant: str, name: str, vpc_id: str = "") -> SecurityGroup:
    """A group by name, as DeleteSecurityGroup(GroupName=...) finds it: the tenant's only
    group of that name (in `vpc_id` if given: there is no default VPC to narrow it down)."""
    found = [
        g
        for g in repo.find(SecurityGroup, "tenant", tenant)
        if g.name == name and (not vpc_id or g.vpc == vpc_id)
    ]
    if len(found) != 1:
        raise not_found("securityGroup", str(name))
    return found[0]


def delete_group(repo: Repo, tenant: str, group_id: str) -> None:
    """Not the default group, nor one an interface uses or another group's rule names."""
    group = repo.owned(SecurityGroup, group_id, tenant)
    if group.is_default:
        raise ServiceError(
            "CannotDelete",
            f'the specified group: "{group.id}" name: "{group.name}" cannot be deleted by a user',
        )
    in_use = any(group.id in i.groups for i in repo.find(Interface, "tenant", tenant))
    if in_use or any(_references(g, group.id) for g in repo.find(SecurityGroup, "vpc", group.vpc)):
        raise ServiceError("DependencyViolation", f"resource {group.id} has a dependent object")
    repo.delete(SecurityGroup, group.id)


def drop_vpc_groups(repo: Repo, vpc_id: str) -> None:
    """DeleteVpc's part: refused while the VPC has a group besides its default one, which
    goes with the VPC."""
    groups = repo.find(SecurityGroup, "vpc", vpc_id)
    if any(not g.is_default for g in groups):
        raise dependency("vpc", vpc_id)
    for group in groups:
        repo.delete(SecurityGroup, group.id)


def check_groups(repo: Repo, tenant: str, vpc_id: str, group_ids: Iterable[str]) -> tuple[str, ...]:
    """The groups an interface in `vpc_id` is placed in: the tenant's, in that VPC, at most
    five, repeats dropped; none given means the VPC's default group."""
    ids = tuple(dict.fromkeys(group_ids))
    if len(ids) > GROUPS_PER_INTERFACE:
        raise ServiceError(
            "SecurityGroupsPerInterfaceLimitExceeded",
            "The maximum number of security groups per interface has been reached.",
        )
    vpc = repo.owned(Vpc, vpc_id, tenant)
    if not ids:
        return (default_group(repo, vpc).id,)
    for gid in ids:
        group = repo.owned(SecurityGroup, gid, tenant)
        if group.vpc != vpc.id:
            raise ServiceError(
                "InvalidParameter",
                f"Security group {group.id} and VPC {vpc.id} belong to different networks.",
            )
    return ids


def _references(group: SecurityGroup, other: str) -> bool:
    """Whether a rule of `group` (other than `other` itself) names group `other`."""
    return group.id != other and any(r.group == other for r in (*group.ingress, *group.egress))


def _egress_all(repo: Repo) -> SecurityGroupRule:
    return SecurityGroupRule(repo.new_id("sgr", SecurityGroup), True, ALL_PROTOCOLS, cidr=ANYWHERE)


def _check_text(text: str, param: str) -> str:
    if not isinstance(text, str) or len(text) > MAX_TEXT or not _TEXT.fullmatch(text):
        raise invalid_value(
            param,
            text,
            f"Use up to {MAX_TEXT} of a-z, A-Z, 0-9, spaces and ._-:/()#,@[]+=&;{{}}!$*",
        )
    return text


# -- rules ----------------------------------------------------------------------------------
def authorize(
    repo: Repo, tenant: str, group_id: str, egress: bool, specs: Sequence[RuleSpec]
) -> tuple[SecurityGroupRule, ...]:
    """Add rules to one direction of a group, all or none; returns them with their ids."""
    group = repo.owned(SecurityGroup, group_id, tenant)
    present = group.egress if egress else group.ingress
    seen = {_match_key(r) for r in present}
    added: list[SecurityGroupRule] = []
    for spec in specs:
        rule = _canonical(repo, group, egress, spec)
        if _match_key(rule) in seen:
            raise ServiceError(
                "InvalidPermission.Duplicate", f'the specified rule "{_words(rule)}" already exists'
            )
        seen.add(_match_key(rule))
        added.append(replace(rule, id=repo.new_id("sgr", SecurityGroup)))
    if len(present) + len(added) > RULES_PER_DIRECTION:
        raise ServiceError(
            "RulesPerSecurityGroupLimitExceeded",
            "The maximum number of rules per security group has been reached.",
        )
    repo.put(_with_rules(group, egress, (*present, *added)))
    return tuple(added)


def revoke(
    repo: Repo, tenant: str, group_id: str, egress: bool, specs: Sequence[RuleSpec]
) -> tuple[SecurityGroupRule, ...]:
    """Remove the rules matching `specs` (descriptions aside), all or none; returns them."""
    group = repo.owned(SecurityGroup, group_id, tenant)
    present = group.egress if egress else group.ingress
    by_key = {_match_key(r): r for r in present}
    gone: dict[str, SecurityGroupRule] = {}
    for spec in specs:
        found = by_key.get(_match_key(_canonical(repo, group, egress, spec, resolve=False)))
        if found is None:
            raise ServiceError(
                "InvalidPermission.NotFound",
                "The specified rule does not exist in this security group.",
            )
        gone[found.id] = found
    repo.put(_with_rules(group, egress, tuple(r for r in present if r.id not in gone)))
    return tuple(gone.values())


def revoke_ids(
    repo: Repo, tenant: str, group_id: str, egress: bool, rule_ids: Sequence[str]
) -> tuple[SecurityGroupRule, ...]:
    """Remove rules by their "sgr-" ids, all or none; returns them."""
    group = repo.owned(SecurityGroup, group_id, tenant)
    present = group.egress if egress else group.ingress
    by_id = {r.id: r for r in present}
    for rid in rule_ids:
        if rid not in by_id:
            raise ServiceError(
                "InvalidSecurityGroupRuleId.NotFound",
                f"The security group rule ID '{rid}' does not exist",
            )
    gone = set(rule_ids)
    repo.put(_with_rules(group, egress, tuple(r for r in present if r.id not in gone)))
    return tuple(by_id[rid] for rid in dict.fromkeys(rule_ids))


def _with_rules(
    group: SecurityGroup, egress: bool, rules: tuple[SecurityGroupRule, ...]
) -> SecurityGroup:
    return replace(group, egress=rules) if egress else replace(group, ingress=rules)


def _match_key(rule: SecurityGroupRule) -> tuple[str, int, int, str, str]:
    """What makes two rules the same rule (the description does not)."""
    return (rule.protocol, rule.from_port, rule.to_port, rule.cidr, rule.group)


def _canonical(
    repo: Repo, group: SecurityGroup, egress: bool, spec: RuleSpec, resolve: bool = True
) -> SecurityGroupRule:
    """The rule `spec` asks for in canonical form (protocol names, ports -1 where ignored,
    CIDR host bits cleared), id left empty. With `resolve`, a referenced group must be the
    tenant's and in the same VPC, or in a peered VPC (any tenant's); a revoke only matches, so
    it need not exist any more."""
    protocol = canonical_protocol(spec.protocol)
    lo, hi = _ports(protocol, spec.from_port, spec.to_port)
    if bool(spec.cidr) == bool(spec.group):
        raise ServiceError(
            "InvalidParameterValue", "A rule needs exactly one of a CIDR block and a group."
        )
    cidr = str(parse_cidr(spec.cidr, "cidrIp")) if spec.cidr else ""
    if spec.group and resolve:
        other = repo.get(SecurityGroup, spec.group)
        if other is None or not (
            (other.tenant == group.tenant and other.vpc == group.vpc)
            or _peered(repo, group.vpc, other.vpc)
        ):
            raise not_found("securityGroup", spec.group)
    description = _check_text(spec.description, "Description")
    return SecurityGroupRule("", egress, protocol, lo, hi, cidr, spec.group, description)


def _peered(repo: Repo, vpc: str, other: str) -> bool:
    """Whether an active peering connection joins the two VPCs (a group may name the peer's
    groups, the other tenant's included, as in EC2)."""
    return any(
        p.status == "active" and {p.vpc, p.accepter_vpc} == {vpc, other}
        for p in repo.find(VpcPeeringConnection, "vpc", vpc)
        + repo.find(VpcPeeringConnection, "accepter_vpc", vpc)
    )


def canonical_protocol(text: str) -> str:
    """ "tcp", "udp", "icmp" (also given as 6, 17, 1 or in capitals), "-1", or another IP
    protocol number 0-255 as text."""
    if isinstance(text, str):
        word = text.strip().lower()
        if word in _NAMED:
            return _NAMED[word]
        if word == ALL_PROTOCOLS:
            return ALL_PROTOCOLS
        if word.isascii() and word.isdigit() and int(word) <= 255:
            return str(int(word))
    raise ServiceError(
        "InvalidParameterValue", f"Invalid value '{text}' for IP protocol. Unknown protocol."
    )


def _ports(protocol: str, lo: int | None, hi: int | None) -> tuple[int, int]:
    if protocol in _PORTED:
        if lo is None or hi is None:
            raise ServiceError(
                "InvalidParameterValue",
                f"Invalid value 'null' for portRange. Must specify both from and to ports "
                f"with {protocol.upper()}.",
            )
        if not (0 <= lo <= 65535 and 0 <= hi <= 65535 and lo <= hi):
            raise ServiceError(
                "InvalidParameterValue",
                f"Invalid port range {lo}-{hi}: ports are 0-65535 and from may not exceed to.",
            )
        return lo, hi
    if protocol == "icmp":
        icmp_type, code = -1 if lo is None else lo, -1 if hi is None else hi
        if not (-1 <= icmp_type <= 255 and -1 <= code <= 255):
            raise ServiceError(
                "InvalidParameterValue",
                f"Invalid ICMP type {icmp_type} or code {code}: each is -1 (all) or 0-255.",
            )
        if icmp_type == -1 and code != -1:
            raise ServiceError(
                "InvalidParameterValue",
                "Invalid value for portRange. All ICMP types (-1) need all ICMP codes (-1).",
            )
        return icmp_type, code
    return -1, -1  # every other protocol: ports are ignored


def _words(rule: SecurityGroupRule) -> str:
    """A rule as EC2 spells it in a duplicate's message."""
    peer = rule.cidr or rule.group
    if rule.protocol == ALL_PROTOCOLS:
        return f"peer: {peer}, ALL, ALLOW"
    if rule.protocol in _PORTED:
        ports = f"from port: {rule.from_port}, to port: {rule.to_port}"
        return f"peer: {peer}, {rule.protocol.upper()}, {ports}, ALLOW"
    if rule.protocol == "icmp":
        return f"peer: {peer}, ICMP, type: {rule.from_port}, code: {rule.to_port}, ALLOW"
    return f"peer: {peer}, PROTOCOL {rule.protocol}, ALLOW"
