"""The operator's gateway node (docs/internet.md): the store names it, the snapshot carries
the internet port, Elastic IPs never take the internet host's addresses, the allocator never
hands out the public VRF's numbers, and a topology file names one of its nodes."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from service_setup import NODES, fails, open_service

from openvpc.lab.topology import TopologyError, loads_topology
from openvpc.model.internet import INTERNET_VIF, PUBLIC_L3_LABEL, PUBLIC_VRF
from openvpc.model.resources import NodeAllocation
from openvpc.service import Service
from openvpc.service.numbers import LABEL_RANGE, VRF_RANGE, NodeHints, plan_node


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[Service]:
    service = open_service(tmp_path / "store.db")
    try:
        yield service
    finally:
        service.store.close()


def test_the_snapshot_carries_the_internet_port_once_a_node_is_named(svc: Service) -> None:
    assert svc.snapshot().internet is None
    node = next(iter(NODES))
    svc.set_vm_netns_prefix("ov-x-v-")
    svc.set_internet_node(node)
    edge = svc.snapshot().internet
    assert edge is not None
    assert (edge.node, edge.netns, edge.ip, edge.gateway, edge.prefix_len) == (
        node,
        "ov-x-v-_internet",
        "198.51.100.254",
        "198.51.100.253",
        24,
    )
    svc.set_internet_node("")
    assert svc.snapshot().internet is None


def test_an_unknown_node_is_refused_and_changes_nothing(svc: Service) -> None:
    with fails("InvalidHostID.NotFound"):
        svc.set_internet_node("nowhere")
    assert svc.snapshot().internet is None


def test_elastic_ips_skip_the_internet_hosts_addresses(svc: Service) -> None:
    svc.set_public_pool("203.0.113.0/29")  # hosts .1 to .6; the internet takes .6 and .5
    svc.set_internet_node(next(iter(NODES)))
    got = [svc.allocate_address(t).public_ip for t in ("red", "red", "red", "red")]
    assert got == [f"203.0.113.{i}" for i in range(1, 5)]
    with fails("InsufficientAddressCapacity"):
        svc.allocate_address("blue")


def test_the_allocator_never_hands_out_the_public_numbers() -> None:
    near_end = NodeHints(vrf=VRF_RANGE[1], label=LABEL_RANGE[1] - 1, vif=INTERNET_VIF)
    allocation, _ = plan_node(NodeAllocation("n"), ["rtb-a", "rtb-b"], ["eni-a"], near_end)
    assert PUBLIC_VRF not in dict(allocation.vrfs).values()
    assert all(n < PUBLIC_L3_LABEL for _, l3, l2 in allocation.labels for n in (l3, l2))
    assert INTERNET_VIF not in dict(allocation.vifs).values()


def test_a_topology_names_one_of_its_nodes_as_the_gateway() -> None:
    assert loads_topology("name: x\nnodes: [a, b]\ninternet: b\n").internet == "b"
    assert loads_topology("name: x\nnodes: [a]\n").internet is None
    with pytest.raises(TopologyError, match="internet"):
        loads_topology("name: x\nnodes: [a]\ninternet: c\n")


def test_the_operator_names_the_gateway_node_from_the_command_line(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from openvpc.cli import app
    from openvpc.store import Store

    db = str(tmp_path / "ov.db")
    store = Store(Path(db))
    Service(store).register_node("gw", "172.16.1.10")
    store.close()
    run = CliRunner().invoke
    assert run(app, ["internet-node", "--db", db]).output == "(none)\n"
    assert (r := run(app, ["internet-node", "gw", "--db", db])).exit_code == 0
    assert r.output == "gw\n"
    refused = run(app, ["internet-node", "nowhere", "--db", db])
    assert refused.exit_code == 1
    assert run(app, ["internet-node", "--db", db]).output == "gw\n"
    assert run(app, ["internet-node", "", "--db", db]).output == "(none)\n"
