"""Tags on a tenant's resources: one document per tagged resource, removed with it, and the
ClientToken records that make a repeated create answer as the first one did."""

import hashlib
from typing import Any

from openvpc.service.errors import ServiceError
from openvpc.service.repo import TAGS, Repo

MAX_TAGS = 50  # per resource, AWS's quota
_TOKEN = "client_token"

# id prefix -> (document kind, EC2 resource type, the code for an id that does not exist)
TAGGABLE: dict[str, tuple[str, str, str]] = {
    "vpc": ("vpc", "vpc", "InvalidVpcID.NotFound"),
    "subnet": ("subnet", "subnet", "InvalidSubnetID.NotFound"),
    "rtb": ("route_table", "route-table", "InvalidRouteTableID.NotFound"),
    "i": ("instance", "instance", "InvalidInstanceID.NotFound"),
    "eni": ("interface", "network-interface", "InvalidNetworkInterfaceID.NotFound"),
    "sg": ("security_group", "security-group", "InvalidGroup.NotFound"),
    "acl": ("network_acl", "network-acl", "InvalidNetworkAclID.NotFound"),
    "igw": ("internet_gateway", "internet-gateway", "InvalidInternetGatewayID.NotFound"),
    "nat": ("nat_gateway", "natgateway", "NatGatewayNotFound"),
    "eipalloc": ("elastic_ip", "elastic-ip", "InvalidAllocationID.NotFound"),
    "pcx": ("peering", "vpc-peering-connection", "InvalidVpcPeeringConnectionID.NotFound"),
}


def resource_type(resource_id: str) -> str:
    """The EC2 resource type of an id ("vpc-1a2b..." -> "vpc"), "" for an unknown prefix."""
    entry = TAGGABLE.get(resource_id.rsplit("-", 1)[0])
    return entry[1] if entry else ""


def _check_owned(repo: Repo, tenant: str, resource_id: str) -> str:
    """The resource type of a tenant's resource; another tenant's is missing, as everywhere."""
    entry = TAGGABLE.get(resource_id.rsplit("-", 1)[0]) if isinstance(resource_id, str) else None
    if entry is None:
        raise ServiceError("InvalidID", f"The ID '{resource_id}' is not valid")
    kind, rtype, code = entry
    doc = repo.tx.get(kind, resource_id)
    if doc is None or tenant not in _owners(doc.body):
        raise ServiceError(code, f"The ID '{resource_id}' does not exist")
    return rtype


def _owners(body: dict[str, Any]) -> set[str]:
    # a peering connection belongs to both sides' tenants
    return {str(body.get(f)) for f in ("tenant", "accepter_tenant") if body.get(f)}


def tags_of(repo: Repo, tenant: str, resource_id: str) -> list[tuple[str, str]]:
    doc = repo.tx.get(TAGS, _key(tenant, resource_id))
    return [] if doc is None else [(str(k), str(v)) for k, v in doc.body["tags"]]


def all_tags(repo: Repo, tenant: str) -> dict[str, list[tuple[str, str]]]:
    """Resource id -> its tags, for every resource of the tenant that has any."""
    return {
        str(d.body["resource"]): [(str(k), str(v)) for k, v in d.body["tags"]]
        for d in repo.tx.find(TAGS, "tenant", tenant)
    }


def create_tags(
    repo: Repo, tenant: str, resource_ids: list[str], tags: list[tuple[str, str]]
) -> None:
    """Add or overwrite tags on each resource (all must be the tenant's)."""
    for rid in resource_ids:
        rtype = _check_owned(repo, tenant, rid)
        current = dict(tags_of(repo, tenant, rid))
        current.update(tags)
        if len(current) > MAX_TAGS:
            raise ServiceError(
                "TagLimitExceeded",
                f"The maximum number of tags ({MAX_TAGS}) for resource {rid} has been exceeded",
            )
        _write(repo, tenant, rid, rtype, current)


def delete_tags(
    repo: Repo, tenant: str, resource_ids: list[str], tags: list[tuple[str, str | None]]
) -> None:
    """Remove tags by key (and value, when one is given); no tags given removes them all."""
    for rid in resource_ids:
        rtype = _check_owned(repo, tenant, rid)
        current = dict(tags_of(repo, tenant, rid))
        if not tags:
            current = {}
        for key, value in tags:
            if key in current and (value is None or current[key] == value):
                del current[key]
        _write(repo, tenant, rid, rtype, current)


def _write(repo: Repo, tenant: str, rid: str, rtype: str, tags: dict[str, str]) -> None:
    if not tags:
        repo.tx.delete(TAGS, _key(tenant, rid))
        return
    body = {
        "tenant": tenant,
        "resource": rid,
        "type": rtype,
        "tags": [[k, v] for k, v in tags.items()],
    }
    repo.tx.put(TAGS, _key(tenant, rid), body)


def _key(tenant: str, resource_id: str) -> str:
    return f"{resource_id}/{tenant}"


def params_digest(params: object) -> str:
    return hashlib.sha256(repr(params).encode()).hexdigest()


def recall_token(repo: Repo, tenant: str, action: str, token: str) -> tuple[str, str] | None:
    """(digest of the parameters, response body) of an earlier call with this ClientToken."""
    doc = repo.tx.get(_TOKEN, f"{tenant}/{action}/{token}")
    return None if doc is None else (str(doc.body["digest"]), str(doc.body["body"]))


def remember_token(
    repo: Repo, tenant: str, action: str, token: str, digest: str, body: str, now: float
) -> None:
    repo.tx.put(
        _TOKEN,
        f"{tenant}/{action}/{token}",
        {"tenant": tenant, "digest": digest, "body": body, "at": now},
    )
