"""Applying topology files through the API (`openvpc up` and `openvpc apply`): the whole file
the first time, only the differences after, matched by Name tags."""

from dataclasses import replace
from pathlib import Path

from apikit import REGION, Api

from openvpc.lab import apiview
from openvpc.lab.apply import Endpoint, apply
from openvpc.lab.topology import RouteSpec, load_topology
from openvpc.tools.matrix import expected_probes

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "two-tenants.yaml"


def endpoint(api: Api) -> Endpoint:
    for tenant in ("red", "blue"):
        api.service.create_tenant(tenant)
        api.keys[tenant] = api.service.create_tenant_key(tenant)
    return Endpoint(api.endpoint, REGION, dict(api.keys))


def test_apply_builds_the_file_then_only_its_differences(api: Api) -> None:
    topo = load_topology(EXAMPLE)
    target = endpoint(api)
    first = apply(topo, target)
    assert sum("ran instance" in line for line in first) == 8
    assert apply(topo, target) == []  # nothing differs any more

    views = [apiview.read(api.ec2(t), t) for t in ("red", "blue")]
    red = views[0]
    assert sorted(i.name for i in red.instances) == ["r1", "r2", "r3", "r4"]
    assert {i.node for i in red.instances} == {"node1", "node2"}
    reach = {(p.src, p.target): p.expect for p in expected_probes(apiview.snapshot(views))}
    assert reach[("r1", "r3")] == "r3"
    assert reach[("r1", "r4")] == ""  # db's table blackholes web
    assert reach[("r1", "b2")] == "r2"  # b2 shares r2's address: r2 answers, never b2

    red_spec = topo.tenants[0]
    vpc = red_spec.vpcs[0]
    tables = tuple(
        replace(t, routes=(RouteSpec("10.0.9.0/24", "vm:r3"),)) if t.name == "app" else t
        for t in vpc.route_tables
    )
    smaller = replace(vpc, vms=vpc.vms[:3], route_tables=tables)
    changed = replace(topo, tenants=(replace(red_spec, vpcs=(smaller,)), topo.tenants[1]))
    done = apply(changed, target)
    assert done == [
        "red: route 10.0.9.0/24 -> "
        + next(i.interface for i in red.instances if i.name == "r3")
        + " in app",
        "red: terminated instance r4 " + next(i.id for i in red.instances if i.name == "r4"),
    ]
    assert apply(changed, target) == []
