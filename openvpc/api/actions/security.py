"""Security group actions: create, delete, describe, authorize and revoke ingress and egress
rules (IpPermissions with IP ranges and referenced groups, or the flat form; revoke also by
rule id) and DescribeSecurityGroupRules. IPv6 ranges and prefix lists are not supported."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from openvpc.api.common import Getter, paginate, select, tag_list
from openvpc.api.context import Call, missing
from openvpc.api.errors import ApiError
from openvpc.api.registry import action
from openvpc.model.policy import ALL_PROTOCOLS, SecurityGroup, SecurityGroupRule
from openvpc.service.errors import ServiceError, not_found
from openvpc.service.security import RuleSpec

_NUMBERS = {"tcp": "6", "udp": "17", "icmp": "1"}


def arn(call: Call, kind: str, resource_id: str) -> str:
    return f"arn:aws:ec2:{call.region}:{call.account}:{kind}/{resource_id}"


# -- groups ---------------------------------------------------------------------------------
@action("CreateSecurityGroup")
def create_security_group(call: Call) -> dict[str, Any]:
    name, description = call.required("GroupName"), call.required("Description")
    vpc_id = call.param("VpcId")
    if vpc_id is None:  # EC2 would use the default VPC; there is none here
        raise ApiError("VPCIdNotSpecified", "No default VPC for this user")
    tags = call.tags_for("security-group")
    group = call.service.create_security_group(
        call.tenant, str(vpc_id), str(name), str(description)
    )
    if tags:
        call.service.create_tags(call.tenant, [group.id], tags)
    return {
        "GroupId": group.id,
        "Tags": tag_list(tags),
        "SecurityGroupArn": arn(call, "security-group", group.id),
    }


@action("DeleteSecurityGroup")
def delete_security_group(call: Call) -> dict[str, Any]:
    group_id = _group_id(call)
    call.service.delete_security_group(call.tenant, group_id)
    return {"Return": True, "GroupId": group_id}


def _group_id(call: Call) -> str:
    """GroupId, or the id of the tenant's only group called GroupName."""
    group_id = call.param("GroupId")
    if group_id is not None:
        return str(group_id)
    name = call.param("GroupName")
    if name is None:
        raise missing("GroupId")
    return call.service.security_group_named(call.tenant, str(name)).id


def _group_not_found(group_id: str) -> ServiceError:
    return not_found("securityGroup", group_id)


@action("DescribeSecurityGroups", mutating=False)
def describe_security_groups(call: Call) -> dict[str, Any]:
    groups = call.service.describe_security_groups(call.tenant)
    by_id = {g.id: g.name for g in groups}  # every group, for ip-permission.group-name
    names = call.ids("GroupNames")
    for name in names:  # there is no default VPC: a name is looked for in every VPC
        if not any(g.name == name for g in groups):
            raise _group_not_found(name)
    if names:
        groups = tuple(g for g in groups if g.name in names)
    tags = call.service.all_tags(call.tenant)
    found = select(
        call,
        groups,
        _group_fields(call, by_id),
        id_of=lambda g: g.id,
        ids_param="GroupIds",
        not_found=_group_not_found,
        tags=tags,
    )
    page, token = paginate(call, found, lambda g: g.id)
    return {
        "SecurityGroups": [_group_out(call, g, tags.get(g.id, [])) for g in page],
        "NextToken": token,
    }


def _group_fields(call: Call, names: Mapping[str, str]) -> dict[str, Getter]:
    fields: dict[str, Getter] = {
        "group-id": lambda g: g.id,
        "group-name": lambda g: g.name,
        "vpc-id": lambda g: g.vpc,
        "description": lambda g: g.description,
        "owner-id": lambda g: call.account,
    }
    for prefix, rules_of in (
        ("ip-permission.", lambda g: g.ingress),
        ("egress.ip-permission.", lambda g: g.egress),
    ):
        for name, value in _rule_fields(call, names).items():
            fields[prefix + name] = _over(rules_of, value)
    return fields


def _over(
    rules_of: Callable[[SecurityGroup], Iterable[SecurityGroupRule]],
    value: Callable[[SecurityGroupRule], Iterable[str]],
) -> Getter:
    return lambda g: [v for r in rules_of(g) for v in value(r)]


def _rule_fields(
    call: Call, names: Mapping[str, str]
) -> dict[str, Callable[[SecurityGroupRule], Iterable[str]]]:
    return {
        "cidr": lambda r: [r.cidr] if r.cidr else [],
        "from-port": lambda r: [str(r.from_port)],
        "to-port": lambda r: [str(r.to_port)],
        "protocol": lambda r: _protocol_words(r.protocol),
        "group-id": lambda r: [r.group] if r.group else [],
        "group-name": lambda r: [names[r.group]] if r.group in names else [],
        "user-id": lambda r: [call.account] if r.group else [],
        "ipv6-cidr": lambda r: [],
        "prefix-list-id": lambda r: [],
    }


