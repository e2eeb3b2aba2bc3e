"""Network ACLs, their numbered entries and subnet associations with EC2's rules: the default
ACL of each VPC, rule numbers, entry validation, quotas and what blocks a deletion."""

from dataclasses import dataclass, replace

from openvpc.model.policy import (
    ACL_DEFAULT_RULE,
    ALL_PROTOCOLS,
    AclAssociation,
    NaclAction,
    NaclEntry,
    NetworkAcl,
)
from openvpc.model.resources import Subnet, Vpc
from openvpc.service.errors import ServiceError, dependency, invalid_value
from openvpc.service.repo import Repo
from openvpc.service.validate import parse_cidr

ANYWHERE = "0.0.0.0/0"
RULE_NUMBERS = (1, 32766)  # 32767 and up are EC2's own
ENTRIES_PER_DIRECTION = 20  # AWS's default quota, not counting the "*" rule
ACLS_PER_VPC = 200
_NUMBERED = {"tcp": "6", "udp": "17", "icmp": "1"}
_TCP, _UDP, _ICMP = "6", "17", "1"


@dataclass(frozen=True, slots=True)
class EntrySpec:
    """An entry as CreateNetworkAclEntry / ReplaceNetworkAclEntry give it: `ports` is the
    PortRange (from, to) and `icmp` the IcmpTypeCode (type, code), None when absent."""

    rule_number: int
    egress: bool
    protocol: str
    action: str
    cidr: str
    ports: tuple[int | None, int | None] | None = None
    icmp: tuple[int | None, int | None] | None = None


# -- network ACLs ---------------------------------------------------------------------------
def create_default_acl(repo: Repo, vpc: Vpc) -> NetworkAcl:
    """The ACL a VPC is created with: rule 100 allows everything, each direction."""
    rules: tuple[tuple[int, NaclAction], ...] = ((100, "allow"), (ACL_DEFAULT_RULE, "deny"))
    entries = tuple(
        NaclEntry(n, egress, ALL_PROTOCOLS, action, ANYWHERE)
        for egress in (False, True)
        for n, action in rules
    )
    acl = NetworkAcl(repo.new_id("acl", NetworkAcl), vpc.tenant, vpc.id, True, entries)
    repo.put(acl)
    return acl


def default_acl(repo: Repo, vpc: Vpc) -> NetworkAcl:
    """The VPC's default ACL (made now for a VPC stored before ACLs existed)."""
    for acl in repo.find(NetworkAcl, "vpc", vpc.id):
        if acl.default:
            return acl
    return create_default_acl(repo, vpc)


def create_acl(repo: Repo, tenant: str, vpc_id: str) -> NetworkAcl:
    """A custom ACL: only the "*" rules, so it denies everything until entries are added."""
    vpc = repo.owned(Vpc, vpc_id, tenant)
    if len(repo.find(NetworkAcl, "vpc", vpc.id)) >= ACLS_PER_VPC:
        raise ServiceError(
            "NetworkAclLimitExceeded", "The maximum number of network ACLs has been reached."
        )
    entries = tuple(
        NaclEntry(ACL_DEFAULT_RULE, egress, ALL_PROTOCOLS, "deny", ANYWHERE)
        for egress in (False, True)
    )
    acl = NetworkAcl(repo.new_id("acl", NetworkAcl), tenant, vpc.id, False, entries)
    repo.put(acl)
    return acl


def delete_acl(repo: Repo, tenant: str, acl_id: str) -> None:
    """Neither the default ACL nor one a subnet is associated with."""
    acl = repo.owned(NetworkAcl, acl_id, tenant)
    if acl.default:
        raise ServiceError("InvalidParameterValue", f"cannot delete default network ACL {acl.id}")
    if any(a.network_acl == acl.id for a in repo.find(AclAssociation, "vpc", acl.vpc)):
        raise dependency("networkAcl", acl.id)
    repo.delete(NetworkAcl, acl.id)


def drop_vpc_acls(repo: Repo, vpc_id: str) -> None:
    """DeleteVpc's part: refused while the VPC has an ACL besides its default one, which
    goes with the VPC."""
    acls = repo.find(NetworkAcl, "vpc", vpc_id)
    if any(not a.default for a in acls):
        raise dependency("vpc", vpc_id)
    for acl in acls:
        repo.delete(NetworkAcl, acl.id)
    for association in repo.find(AclAssociation, "vpc", vpc_id):  # none once subnets are gone
        repo.delete(AclAssociation, association.subnet)


# -- entries --------------------------------------------------------------------------------
def create_entry(repo: Repo, tenant: str, acl_id: str, spec: EntrySpec) -> NaclEntry:
    acl = repo.owned(NetworkAcl, acl_id, tenant)
    entry = _canonical(spec)
    if _find(acl, entry.rule_number, entry.egress) is not None:
        raise ServiceError(
            "NetworkAclEntryAlreadyExists",
            f"The network acl entry identified by {entry.rule_number} already exists.",
        )
    numbered = [
        e for e in acl.entries if e.egress == entry.egress and e.rule_number != ACL_DEFAULT_RULE
    ]
    if len(numbered) >= ENTRIES_PER_DIRECTION:
        raise ServiceError(
            "NetworkAclEntryLimitExceeded",
            "The maximum number of network ACL entries has been reached.",
        )
    repo.put(_with_entries(acl, [*acl.entries, entry]))
    return entry


