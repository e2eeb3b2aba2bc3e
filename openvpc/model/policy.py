"""Security groups and network ACLs as the store keeps them (vocabulary only, no rules).

Ids follow AWS: "sg-", "sgr-" (a security group rule), "acl-" and "aclassoc-" plus 17 hex
digits. The compiler turns them into each port's compiled form (model/rules.py).
"""

from dataclasses import dataclass
from typing import Literal

ALL_PROTOCOLS = "-1"
ACL_DEFAULT_RULE = 32767  # the "*" rule every network ACL ends with, in each direction

NaclAction = Literal["allow", "deny"]


@dataclass(frozen=True, slots=True)
class SecurityGroupRule:
    """One allow rule. protocol: "-1", "tcp", "udp", "icmp" or an IP protocol number as text.

    Ports are -1 where the protocol ignores them; for icmp from_port is the type and to_port
    the code. Exactly one of `cidr` and `group` (a referenced "sg-...") is set.
    """

    id: str
    egress: bool
    protocol: str
    from_port: int = -1
    to_port: int = -1
    cidr: str = ""
    group: str = ""
    description: str = ""


@dataclass(frozen=True, slots=True)
class SecurityGroup:
    id: str
    tenant: str
    vpc: str
    name: str  # "default" only for the group every VPC is created with
    description: str = ""
    ingress: tuple[SecurityGroupRule, ...] = ()
    egress: tuple[SecurityGroupRule, ...] = ()

    @property
    def is_default(self) -> bool:
        return self.name == "default"


@dataclass(frozen=True, slots=True)
class NaclEntry:
    """One numbered network ACL rule; protocol is "-1" or an IP protocol number as text.

    The port range applies to tcp (6) and udp (17) only, the ICMP type and code to icmp (1)
    only; -1 everywhere else.
    """

    rule_number: int
    egress: bool
    protocol: str
    action: NaclAction
    cidr: str
    from_port: int = -1
    to_port: int = -1
    icmp_type: int = -1
    icmp_code: int = -1


@dataclass(frozen=True, slots=True)
class NetworkAcl:
    id: str
    tenant: str
    vpc: str
    default: bool = False
    entries: tuple[NaclEntry, ...] = ()  # sorted by (egress, rule number)


@dataclass(frozen=True, slots=True)
class AclAssociation:
    """Subnet -> network ACL; every subnet has exactly one (its VPC's default NACL unless
    replaced), and a replacement gets a new id."""

    id: str
    subnet: str
    network_acl: str
    tenant: str
    vpc: str
