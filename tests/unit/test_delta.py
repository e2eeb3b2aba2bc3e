"""Southbound changes: a delta turns the old config into the new one, and carries only what
changed."""

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_compiler import l3_snapshot

from openvpc.compiler.compile import compile_node
from openvpc.model.resources import AddressOwner
from openvpc.southbound.delta import apply_delta, config_delta


def test_moving_an_address_sends_its_route_only() -> None:
    snap = l3_snapshot()
    moved = replace(
        snap, revision=8, address_owners=(AddressOwner("vpc-1", "10.0.1.100", "eni-2", "red"),)
    )
    old, new = compile_node(snap, "node2"), compile_node(moved, "node2")
    delta = config_delta(old, new)
    assert delta["generation"] == 8
    assert [(s["kind"], s["obj"]["prefix"], s["obj"]["nh"]) for s in delta["set"]] == [
        ("route", "10.0.1.100/32", "encap:2")
    ]
    assert delta["delete"] == [] and "dns" not in delta
    assert apply_delta(old, delta) == new


def test_a_vm_leaving_deletes_its_objects_and_dns_records() -> None:
    snap = l3_snapshot()
    gone = replace(
        snap,
        revision=9,
        instances=snap.instances[:2],
        interfaces=snap.interfaces[:2],
        allocations=(snap.allocations[0], replace(snap.allocations[1], vifs=(("eni-2", 2),))),
    )
    old, new = compile_node(snap, "node1"), compile_node(gone, "node1")
    delta = config_delta(old, new)
    assert {"kind": "route", "key": "1/10.0.2.4/32"} in delta["delete"]
    assert "dns" in delta
    assert apply_delta(old, delta) == new


@given(st.permutations(range(3)), st.permutations(range(3)))
def test_any_two_configs_round_trip(a: list[int], b: list[int]) -> None:
    encaps = ["vxlan", "mplsoudp", "mplsogre"]
    old = compile_node(l3_snapshot(encaps[a[0]]), "node1")
    new = compile_node(l3_snapshot(encaps[b[0]]), "node2")
    new = replace(new, node="node1")
    assert apply_delta(old, config_delta(old, new)) == new


def test_a_malformed_delta_is_refused() -> None:
    old = compile_node(l3_snapshot(), "node1")
    with pytest.raises(ValueError):
        apply_delta(old, {"generation": 1, "set": [{"kind": "bogus", "obj": {}}]})
    with pytest.raises(ValueError):
        apply_delta(old, {"generation": "x", "set": []})
