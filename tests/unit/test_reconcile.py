"""The agent's reconcile: golden op lists, idempotency, random transitions on the vRouter's own
programming layer (which refuses unknown next hops and VRFs, and labels another VRF holds)."""

from dataclasses import replace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from openvpc.agent.reconcile import Installed, Op, config_from_dump, parse_dump, reconcile
from openvpc.model.codec import to_dict
from openvpc.model.nodeconfig import (
    MacRouteConfig,
    NextHopConfig,
    NodeConfig,
    PortConfig,
    Ref,
    RouteConfig,
    VrfConfig,
    VrouterObject,
    decode_object,
    object_key,
    object_kind,
    vrouter_objects,
)
from openvpc.vrouter.program import Programmer, build_tables
from openvpc.vrouter.tables import Fabric

FABRIC = Fabric(0, bytes([172, 16, 1, 10]), bytes.fromhex("02fa00000001"))


def vrf(i: int, label: int | None = None) -> VrfConfig:
    base = label if label is not None else 16 + 2 * i
    return VrfConfig(i, f"t/vpc/rtb-{i}", "l3", "vxlan", 100 + i, None, base, base + 1)


def port(vif: int, vrf_id: int) -> PortConfig:
    return PortConfig(
        vif=vif,
        interface_id=f"eni-{vif:017x}",
        instance_id=f"i-{vif:017x}",
        name=f"vm{vif}",
        netns=f"ov-t-vm{vif}",
        ifname="eth0",
        vrf=vrf_id,
        mac=f"02:00:00:00:00:{vif:02x}",
        ip=f"10.0.1.{vif}",
        prefix_len=24,
        gateway="10.0.1.1",
        dns="10.0.0.2",
        domain="ec2.internal",
        hostname=f"ip-10-0-1-{vif}",
        mtu=1450,
    )


def encap(vif: int) -> NextHopConfig:
    return NextHopConfig(f"vif{vif}", "encap", vif=vif, dst_mac=f"02:00:00:00:00:{vif:02x}")


def tunnel(ip: str) -> NextHopConfig:
    return NextHopConfig(f"tunnel/vxlan/{ip}", "tunnel", encap="vxlan", dst_ip=ip)


def ecmp(key: str, *members: str) -> NextHopConfig:
    return NextHopConfig(key, "composite", ecmp=True, members=tuple((m, None) for m in members))


def base_config() -> NodeConfig:
    return NodeConfig(
        node="node1",
        generation=7,
        vrfs=(vrf(1),),
        nexthops=(
            NextHopConfig("receive", "receive"),
            encap(2),
            tunnel("172.16.2.11"),
        ),
        ports=(port(2, 1),),
        routes=(
            RouteConfig(1, "10.0.1.1/32", "receive"),
            RouteConfig(1, "10.0.1.2/32", "vif2", mac="02:00:00:00:00:02"),
            RouteConfig(1, "10.0.1.9/32", "tunnel/vxlan/172.16.2.11", label=101),
        ),
        mac_routes=(MacRouteConfig(1, "ff:ff:ff:ff:ff:ff", "vif2"),),
    )


def vrouter(config: NodeConfig) -> Programmer:
    """The vRouter's own programming layer (it refuses unknown references, label clashes),
    programmed with `config` from empty."""
    programmer = build_tables(FABRIC, [])
    apply(programmer, reconcile(config, []))
    return programmer


def apply(programmer: Programmer, ops: list[Op]) -> None:
    """Apply ops as the vRouter's batch does; ValueError means the order was wrong."""
    for op in ops:
        if op["op"] == "set":
            programmer.set(op["kind"], decode_object(op["kind"], op["obj"]))
        else:
            assert programmer.delete(op["kind"], op["key"]), f"delete of absent {op}"


def op_ref(op: Op) -> Ref:
    if op["op"] == "delete":
        return (op["kind"], op["key"])
    return (op["kind"], object_key(decode_object(op["kind"], op["obj"])))


def state(objects: list[VrouterObject]) -> dict[Ref, VrouterObject]:
    return {(object_kind(o), object_key(o)): o for o in objects}


def test_empty_vrouter_gets_everything_in_write_order() -> None:
    config = replace(base_config(), nexthops=(ecmp("ecmp/a", "vif2"), *base_config().nexthops))
    ops = reconcile(config, [])
    assert [(o["op"], o["kind"], object_key(decode_object(o["kind"], o["obj"]))) for o in ops] == [
        ("set", "vrf", "1"),
        ("set", "nh", "receive"),
        ("set", "nh", "vif2"),
        ("set", "nh", "tunnel/vxlan/172.16.2.11"),
        ("set", "nh", "ecmp/a"),  # after its member, although listed first
        ("set", "vif", "2"),
        ("set", "route", "1/10.0.1.1/32"),
        ("set", "route", "1/10.0.1.2/32"),
        ("set", "route", "1/10.0.1.9/32"),
        ("set", "mac_route", "1/ff:ff:ff:ff:ff:ff"),
    ]
    assert ops[0] == {"op": "set", "kind": "vrf", "obj": to_dict(vrf(1))}


