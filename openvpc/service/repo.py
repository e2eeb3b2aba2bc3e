"""Typed access to the service's documents inside one store transaction.

Each resource class has a document kind and a key; counters (id, MAC, VNI, VLAN and per
node allocator hints) and settings are service-private documents beside them.
"""

import hashlib
from typing import Any, TypeVar, cast

from openvpc.model.codec import from_dict, to_dict
from openvpc.model.gateways import ElasticIp, InternetGateway, NatGateway, VpcPeeringConnection
from openvpc.model.policy import AclAssociation, NetworkAcl, SecurityGroup
from openvpc.model.resources import (
    AddressOwner,
    Association,
    ComputeNode,
    Instance,
    Interface,
    NodeAllocation,
    RouteTable,
    Subnet,
    Tenant,
    Vpc,
)
from openvpc.service.errors import ServiceError, not_found
from openvpc.store import Transaction

T = TypeVar("T")

KINDS: dict[type, str] = {
    ComputeNode: "node",
    Tenant: "tenant",
    Vpc: "vpc",
    Subnet: "subnet",
    RouteTable: "route_table",
    Association: "association",
    Instance: "instance",
    Interface: "interface",
    AddressOwner: "address_owner",
    NodeAllocation: "allocation",
    SecurityGroup: "security_group",
    NetworkAcl: "network_acl",
    AclAssociation: "acl_association",
    InternetGateway: "internet_gateway",
    NatGateway: "nat_gateway",
    ElasticIp: "elastic_ip",
    VpcPeeringConnection: "peering",
}
_NOUNS: dict[type, str] = {
    Vpc: "vpc",
    Subnet: "subnet",
    RouteTable: "routeTable",
    Instance: "instance",
    Interface: "networkInterface",
    SecurityGroup: "securityGroup",
    NetworkAcl: "networkAcl",
    InternetGateway: "internetGateway",
    NatGateway: "natGateway",
    ElasticIp: "allocation",
}
_COUNTER = "counter"
_SETTING = "setting"
_CREDENTIAL = "credential"
_ACCESS_KEY = "access_key"  # a tenant's SigV4 key: id -> {"tenant", "secret"}
TAGS = "tags"  # "<resource id>/<tenant>" -> {"tenant", "resource", "type", "tags": [[k, v]]}
ID_ATTEMPTS = 64


def key_of(obj: Any) -> str:
    if isinstance(obj, ComputeNode | Tenant):
        return obj.name
    if isinstance(obj, Association | AclAssociation):
        return obj.subnet
    if isinstance(obj, AddressOwner):
        return owner_key(obj.vpc, obj.ip)
    if isinstance(obj, NodeAllocation):
        return obj.node
    return str(obj.id)


def owner_key(vpc: str, ip: str) -> str:
    return f"{vpc}/{ip}"


# fields the service looks documents up by (Transaction.find); the store indexes them
INDEXED_FIELDS = ("tenant", "vpc", "ip", "netns", "resource")


