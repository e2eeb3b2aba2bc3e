"""Config changes on the southbound stream: what differs between two configs of one node.

The first message of a subscription carries the whole config; each later one only the objects
set or deleted since the previous message on that stream (and the DNS records when they
changed), so a change touching one route sends one route.
"""

from typing import Any

from openvpc.model.codec import from_dict, to_dict
from openvpc.model.nodeconfig import (
    DnsRecord,
    NodeConfig,
    ObjectKind,
    VrouterObject,
    canonical,
    decode_object,
    object_key,
    object_kind,
    vrouter_objects,
)

_FIELD: dict[ObjectKind, str] = {
    "vrf": "vrfs",
    "nh": "nexthops",
    "vif": "ports",
    "route": "routes",
    "mac_route": "mac_routes",
}


def _objects(config: NodeConfig) -> dict[tuple[ObjectKind, str], VrouterObject]:
    return {(object_kind(o), object_key(o)): o for o in vrouter_objects(config)}


def config_delta(old: NodeConfig, new: NodeConfig) -> dict[str, Any]:
    """What turns `old` into `new`: {"generation", "set": [...], "delete": [...], "dns"?}."""
    before, after = _objects(old), _objects(new)
    delta: dict[str, Any] = {
        "generation": new.generation,
        "set": [
            {"kind": kind, "obj": to_dict(obj)}
            for (kind, key), obj in after.items()
            if before.get((kind, key)) != obj
        ],
        "delete": [{"kind": kind, "key": key} for kind, key in before if (kind, key) not in after],
    }
    if old.dns != new.dns:
        delta["dns"] = to_dict(new.dns)
    return delta


def apply_delta(old: NodeConfig, delta: dict[str, Any]) -> NodeConfig:
    """`old` with `delta` applied; raises ValueError (or TypeError) on a malformed delta."""
    objects = _objects(old)
    for item in delta.get("delete", []):
        objects.pop((item["kind"], item["key"]), None)
    for item in delta.get("set", []):
        obj = decode_object(item["kind"], item["obj"])
        objects[(object_kind(obj), object_key(obj))] = obj
    parts: dict[str, list[Any]] = {field: [] for field in _FIELD.values()}
    for (kind, _), obj in objects.items():
        parts[_FIELD[kind]].append(obj)
    dns = from_dict(tuple[DnsRecord, ...], delta["dns"]) if "dns" in delta else old.dns
    generation = delta["generation"]
    if not isinstance(generation, int):
        raise ValueError(f"bad generation {generation!r}")
    return canonical(
        NodeConfig(
            old.node,
            generation,
            tuple(parts["vrfs"]),
            tuple(parts["nexthops"]),
            tuple(parts["ports"]),
            tuple(parts["routes"]),
            tuple(parts["mac_routes"]),
            dns,
        )
    )