def test_equal_state_gives_no_ops_and_generation_is_ignored() -> None:
    config = base_config()
    assert reconcile(config, vrouter_objects(config)) == []
    assert reconcile(replace(config, generation=99), vrouter_objects(config)) == []


def test_removed_vm_golden() -> None:
    old = base_config()
    new = replace(
        old,
        nexthops=(NextHopConfig("receive", "receive"), tunnel("172.16.2.11")),
        ports=(),
        routes=(old.routes[0], old.routes[2]),
        mac_routes=(),
    )
    assert reconcile(new, vrouter_objects(old)) == [
        {"op": "delete", "kind": "mac_route", "key": "1/ff:ff:ff:ff:ff:ff"},
        {"op": "delete", "kind": "route", "key": "1/10.0.1.2/32"},
        {"op": "delete", "kind": "vif", "key": "2"},
        {"op": "delete", "kind": "nh", "key": "vif2"},
    ]


def test_changed_label_and_moved_route_golden() -> None:
    old = base_config()
    routes = (
        old.routes[0],
        RouteConfig(1, "10.0.1.2/32", "tunnel/vxlan/172.16.2.11", label=101),  # moved away
        RouteConfig(1, "10.0.1.9/32", "tunnel/vxlan/172.16.2.11", label=102),  # relabelled
    )
    new = replace(old, routes=routes, mac_routes=())
    assert reconcile(new, vrouter_objects(old)) == [
        {"op": "delete", "kind": "mac_route", "key": "1/ff:ff:ff:ff:ff:ff"},
        {"op": "set", "kind": "route", "obj": to_dict(routes[1])},
        {"op": "set", "kind": "route", "obj": to_dict(routes[2])},
    ]


def test_next_hop_replaced_under_a_changed_route_golden() -> None:
    old = base_config()
    new_route = RouteConfig(1, "10.0.1.9/32", "tunnel/vxlan/172.16.2.12", label=101)
    new = replace(
        old,
        nexthops=(*old.nexthops[:2], tunnel("172.16.2.12")),
        routes=(*old.routes[:2], new_route),
    )
    ops = reconcile(new, vrouter_objects(old))
    assert ops == [
        {"op": "delete", "kind": "nh", "key": "tunnel/vxlan/172.16.2.11"},
        {"op": "set", "kind": "nh", "obj": to_dict(tunnel("172.16.2.12"))},
        {"op": "set", "kind": "route", "obj": to_dict(new_route)},
    ]
    vr = vrouter(old)
    apply(vr, ops)
    assert state(vr.dump()) == state(vrouter_objects(new))


def test_new_vrf_reusing_a_freed_label_is_written_after_the_old_one_goes() -> None:
    """The vRouter refuses a label another VRF holds: the stale VRF must be deleted first."""
    old = base_config()
    new = replace(
        old,
        vrfs=(vrf(2, label=old.vrfs[0].l3_label),),
        ports=(port(2, 2),),
        routes=tuple(replace(r, vrf=2) for r in old.routes),
        mac_routes=tuple(replace(r, vrf=2) for r in old.mac_routes),
    )
    ops = reconcile(new, vrouter_objects(old))
    assert [op_ref(o) for o in ops if o["op"] == "delete"] == [
        ("mac_route", "1/ff:ff:ff:ff:ff:ff"),
        ("route", "1/10.0.1.9/32"),
        ("route", "1/10.0.1.2/32"),
        ("route", "1/10.0.1.1/32"),
        ("vrf", "1"),
    ]
    assert ops.index({"op": "delete", "kind": "vrf", "key": "1"}) < ops.index(
        {"op": "set", "kind": "vrf", "obj": to_dict(new.vrfs[0])}
    )
    vr = vrouter(old)
    apply(vr, ops)
    assert state(vr.dump()) == state(vrouter_objects(new))
    assert vr.tables.labels[old.vrfs[0].l3_label].vrf == 2


