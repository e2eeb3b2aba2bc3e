"""Expected connectivity from desired state: route tables, VIPs aside, and overlapping tenants."""

from dataclasses import replace

from test_compiler import l3_snapshot

from openvpc.model.resources import Instance, Interface, Subnet, Vpc
from openvpc.tools.matrix import Probe, Result, expected_probes


def _expect(probes: list[Probe]) -> dict[tuple[str, str], str]:
    return {(p.src, p.target): p.expect for p in probes}


def test_route_tables_decide_inter_subnet_reachability() -> None:
    got = _expect(expected_probes(l3_snapshot()))
    assert got[("r1", "r2")] == "r2"  # same subnet
    assert got[("r1", "r3")] == ""  # db's table blackholes web: the reply never comes back
    assert got[("r3", "r1")] == ""
    assert got[("r2", "r1")] == "r1"


def test_overlapping_tenant_addresses_answer_only_inside_the_probers_vpc() -> None:
    snap = l3_snapshot()
    blue = replace(
        snap,
        vpcs=(*snap.vpcs, Vpc("vpc-2", "blue", "prod", "10.0.0.0/16", main_route_table="rtb-main")),
        subnets=(*snap.subnets, Subnet("subnet-b", "blue", "vpc-2", "web", "10.0.1.0/24")),
        instances=(*snap.instances, Instance("i-9", "blue", "b1", "node1", "eni-9")),
        interfaces=(
            *snap.interfaces,
            Interface(
                "eni-9", "blue", "subnet-b", "i-9", "node1", "02:00:00:00:00:09", "10.0.1.5", "vm9"
            ),
        ),
    )
    got = _expect(expected_probes(blue))
    assert got[("r1", "b1")] == "r2"  # b1's address, but red's r2 holds it in red's VPC
    assert ("b1", "r2") not in got  # r2's address is b1's own: nothing to probe
    assert got[("b1", "r1")] == ""


def test_result_is_ok_only_when_ping_and_responder_match() -> None:
    p = Probe("r1", "10.0.1.5", "r2", "r2")
    assert Result(p, True, "r2").ok
    assert not Result(p, True, "b1").ok
    assert not Result(Probe("r1", "10.0.2.4", "r3", ""), True, "").ok
