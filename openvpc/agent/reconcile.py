"""Desired NodeConfig vs what the vRouter dumps -> the control ops that close the gap. Pure.

Only differences are written: an object already installed with the same value costs nothing, so
a restarted agent adopts the vRouter's state instead of flushing it.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from openvpc.model.codec import to_dict
from openvpc.model.nodeconfig import (
    KIND_ORDER,
    MacRouteConfig,
    NextHopConfig,
    NodeConfig,
    PortConfig,
    RouteConfig,
    VrfConfig,
    VrouterObject,
    by_ref,
    decode_object,
    diff_objects,
    object_key,
    object_kind,
    vrouter_objects,
)

Op = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Installed:
    """A parsed `dump` reply: the objects the vRouter holds, and entries that did not parse."""

    generation: int | None
    objects: tuple[VrouterObject, ...]
    errors: tuple[str, ...] = ()


def parse_dump(result: Any) -> Installed:
    """Decode a `dump` result; malformed entries are reported in `errors`, never raised."""
    if not isinstance(result, dict):
        return Installed(None, (), (f"dump result is not an object: {result!r:.80}",))
    generation = result.get("generation")
    if not isinstance(generation, int) or isinstance(generation, bool):
        generation = None
    raw = result.get("objects")
    if not isinstance(raw, list):
        return Installed(generation, (), ("dump has no object list",))
    objects: list[VrouterObject] = []
    errors: list[str] = []
    for entry in raw:
        if not isinstance(entry, dict):
            errors.append(f"dump entry is not an object: {entry!r:.80}")
            continue
        try:
            objects.append(decode_object(entry.get("kind"), entry.get("obj")))
        except ValueError as e:
            errors.append(str(e))
    return Installed(generation, tuple(objects), tuple(errors))


def _nh_depth(nexthops: dict[str, NextHopConfig]) -> dict[str, int]:
    """0 for simple next hops, 1 + the deepest member for composites (cycles cut)."""
    depth: dict[str, int] = {}

    def visit(key: str, seen: frozenset[str]) -> int:
        if key in depth:
            return depth[key]
        nh = nexthops.get(key)
        if nh is None or nh.kind != "composite" or key in seen:
            return 0
        d = 1 + max((visit(m, seen | {key}) for m, _ in nh.members), default=0)
        depth[key] = d
        return d

    for key in nexthops:
        depth[key] = visit(key, frozenset())
    return depth


def _write_order(objects: Iterable[VrouterObject]) -> list[VrouterObject]:
    """KIND_ORDER, composites after the next hops they contain; stable otherwise."""
    objs = list(objects)
    depth = _nh_depth({o.key: o for o in objs if isinstance(o, NextHopConfig)})
    rank = {kind: i for i, kind in enumerate(KIND_ORDER)}

    def sort_key(o: VrouterObject) -> tuple[int, int]:
        return rank[object_kind(o)], depth.get(o.key, 0) if isinstance(o, NextHopConfig) else 0

    return sorted(objs, key=sort_key)


def set_op(obj: VrouterObject) -> Op:
    return {"op": "set", "kind": object_kind(obj), "obj": to_dict(obj)}


def delete_op(obj: VrouterObject) -> Op:
    return {"op": "delete", "kind": object_kind(obj), "key": object_key(obj)}


def reconcile(desired: NodeConfig, installed: Sequence[VrouterObject]) -> list[Op]:
    """The ops that turn `installed` into `desired`: every delete, then every set.

    Deletes go first, in reverse write order (routes before next hops before VRFs, composites
    before their members), so a label, VNI or key a stale object holds is free before a new
    object claims it. The vRouter applies a batch between two packets, so a route that still
    names a deleted next hop until its own set later in the batch is never seen by traffic.
    """
    wanted = _write_order(by_ref(vrouter_objects(desired)).values())
    stale, changed = diff_objects(installed, wanted)
    ops = [delete_op(o) for o in reversed(_write_order(stale))]
    ops += [set_op(o) for o in changed]
    return ops


def config_from_dump(node: str, installed: Installed) -> NodeConfig:
    """What the vRouter holds as a NodeConfig (no DNS records): the agent's view when headless."""
    objs = installed.objects
    return NodeConfig(
        node=node,
        generation=installed.generation if installed.generation is not None else 0,
        vrfs=tuple(o for o in objs if isinstance(o, VrfConfig)),
        nexthops=tuple(o for o in objs if isinstance(o, NextHopConfig)),
        ports=tuple(o for o in objs if isinstance(o, PortConfig)),
        routes=tuple(o for o in objs if isinstance(o, RouteConfig)),
        mac_routes=tuple(o for o in objs if isinstance(o, MacRouteConfig)),
    )
