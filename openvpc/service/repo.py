"""Typed access to the service's documents inside one store transaction.

Each resource class has a document kind and a key; counters (id, MAC, VNI, VLAN and per
node allocator hints) and settings are service-private documents beside them.
"""

import hashlib
from typing import Any, TypeVar

from openvpc.model.codec import from_dict, to_dict
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
}
_NOUNS: dict[type, str] = {
    Vpc: "vpc",
    Subnet: "subnet",
    RouteTable: "routeTable",
    Instance: "instance",
    Interface: "networkInterface",
}
_COUNTER = "counter"
_SETTING = "setting"
_CREDENTIAL = "credential"
ID_ATTEMPTS = 64


def key_of(obj: Any) -> str:
    if isinstance(obj, ComputeNode | Tenant):
        return obj.name
    if isinstance(obj, Association):
        return obj.subnet
    if isinstance(obj, AddressOwner):
        return owner_key(obj.vpc, obj.ip)
    if isinstance(obj, NodeAllocation):
        return obj.node
    return str(obj.id)


def owner_key(vpc: str, ip: str) -> str:
    return f"{vpc}/{ip}"


class Repo:
    def __init__(self, tx: Transaction) -> None:
        self.tx = tx

    def get(self, cls: type[T], key: str) -> T | None:
        doc = self.tx.get(KINDS[cls], key)
        return None if doc is None else from_dict(cls, doc.body)

    def all(self, cls: type[T]) -> list[T]:
        """Every resource of `cls`, sorted by key."""
        return [from_dict(cls, d.body) for d in self.tx.list(KINDS[cls])]

    def put(self, obj: Any) -> bool:
        return self.tx.put(KINDS[type(obj)], key_of(obj), to_dict(obj))

    def delete(self, cls: type, key: str) -> bool:
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

    def setting(self, name: str, default: int) -> int:
        doc = self.tx.get(_SETTING, name)
        return default if doc is None else int(doc.body["value"])

    def set_setting(self, name: str, value: int) -> None:
        self.tx.put(_SETTING, name, {"value": value})

    def set_credential(self, node: str, secret_hash: str) -> None:
        self.tx.put(_CREDENTIAL, node, {"sha256": secret_hash})

    def credentials(self) -> dict[str, str]:
        """Registered node -> SHA-256 of its southbound secret."""
        return {d.id: str(d.body["sha256"]) for d in self.tx.list(_CREDENTIAL)}

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