class Repo:
    """Typed reads and writes in one transaction; it remembers which documents the
    transaction wrote (`changes`), so that work after the call can be limited to those."""

    def __init__(self, tx: Transaction) -> None:
        self.tx = tx
        # (kind, key) -> True if this transaction created it, False if it changed or deleted it
        self.changes: dict[tuple[str, str], bool] = {}

    def get(self, cls: type[T], key: str) -> T | None:
        doc = self.tx.get(KINDS[cls], key)
        return None if doc is None else _decode(cls, doc.body)

    def all(self, cls: type[T]) -> list[T]:
        """Every resource of `cls`, sorted by key."""
        return [_decode(cls, d.body) for d in self.tx.list(KINDS[cls])]

    def find(self, cls: type[T], field: str, value: str, **also: str) -> list[T]:
        """Resources of `cls` whose `field` is `value` (and each field in `also` its value),
        sorted by key; `field` should be one of INDEXED_FIELDS."""
        return [_decode(cls, d.body) for d in self.tx.find(KINDS[cls], field, value, **also)]

    def put(self, obj: Any) -> bool:
        kind, key = KINDS[type(obj)], key_of(obj)
        if (kind, key) not in self.changes:
            self.changes[(kind, key)] = not self.tx.exists(kind, key)
        return self.tx.put(kind, key, _encode(obj))

    def delete(self, cls: type, key: str) -> bool:
        """Delete a resource and the tags anyone put on it."""
        self.changes[(KINDS[cls], key)] = False
        for doc in self.tx.find(TAGS, "resource", key):
            self.tx.delete(TAGS, doc.id)
        return self.tx.delete(KINDS[cls], key)

    def tenant(self, name: str) -> Tenant:
        found = self.get(Tenant, name) if isinstance(name, str) else None
        if found is None:
            raise ServiceError("AuthFailure", f"The tenant '{name}' is not known.")
        return found

    def owned(self, cls: type[T], key: str, tenant: str) -> T:
        """A tenant's resource; another tenant's looks exactly like a missing one."""
        found = self.get(cls, key) if isinstance(key, str) else None
        if found is None or getattr(found, "tenant", None) != tenant:
            raise not_found(_NOUNS[cls], str(key))
        return found

    def counter(self, name: str, default: int) -> int:
        doc = self.tx.get(_COUNTER, name)
        return default if doc is None else int(doc.body["next"])

    def set_counter(self, name: str, value: int) -> None:
        self.tx.put(_COUNTER, name, {"next": value})

    def delete_counter(self, name: str) -> None:
        self.tx.delete(_COUNTER, name)

    def setting(self, name: str, default: int) -> int:
        doc = self.tx.get(_SETTING, name)
        return default if doc is None else int(doc.body["value"])

    def set_setting(self, name: str, value: int) -> None:
        self.tx.put(_SETTING, name, {"value": value})

    def text_setting(self, name: str, default: str) -> str:
        doc = self.tx.get(_SETTING, name)
        return default if doc is None else str(doc.body["text"])

    def set_text_setting(self, name: str, value: str) -> None:
        self.tx.put(_SETTING, name, {"text": value})

    def set_credential(self, node: str, secret_hash: str) -> None:
        self.tx.put(_CREDENTIAL, node, {"sha256": secret_hash})

    def credentials(self) -> dict[str, str]:
        """Registered node -> SHA-256 of its southbound secret."""
        return {d.id: str(d.body["sha256"]) for d in self.tx.list(_CREDENTIAL)}

    def access_key(self, key_id: str) -> tuple[str, str] | None:
        """(secret, tenant) of an access key, None for a key that was never issued."""
        doc = self.tx.get(_ACCESS_KEY, key_id)
        return None if doc is None else (str(doc.body["secret"]), str(doc.body["tenant"]))

    def access_keys(self, tenant: str) -> list[str]:
        """The ids of a tenant's access keys, sorted."""
        return [d.id for d in self.tx.find(_ACCESS_KEY, "tenant", tenant)]

    def put_access_key(self, key_id: str, tenant: str, secret: str) -> None:
        self.tx.put(_ACCESS_KEY, key_id, {"tenant": tenant, "secret": secret})

    def delete_access_key(self, key_id: str) -> bool:
        return self.tx.delete(_ACCESS_KEY, key_id)

    def new_id(self, prefix: str, cls: type) -> str:
        """An AWS-shaped id ("vpc-" + 17 hex digits), deterministic from a global counter."""
        n = self.counter("id", 1)
        for _ in range(ID_ATTEMPTS):
            digest = hashlib.blake2b(f"{prefix}:{n}".encode(), digest_size=9).hexdigest()
            candidate = f"{prefix}-{digest[:17]}"
            n += 1
            if self.tx.get(KINDS[cls], candidate) is None:
                self.set_counter("id", n)
                return candidate
        raise ServiceError("InternalError", f"no free {prefix} id after {ID_ATTEMPTS} tries")


def _decode(cls: type[T], body: dict[str, Any]) -> T:
    if cls is NodeAllocation:
        return cast(T, allocation_from_body(body))
    return from_dict(cls, body)


def _encode(obj: Any) -> dict[str, Any]:
    if isinstance(obj, NodeAllocation):
        return allocation_body(obj)
    return cast(dict[str, Any], to_dict(obj))


# A node's allocation grows with the interfaces on the node and is read and rewritten by
# every call that adds one: the generic codec's per-item cost made that the bulk of applying
# a large topology. These two are its exact equivalents (test_service_alloc checks it).
def allocation_body(a: NodeAllocation) -> dict[str, Any]:
    return {
        "node": a.node,
        "vrfs": [[t, v] for t, v in a.vrfs],
        "labels": [[t, l3, l2] for t, l3, l2 in a.labels],
        "vifs": [[i, v] for i, v in a.vifs],
    }


def allocation_from_body(body: dict[str, Any]) -> NodeAllocation:
    try:
        return NodeAllocation(
            str(body["node"]),
            tuple((str(t), int(v)) for t, v in body.get("vrfs", ())),
            tuple((str(t), int(l3), int(l2)) for t, l3, l2 in body.get("labels", ())),
            tuple((str(i), int(v)) for i, v in body.get("vifs", ())),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"a node allocation of an unexpected shape: {e}") from None
