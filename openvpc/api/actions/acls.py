"""Network ACL actions: create, delete, describe, create/replace/delete entries and
ReplaceNetworkAclAssociation. IPv6 entries are not supported."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from openvpc.api.common import Getter, paginate, select, tag_list
from openvpc.api.context import Call, missing
from openvpc.api.errors import ApiError
from openvpc.api.registry import action
from openvpc.model.policy import AclAssociation, NaclEntry, NetworkAcl
from openvpc.service.acls import EntrySpec
from openvpc.service.errors import ServiceError, not_found

_NAMES = {"6": "tcp", "17": "udp", "1": "icmp"}


def _acl_out(
    call: Call,
    acl: NetworkAcl,
    associations: Iterable[AclAssociation],
    tags: Sequence[tuple[str, str]],
) -> dict[str, Any]:
    return {
        "NetworkAclId": acl.id,
        "VpcId": acl.vpc,
        "OwnerId": call.account,
        "IsDefault": acl.default,
        "Entries": [_entry_out(e) for e in acl.entries],
        "Associations": [
            {"NetworkAclAssociationId": a.id, "NetworkAclId": acl.id, "SubnetId": a.subnet}
            for a in associations
            if a.network_acl == acl.id
        ],
        "Tags": tag_list(tags),
    }


def _entry_out(e: NaclEntry) -> dict[str, Any]:
    out: dict[str, Any] = {
        "RuleNumber": e.rule_number,
        "Protocol": e.protocol,
        "RuleAction": e.action,
        "Egress": e.egress,
        "CidrBlock": e.cidr,
    }
    if e.protocol in ("6", "17"):
        out["PortRange"] = {"From": e.from_port, "To": e.to_port}
    if e.protocol == "1":
        out["IcmpTypeCode"] = {"Type": e.icmp_type, "Code": e.icmp_code}
    return out


# -- network ACLs ---------------------------------------------------------------------------
@action("CreateNetworkAcl")
def create_network_acl(call: Call) -> dict[str, Any]:
    vpc_id = str(call.required("VpcId"))
    tags = call.tags_for("network-acl")
    acl = call.service.create_network_acl(call.tenant, vpc_id)
    if tags:
        call.service.create_tags(call.tenant, [acl.id], tags)
    return {"NetworkAcl": _acl_out(call, acl, (), tags)}


@action("DeleteNetworkAcl")
def delete_network_acl(call: Call) -> None:
    call.service.delete_network_acl(call.tenant, str(call.required("NetworkAclId")))


def _acl_not_found(acl_id: str) -> ServiceError:
    return not_found("networkAcl", acl_id)


@action("DescribeNetworkAcls", mutating=False)
def describe_network_acls(call: Call) -> dict[str, Any]:
    associations = call.service.describe_acl_associations(call.tenant)
    tags = call.service.all_tags(call.tenant)

    def linked(acl: NetworkAcl) -> list[AclAssociation]:
        return [a for a in associations if a.network_acl == acl.id]

    def entries(value: Any) -> Getter:
        return lambda acl: [v for e in acl.entries for v in value(e)]

    fields: dict[str, Getter] = {
        "network-acl-id": lambda a: a.id,
        "vpc-id": lambda a: a.vpc,
        "default": lambda a: a.default,
        "owner-id": lambda a: call.account,
        "association.association-id": lambda a: [x.id for x in linked(a)],
        "association.network-acl-id": lambda a: [x.network_acl for x in linked(a)],
        "association.subnet-id": lambda a: [x.subnet for x in linked(a)],
        "entry.cidr": entries(lambda e: [e.cidr]),
        "entry.ipv6-cidr": entries(lambda e: []),
        "entry.egress": entries(lambda e: ["true" if e.egress else "false"]),
        "entry.rule-number": entries(lambda e: [str(e.rule_number)]),
        "entry.rule-action": entries(lambda e: [e.action]),
        "entry.protocol": entries(
            lambda e: [e.protocol, _NAMES[e.protocol]] if e.protocol in _NAMES else [e.protocol]
        ),
        "entry.port-range.from": entries(
            lambda e: [str(e.from_port)] if e.protocol in ("6", "17") else []
        ),
        "entry.port-range.to": entries(
            lambda e: [str(e.to_port)] if e.protocol in ("6", "17") else []
        ),
        "entry.icmp.type": entries(lambda e: [str(e.icmp_type)] if e.protocol == "1" else []),
        "entry.icmp.code": entries(lambda e: [str(e.icmp_code)] if e.protocol == "1" else []),
    }
    found = select(
        call,
        call.service.describe_network_acls(call.tenant),
        fields,
        id_of=lambda a: a.id,
        ids_param="NetworkAclIds",
        not_found=_acl_not_found,
        tags=tags,
    )
    page, token = paginate(call, found, lambda a: a.id)
    return {
        "NetworkAcls": [_acl_out(call, a, associations, tags.get(a.id, [])) for a in page],
        "NextToken": token,
    }


# -- entries --------------------------------------------------------------------------------
def _spec(call: Call) -> EntrySpec:
    if call.param("Ipv6CidrBlock") is not None:
        raise ApiError("InvalidParameterValue", "IPv6 entries are not supported.")
    ports = call.param("PortRange")
    icmp = call.param("IcmpTypeCode")
    egress = call.param("Egress")
    if not isinstance(egress, bool):
        raise missing("Egress")
    number = call.required("RuleNumber")
    if not isinstance(number, int):
        raise missing("RuleNumber")
    return EntrySpec(
        number,
        egress,
        str(call.required("Protocol")),
        str(call.required("RuleAction")),
        str(call.required("CidrBlock")),
        (_int(ports.get("From")), _int(ports.get("To"))) if isinstance(ports, dict) else None,
        (_int(icmp.get("Type")), _int(icmp.get("Code"))) if isinstance(icmp, dict) else None,
    )


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@action("CreateNetworkAclEntry")
def create_network_acl_entry(call: Call) -> None:
    acl_id = str(call.required("NetworkAclId"))
    call.service.create_network_acl_entry(call.tenant, acl_id, _spec(call))


@action("ReplaceNetworkAclEntry")
def replace_network_acl_entry(call: Call) -> None:
    acl_id = str(call.required("NetworkAclId"))
    call.service.replace_network_acl_entry(call.tenant, acl_id, _spec(call))


@action("DeleteNetworkAclEntry")
def delete_network_acl_entry(call: Call) -> None:
    acl_id = str(call.required("NetworkAclId"))
    number, egress = call.required("RuleNumber"), call.param("Egress")
    if not isinstance(number, int) or not isinstance(egress, bool):
        raise missing("Egress" if isinstance(number, int) else "RuleNumber")
    call.service.delete_network_acl_entry(call.tenant, acl_id, number, egress)


@action("ReplaceNetworkAclAssociation")
def replace_network_acl_association(call: Call) -> dict[str, Any]:
    association = call.service.replace_network_acl_association(
        call.tenant, str(call.required("AssociationId")), str(call.required("NetworkAclId"))
    )
    return {"NewAssociationId": association.id}
