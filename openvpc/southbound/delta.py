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
    Ref,
    VrouterObject,
    by_ref,
    canonical,
    decode_object,
    diff_objects,
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


def _objects(config: NodeConfig) -> dict[Ref, VrouterObject]:
    return by_ref(vrouter_objects(config))


def config_delta(old: NodeConfig, new: NodeConfig) -> dict[str, Any]:
    """What turns `old` into `new`: {"generation", "set": [...], "delete": [...], "dns"?}."""
    stale, changed = diff_objects(vrouter_objects(old), vrouter_objects(new))
    delta: dict[str, Any] = {
        "generation": new.generation,
        "set": [{"kind": object_kind(o), "obj": to_dict(o)} for o in changed],
        "delete": [{"kind": object_kind(o), "key": object_key(o)} for o in stale],
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