def _protocol_words(protocol: str) -> list[str]:
    """A protocol as a filter may name it: tcp also as 6, and so on."""
    return [protocol, _NUMBERS[protocol]] if protocol in _NUMBERS else [protocol]


def _group_out(call: Call, group: SecurityGroup, tags: list[tuple[str, str]]) -> dict[str, Any]:
    return {
        "GroupId": group.id,
        "GroupName": group.name,
        "Description": group.description,
        "VpcId": group.vpc,
        "OwnerId": call.account,
        "SecurityGroupArn": arn(call, "security-group", group.id),
        "IpPermissions": _permissions(call, group.ingress),
        "IpPermissionsEgress": _permissions(call, group.egress),
        "Tags": tag_list(tags),
    }


def _permissions(call: Call, rules: Iterable[SecurityGroupRule]) -> list[dict[str, Any]]:
    """Rules as EC2 lists them in a group: one IpPermission per protocol and port range,
    holding its IP ranges and referenced groups."""
    grouped: dict[tuple[str, int, int], dict[str, Any]] = {}
    for r in rules:
        perm = grouped.get((r.protocol, r.from_port, r.to_port))
        if perm is None:
            perm = {"IpProtocol": r.protocol, "IpRanges": [], "UserIdGroupPairs": []}
            if r.protocol != ALL_PROTOCOLS:
                perm["FromPort"], perm["ToPort"] = r.from_port, r.to_port
            grouped[(r.protocol, r.from_port, r.to_port)] = perm
        described = {"Description": r.description} if r.description else {}
        if r.cidr:
            perm["IpRanges"].append({"CidrIp": r.cidr, **described})
        else:
            perm["UserIdGroupPairs"].append(
                {"GroupId": r.group, "UserId": call.account, **described}
            )
    return list(grouped.values())


# -- rules ----------------------------------------------------------------------------------
@action("AuthorizeSecurityGroupIngress")
def authorize_ingress(call: Call) -> dict[str, Any]:
    return _authorize(call, egress=False)


@action("AuthorizeSecurityGroupEgress")
def authorize_egress(call: Call) -> dict[str, Any]:
    return _authorize(call, egress=True)


def _authorize(call: Call, egress: bool) -> dict[str, Any]:
    if call.param("TagSpecifications") is not None:
        call.tags_for("security-group-rule")  # checked as EC2 does, then refused
        raise ApiError(
            "InvalidParameterValue", "Tags on security group rules are not supported here."
        )
    group_id = _group_id(call)
    added = call.service.authorize_security_group(
        call.tenant, group_id, egress, _specs(call, group_id)
    )
    return {"Return": True, "SecurityGroupRules": [_rule_out(call, group_id, r) for r in added]}


@action("RevokeSecurityGroupIngress")
def revoke_ingress(call: Call) -> dict[str, Any]:
    return _revoke(call, egress=False)


@action("RevokeSecurityGroupEgress")
def revoke_egress(call: Call) -> dict[str, Any]:
    return _revoke(call, egress=True)


def _revoke(call: Call, egress: bool) -> dict[str, Any]:
    group_id = _group_id(call)
    rule_ids = call.ids("SecurityGroupRuleIds")
    if rule_ids:
        if _has_permissions(call):
            raise ApiError(
                "InvalidParameterCombination",
                "Specify either SecurityGroupRuleIds or IpPermissions, not both.",
            )
        gone = call.service.revoke_security_group_rules(call.tenant, group_id, egress, rule_ids)
    else:
        specs = _specs(call, group_id)
        gone = call.service.revoke_security_group(call.tenant, group_id, egress, specs)
    return {"Return": True, "RevokedSecurityGroupRules": [_revoked_out(group_id, r) for r in gone]}


_FLAT = ("IpProtocol", "FromPort", "ToPort", "CidrIp", "SourceSecurityGroupName")


def _has_permissions(call: Call) -> bool:
    return bool(call.param("IpPermissions")) or any(call.param(k) is not None for k in _FLAT)


