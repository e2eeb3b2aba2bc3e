"""The heavy policy of the policy benchmark's "groups" path (pure): five security groups per
interface full of realistic rules that never match the benchmark's traffic, the rules that admit
it last, and a network ACL with a full quota of entries before its allow; as EC2 parameters.
"""

import ipaddress
from dataclasses import dataclass

GROUPS = 5  # security groups per interface: AWS's quota
INGRESS_RULES = 58  # per group, of AWS's 60 per direction
EGRESS_RULES = 20  # per group (a new group's allow-all egress rule is revoked first)
ACL_ENTRIES = 20  # per direction, AWS's quota (the "*" rule aside); the allow is the last
ACL_STEP = 10  # rule numbers 10, 20, ...: room to insert, as people number them
MEMBERS = "members"  # the placeholder of a group reference: the group the VMs are members of
TCP_SERVICES = (22, 25, 80, 443, 1433, 2379, 3000, 3306, 5432, 5672, 6379, 6443, 8080, 8443,
                9092, 9200, 11211, 27017)  # fmt: skip
UDP_SERVICES = (53, 67, 123, 161, 500, 514, 1194, 1812, 4500, 4789, 51820)
ICMP_TYPES = ((3, -1), (3, 4), (11, 0), (0, -1), (12, -1), (5, -1))  # never 8, the echo request


@dataclass(frozen=True, slots=True)
class Traffic:
    """What the benchmark sends: from the client's subnet to the server's, TCP to the ports
    `ports[0]..ports[1]` and ICMP echo requests."""

    vpc_cidr: str
    client_subnet: str
    server_subnet: str
    ports: tuple[int, int]


@dataclass(frozen=True, slots=True)
class Rule:
    """One security group rule: a protocol ("tcp", "udp", "icmp", "-1"), ports (ICMP: type
    and code), and either a CIDR or a group (MEMBERS, resolved when applied)."""

    protocol: str
    from_port: int
    to_port: int
    cidr: str = ""
    group: str = ""

    def permission(self, members: str) -> dict[str, object]:
        """The rule as one EC2 IpPermission (one range or one group pair: one rule)."""
        perm: dict[str, object] = {
            "IpProtocol": self.protocol,
            "FromPort": self.from_port,
            "ToPort": self.to_port,
        }
        if self.group:
            perm["UserIdGroupPairs"] = [
                {"GroupId": members if self.group == MEMBERS else self.group}
            ]
        else:
            perm["IpRanges"] = [{"CidrIp": self.cidr}]
        return perm


@dataclass(frozen=True, slots=True)
class AclEntry:
    """One network ACL entry with EC2's CreateNetworkAclEntry parameters (ports and ICMP as
    in `Rule`; a protocol "-1" has neither)."""

    number: int
    protocol: str
    cidr: str
    allow: bool
    from_port: int = -1
    to_port: int = -1

    def parameters(self, acl_id: str, egress: bool) -> dict[str, object]:
        params: dict[str, object] = {
            "NetworkAclId": acl_id,
            "RuleNumber": self.number,
            "Protocol": {"tcp": "6", "udp": "17", "icmp": "1"}.get(self.protocol, self.protocol),
            "RuleAction": "allow" if self.allow else "deny",
            "Egress": egress,
            "CidrBlock": self.cidr,
        }
        if self.protocol in ("tcp", "udp"):
            params["PortRange"] = {"From": self.from_port, "To": self.to_port}
        elif self.protocol == "icmp":
            params["IcmpTypeCode"] = {"Type": self.from_port, "Code": self.to_port}
        return params


def _others(t: Traffic, g: int, k: int) -> str:
    """A /24 outside the VPC, distinct for every (group, rule): partners, offices, VPNs."""
    base = "100.64.0.0" if k % 2 else "172.16.0.0"  # a /10 and a /12, room for 4096 /24s
    net = ipaddress.ip_network(f"{ipaddress.ip_address(base) + ((g * 64 + k) << 8)}/24")
    if net.overlaps(ipaddress.ip_network(t.vpc_cidr)):
        raise ValueError(f"the VPC {t.vpc_cidr} overlaps the benchmark's other ranges")
    return str(net)


def _filler(t: Traffic, g: int, k: int, egress: bool) -> Rule:
    """Rule k of group g: one of six kinds, each realistic, none matching the benchmark's
    flows (another address, another port, another protocol or another ICMP type)."""
    kind = k % 6
    if kind == 0:
        port = TCP_SERVICES[(g + k) % len(TCP_SERVICES)]
        return Rule("tcp", port, port, cidr=_others(t, g, k))
    if kind == 1:  # a band of ports from (to) the VPC itself, below or above the benchmark's
        first = 6000 + (g * 64 + k) * 10
        return Rule("tcp", first, first + 9, cidr=t.vpc_cidr)
    if kind == 2 and k % 4:  # media or game ports within the VPC
        port = 20000 + g * 64 + k
        return Rule("udp", port, port, cidr=t.vpc_cidr)
    if kind == 2:
        port = UDP_SERVICES[(g + k) % len(UDP_SERVICES)]
        return Rule("udp", port, port, cidr=_others(t, g, k))
    if kind == 3:  # everything, from (to) a range elsewhere
        return Rule("-1", -1, -1, cidr=_others(t, g, k))
    if kind == 4 and not egress:  # from the instances of the members' group, on admin ports
        port = 9000 + g * 64 + k
        return Rule("tcp", port, port, group=MEMBERS)
    icmp_type, code = ICMP_TYPES[(g + k) % len(ICMP_TYPES)]
    return Rule("icmp", icmp_type, code, cidr=_others(t, g, k))


def admitting(t: Traffic, egress: bool) -> list[Rule]:
    """The rules letting the benchmark's flows out of the client (egress) or into the server."""
    cidr = t.server_subnet if egress else t.client_subnet
    return [Rule("tcp", t.ports[0], t.ports[1], cidr=cidr), Rule("icmp", 8, -1, cidr=cidr)]


def group_rules(t: Traffic, g: int, egress: bool) -> list[Rule]:
    """Group g's rules in one direction (g = GROUPS - 1 ends with the admitting ones)."""
    count = EGRESS_RULES if egress else INGRESS_RULES
    last = admitting(t, egress) if g == GROUPS - 1 else []
    return [_filler(t, g, k, egress) for k in range(count - len(last))] + last


def acl_entries(t: Traffic) -> list[AclEntry]:
    """The server subnet's ACL entries, the same list inbound and outbound: denies and allows
    that do not concern the benchmark (elsewhere, or on ports neither its flows nor their
    replies use), then the allow of everything from (to) the client's subnet, numbered last."""
    found: list[AclEntry] = []
    services = (23, 25, 135, 139, 445, 3389, 5900)  # ports commonly denied everywhere
    for k in range(ACL_ENTRIES - 1):
        number = (k + 1) * ACL_STEP
        if k < len(services):
            found.append(AclEntry(number, "tcp", "0.0.0.0/0", False, services[k], services[k]))
        elif k % 3 == 0:
            found.append(AclEntry(number, "-1", _others(t, 4, k), False))
        elif k % 3 == 1:
            found.append(AclEntry(number, "udp", "0.0.0.0/0", False, 1900 + k, 1900 + k))
        else:
            found.append(AclEntry(number, "tcp", _others(t, 3, k), True, 443, 443))
    found.append(AclEntry(ACL_ENTRIES * ACL_STEP, "-1", t.client_subnet, True))
    return found