def replace_entry(repo: Repo, tenant: str, acl_id: str, spec: EntrySpec) -> NaclEntry:
    acl = repo.owned(NetworkAcl, acl_id, tenant)
    entry = _canonical(spec)
    old = _existing(acl, entry.rule_number, entry.egress)
    repo.put(_with_entries(acl, [*(e for e in acl.entries if e != old), entry]))
    return entry


def delete_entry(repo: Repo, tenant: str, acl_id: str, rule_number: int, egress: bool) -> None:
    acl = repo.owned(NetworkAcl, acl_id, tenant)
    _check_rule_number(rule_number)
    old = _existing(acl, rule_number, egress)
    repo.put(_with_entries(acl, [e for e in acl.entries if e != old]))


def _with_entries(acl: NetworkAcl, entries: list[NaclEntry]) -> NetworkAcl:
    return replace(acl, entries=tuple(sorted(entries, key=lambda e: (e.egress, e.rule_number))))


def _find(acl: NetworkAcl, rule_number: int, egress: bool) -> NaclEntry | None:
    for e in acl.entries:
        if e.rule_number == rule_number and e.egress == egress:
            return e
    return None


def _existing(acl: NetworkAcl, rule_number: int, egress: bool) -> NaclEntry:
    found = _find(acl, rule_number, egress)
    if found is None:
        raise ServiceError(
            "InvalidNetworkAclEntry.NotFound",
            f"The network acl entry identified by {rule_number} could not be found.",
        )
    return found


def _check_rule_number(n: int) -> None:
    lo, hi = RULE_NUMBERS
    if isinstance(n, bool) or not isinstance(n, int) or not lo <= n <= hi:
        raise invalid_value("ruleNumber", n, f"A rule number must be between {lo} and {hi}.")


def _canonical(spec: EntrySpec) -> NaclEntry:
    """The entry `spec` asks for: protocol as a number, ports and ICMP type/code -1 where
    the protocol ignores them, the CIDR's host bits cleared."""
    _check_rule_number(spec.rule_number)
    protocol = canonical_protocol(spec.protocol)
    action = _action(spec.action)
    cidr = str(parse_cidr(spec.cidr, "cidrBlock"))
    entry = NaclEntry(spec.rule_number, bool(spec.egress), protocol, action, cidr)
    if protocol in (_TCP, _UDP):
        lo, hi = spec.ports or (None, None)
        if lo is None or hi is None:
            raise ServiceError(
                "MissingParameter", "The request must contain the parameter portRange"
            )
        if not (0 <= lo <= 65535 and 0 <= hi <= 65535 and lo <= hi):
            raise invalid_value("portRange", f"{lo}-{hi}", "Ports are 0-65535, from <= to.")
        return replace(entry, from_port=lo, to_port=hi)
    if protocol == _ICMP:
        if spec.icmp is None:
            raise ServiceError(
                "MissingParameter", "The request must contain the parameter icmpTypeCode"
            )
        icmp_type = -1 if spec.icmp[0] is None else spec.icmp[0]
        code = -1 if spec.icmp[1] is None else spec.icmp[1]
        if not (-1 <= icmp_type <= 255 and -1 <= code <= 255):
            raise invalid_value(
                "icmpTypeCode", f"{icmp_type}/{code}", "Type and code are -1 (all) or 0-255."
            )
        return replace(entry, icmp_type=icmp_type, icmp_code=code)
    return entry


def canonical_protocol(text: str) -> str:
    """ "-1" or an IP protocol number 0-255 as text; tcp, udp and icmp by name are allowed."""
    if isinstance(text, str):
        word = text.strip().lower()
        if word in _NUMBERED:
            return _NUMBERED[word]
        if word == ALL_PROTOCOLS:
            return ALL_PROTOCOLS
        if word.isascii() and word.isdigit() and int(word) <= 255:
            return str(int(word))
    raise invalid_value("protocol", text, "Use -1 or an IP protocol number 0-255.")


def _action(text: str) -> NaclAction:
    word = text.lower() if isinstance(text, str) else ""
    if word == "allow":
        return "allow"
    if word == "deny":
        return "deny"
    raise invalid_value("ruleAction", text, "Use allow or deny.")


# -- associations ---------------------------------------------------------------------------
def associate_default(repo: Repo, subnet: Subnet) -> AclAssociation:
    """A new subnet's association with its VPC's default ACL."""
    vpc = repo.owned(Vpc, subnet.vpc, subnet.tenant)
    acl = default_acl(repo, vpc)
    association = AclAssociation(
        repo.new_id("aclassoc", AclAssociation), subnet.id, acl.id, subnet.tenant, subnet.vpc
    )
    repo.put(association)
    return association


def replace_association(
    repo: Repo, tenant: str, association_id: str, acl_id: str
) -> AclAssociation:
    """Move a subnet to another ACL of its VPC; the association gets a new id."""
    current = next(
        (a for a in repo.find(AclAssociation, "tenant", tenant) if a.id == association_id), None
    )
    if current is None:
        raise ServiceError(
            "InvalidAssociationID.NotFound",
            f"The association ID '{association_id}' does not exist",
        )
    acl = repo.owned(NetworkAcl, acl_id, tenant)
    if acl.vpc != current.vpc:
        raise ServiceError(
            "InvalidParameterValue",
            f"Network ACL {acl.id} and subnet {current.subnet} belong to different networks.",
        )
    association = replace(current, id=repo.new_id("aclassoc", AclAssociation), network_acl=acl.id)
    repo.put(association)
    return association