def _specs(call: Call, group_id: str) -> list[RuleSpec]:
    """The rules a request names: IpPermissions, or the flat IpProtocol/ports/CidrIp (or
    SourceSecurityGroupName) form; a referenced group by name is looked for in the VPC of
    the group the rules are for."""
    permissions = _dicts(call.param("IpPermissions"))
    flat = {k: call.param(k) for k in _FLAT if call.param(k) is not None}
    if permissions and flat:
        raise ApiError(
            "InvalidParameterCombination",
            "Specify either IpPermissions or IpProtocol, ports and CidrIp, not both.",
        )
    if flat:
        source: dict[str, Any] = {"IpProtocol": flat.get("IpProtocol", ALL_PROTOCOLS)}
        for port in ("FromPort", "ToPort"):
            if port in flat:
                source[port] = flat[port]
        if "CidrIp" in flat:
            source["IpRanges"] = [{"CidrIp": flat["CidrIp"]}]
        if "SourceSecurityGroupName" in flat:
            source["UserIdGroupPairs"] = [{"GroupName": flat["SourceSecurityGroupName"]}]
        permissions = [source]
    if not permissions:
        raise missing("IpPermissions")
    vpc = ""
    specs: list[RuleSpec] = []
    for p in permissions:
        if p.get("Ipv6Ranges") or p.get("PrefixListIds"):
            raise ApiError(
                "InvalidParameterValue", "IPv6 ranges and prefix lists are not supported."
            )
        protocol = p.get("IpProtocol")
        if not isinstance(protocol, str):
            raise missing("IpPermissions.IpProtocol")
        lo, hi = _port(p.get("FromPort")), _port(p.get("ToPort"))
        ranges, pairs = _dicts(p.get("IpRanges")), _dicts(p.get("UserIdGroupPairs"))
        if not ranges and not pairs:
            raise missing("IpPermissions.IpRanges")
        for r in ranges:
            cidr = r.get("CidrIp")
            if not isinstance(cidr, str) or not cidr:
                raise missing("IpRanges.CidrIp")
            specs.append(RuleSpec(protocol, lo, hi, cidr=cidr, description=_text(r)))
        for pair in pairs:
            ref = pair.get("GroupId")
            if not ref:
                name = pair.get("GroupName")
                if not isinstance(name, str) or not name:
                    raise missing("UserIdGroupPairs.GroupId")
                vpc = vpc or _vpc_of(call, group_id)
                ref = call.service.security_group_named(call.tenant, name, vpc).id
            specs.append(RuleSpec(protocol, lo, hi, group=str(ref), description=_text(pair)))
    return specs


def _dicts(value: Any) -> list[dict[str, Any]]:
    """The structures of a list parameter ([] when absent)."""
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _port(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _text(item: Mapping[str, Any]) -> str:
    value = item.get("Description")
    return value if isinstance(value, str) else ""


def _vpc_of(call: Call, group_id: str) -> str:
    for g in call.service.describe_security_groups(call.tenant):
        if g.id == group_id:
            return g.vpc
    raise _group_not_found(group_id)


def _rule_out(call: Call, group_id: str, r: SecurityGroupRule) -> dict[str, Any]:
    out: dict[str, Any] = {
        "SecurityGroupRuleId": r.id,
        "GroupId": group_id,
        "GroupOwnerId": call.account,
        "IsEgress": r.egress,
        "IpProtocol": r.protocol,
        "FromPort": r.from_port,
        "ToPort": r.to_port,
        "SecurityGroupRuleArn": arn(call, "security-group-rule", r.id),
    }
    if r.cidr:
        out["CidrIpv4"] = r.cidr
    else:
        out["ReferencedGroupInfo"] = {"GroupId": r.group, "UserId": call.account}
    if r.description:
        out["Description"] = r.description
    return out


def _revoked_out(group_id: str, r: SecurityGroupRule) -> dict[str, Any]:
    out: dict[str, Any] = {
        "SecurityGroupRuleId": r.id,
        "GroupId": group_id,
        "IsEgress": r.egress,
        "IpProtocol": r.protocol,
        "FromPort": r.from_port,
        "ToPort": r.to_port,
    }
    if r.cidr:
        out["CidrIpv4"] = r.cidr
    else:
        out["ReferencedGroupId"] = r.group
    if r.description:
        out["Description"] = r.description
    return out


@action("DescribeSecurityGroupRules", mutating=False)
def describe_security_group_rules(call: Call) -> dict[str, Any]:
    rules: list[tuple[str, SecurityGroupRule]] = [
        (g.id, r)
        for g in call.service.describe_security_groups(call.tenant)
        for r in (*g.ingress, *g.egress)
    ]
    fields: dict[str, Getter] = {
        "group-id": lambda gr: gr[0],
        "security-group-rule-id": lambda gr: gr[1].id,
    }
    found = select(
        call,
        rules,
        fields,
        id_of=lambda gr: gr[1].id,
        ids_param="SecurityGroupRuleIds",
        not_found=_rule_not_found,
        tags={},  # rules carry no tags: tag filters match nothing
    )
    page, token = paginate(call, found, lambda gr: gr[1].id)
    return {
        "SecurityGroupRules": [_rule_out(call, gid, r) for gid, r in page],
        "NextToken": token,
    }


def _rule_not_found(rule_id: str) -> ServiceError:
    return ServiceError(
        "InvalidSecurityGroupRuleId.NotFound",
        f"The security group rule ID '{rule_id}' does not exist",
    )