def test_dump_round_trip_and_adoption() -> None:
    config = base_config()
    dump = {
        "generation": 7,
        "objects": [{"kind": object_kind(o), "obj": to_dict(o)} for o in vrouter_objects(config)],
    }
    installed = parse_dump(dump)
    assert installed.errors == ()
    assert reconcile(config, installed.objects) == []
    adopted = config_from_dump("node1", installed)
    assert adopted.generation == 7
    assert reconcile(adopted, installed.objects) == []
    assert set(vrouter_objects(adopted)) == set(vrouter_objects(config))


def test_malformed_dump_entries_are_reported_not_raised() -> None:
    good = {"kind": "vrf", "obj": to_dict(vrf(1))}
    bad: list[Any] = [
        {"kind": "bogus", "obj": {}},
        {"kind": "vrf", "obj": {"id": "one"}},
        "not an object",
        {"kind": "nh"},
    ]
    installed = parse_dump({"generation": True, "objects": [good, *bad]})
    assert installed.objects == (vrf(1),)
    assert len(installed.errors) == 4
    assert installed.generation is None
    assert parse_dump(None) == Installed(None, (), ("dump result is not an object: None",))
    assert parse_dump({"objects": 3}).errors == ("dump has no object list",)


# -- random configs -----------------------------------------------------------------------


@st.composite
def configs(draw: st.DrawFn) -> NodeConfig:
    """A self-consistent NodeConfig over small id spaces, so that two draws overlap.

    VRF 5 takes VRF 1's labels and VNI (never both in one config), as a new routing instance
    may reuse the numbers of one that left the node.
    """
    vrf_ids = draw(st.sets(st.integers(1, 4), min_size=1, max_size=3))
    if 1 in vrf_ids and draw(st.booleans()):
        vrf_ids = (vrf_ids - {1}) | {5}
    vrfs = tuple(
        replace(vrf(i), l3_label=18, l2_label=19, vni=101) if i == 5 else vrf(i)
        for i in sorted(vrf_ids)
    )
    simple: list[NextHopConfig] = [NextHopConfig("receive", "receive")]
    for i in sorted(draw(st.sets(st.integers(2, 6), max_size=4))):
        simple.append(encap(i))
    for ip in sorted(draw(st.sets(st.sampled_from(["172.16.2.11", "172.16.2.12"])))):
        simple.append(tunnel(ip))
    nexthops: list[NextHopConfig] = list(simple)
    for c in range(draw(st.integers(0, 3))):
        pool = [nh.key for nh in nexthops]
        members = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=3, unique=True))
        nexthops.append(ecmp(f"ecmp/{c}", *members))
    vifs = sorted(draw(st.sets(st.integers(2, 6), max_size=3)))
    ports = tuple(port(v, draw(st.sampled_from(sorted(vrf_ids)))) for v in vifs)
    keys = [nh.key for nh in nexthops]
    routes = {
        (r.vrf, r.prefix): r
        for r in draw(
            st.lists(
                st.builds(
                    RouteConfig,
                    vrf=st.sampled_from(sorted(vrf_ids)),
                    prefix=st.sampled_from(["10.0.1.1/32", "10.0.1.2/32", "10.0.0.0/16"]),
                    nh=st.sampled_from(keys),
                    label=st.sampled_from([None, 101, 102]),
                ),
                max_size=6,
            )
        )
    }
    macs = {
        (m.vrf, m.mac): m
        for m in draw(
            st.lists(
                st.builds(
                    MacRouteConfig,
                    vrf=st.sampled_from(sorted(vrf_ids)),
                    mac=st.sampled_from(["ff:ff:ff:ff:ff:ff", "02:00:00:00:00:02"]),
                    nh=st.sampled_from(keys),
                ),
                max_size=3,
            )
        )
    }
    shuffled = draw(st.permutations(nexthops))  # the compiler's order must not matter
    return NodeConfig(
        "node1",
        draw(st.integers(1, 100)),
        vrfs,
        tuple(shuffled),
        ports,
        tuple(routes.values()),
        tuple(macs.values()),
    )


@settings(max_examples=400, deadline=None)
@given(configs(), configs())
def test_random_transitions_are_accepted_by_the_vrouter_and_converge(
    old: NodeConfig, new: NodeConfig
) -> None:
    vr = vrouter(old)
    ops = reconcile(new, vr.dump())
    apply(vr, ops)  # the vRouter's checks raise on a wrong order
    assert state(vr.dump()) == state(vrouter_objects(new))
    assert reconcile(new, vr.dump()) == []
    # only differences are written
    before, after = state(vrouter_objects(old)), state(vrouter_objects(new))
    assert all(before.get(op_ref(o)) != after[op_ref(o)] for o in ops if o["op"] == "set")
    assert {op_ref(o) for o in ops if o["op"] == "delete"} == set(before) - set(after)
