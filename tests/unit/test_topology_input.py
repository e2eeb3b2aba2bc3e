"""Topology input that must be refused before anything is created: duplicate keys (with the
key's path and line), files that are not UTF-8 or cannot be read, and every service rule
found by applying the whole file to a scratch store, reported at the field's path."""

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from openvpc.lab.preflight import check_topology
from openvpc.lab.topology import TopologyError, loads_topology
from openvpc.lab.yamlload import DuplicateKeyError, StrictLoader


def doc(vms: list[dict[str, Any]], cidr: str = "10.0.1.0/24") -> dict[str, Any]:
    return {
        "name": "t",
        "nodes": ["node1"],
        "tenants": [
            {
                "name": "red",
                "vpcs": [
                    {
                        "name": "prod",
                        "cidr": "10.0.0.0/16",
                        "subnets": [{"name": "web", "cidr": cidr}],
                        "vms": vms,
                    }
                ],
            }
        ],
    }


def vm(i: int, **extra: str) -> dict[str, Any]:
    return {"name": f"v{i}", "subnet": "web", "node": "node1", **extra}


def write(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "lab.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


DUPLICATE_VM_NAME = """\
name: t
nodes: [node1]
tenants:
  - name: red
    vpcs:
      - name: prod
        cidr: 10.0.0.0/16
        subnets: [{name: web, cidr: 10.0.1.0/24}]
        vms:
          - {name: v0, subnet: web, node: node1}
          - name: v1
            subnet: web
            name: v2
            node: node1
"""


def test_a_duplicate_key_is_refused_with_its_path_and_line() -> None:
    with pytest.raises(TopologyError) as err:
        loads_topology(DUPLICATE_VM_NAME, "lab.yaml")
    assert str(err.value) == (
        "tenants[0].vpcs[0].vms[1].name: key 'name' given twice (lab.yaml, line 13)"
    )


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("name: a\nname: b\n", "name"),
        (
            "tenants:\n  - name: red\n  - name: blue\n    vpcs: []\n    vpcs: []\n",
            "tenants[1].vpcs",
        ),
        ("a: {b: 1, c: {d: 1, d: 2}}\n", "a.c.d"),
    ],
)
def test_duplicates_are_found_at_any_depth(text: str, path: str) -> None:
    with pytest.raises(DuplicateKeyError) as err:
        yaml.load(text, Loader=StrictLoader)
    assert err.value.path == path


def test_same_key_in_sibling_mappings_and_merges_are_fine() -> None:
    text = "base: &b {x: 1, y: 2}\nlist: [{x: 1}, {x: 2}]\nover: {<<: *b, x: 3}\n"
    data = yaml.load(text, Loader=StrictLoader)
    assert data["over"] == {"x": 3, "y": 2}
    assert [item["x"] for item in data["list"]] == [1, 2]


def test_a_file_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: t\nnodes: [n\xe9ud]\n".encode("latin-1"))
    with pytest.raises(
        TopologyError, match=rf"^{re.escape(str(path))}: not UTF-8 text \(byte 17, line 2"
    ):
        check_topology(path)


def test_an_unreadable_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(
        TopologyError, match=rf"^{re.escape(str(tmp_path / 'none.yaml'))}: No such file"
    ):
        check_topology(tmp_path / "none.yaml")
    with pytest.raises(TopologyError, match=rf"^{re.escape(str(tmp_path))}: Is a directory"):
        check_topology(tmp_path)


def test_exhausting_a_subnet_names_the_first_vm_that_does_not_fit(tmp_path: Path) -> None:
    # a /28 holds 16 addresses, five of them reserved: eleven VMs fit, the twelfth does not
    path = write(tmp_path, doc([vm(i) for i in range(12)], cidr="10.0.1.0/28"))
    with pytest.raises(TopologyError) as err:
        check_topology(path)
    assert str(err.value).startswith(
        "tenants[0].vpcs[0].vms[11]: InsufficientFreeAddressesInSubnet: "
    )
    check_topology(write(tmp_path, doc([vm(i) for i in range(11)], cidr="10.0.1.0/28")))


def test_a_fixed_ip_taken_by_an_earlier_vm_names_the_ip_field(tmp_path: Path) -> None:
    # v0..v2 get the lowest free addresses .4, .5 and .6; v3 asks for .5
    vms = [vm(0), vm(1), vm(2), vm(3, ip="10.0.1.5")]
    with pytest.raises(TopologyError) as err:
        check_topology(write(tmp_path, doc(vms)))
    assert str(err.value) == (
        "tenants[0].vpcs[0].vms[3].ip: InvalidIPAddress.InUse: Address 10.0.1.5 is in use."
    )


def test_an_allowed_address_that_is_another_vms_own_names_its_index(tmp_path: Path) -> None:
    vms: list[dict[str, Any]] = [vm(0), vm(1)]
    vms[1]["allowed_addresses"] = ["10.0.1.50", "10.0.1.4"]
    with pytest.raises(TopologyError) as err:
        check_topology(write(tmp_path, doc(vms)))
    assert str(err.value).startswith(
        "tenants[0].vpcs[0].vms[1].allowed_addresses[1]: InvalidIPAddress.InUse"
    )


def test_a_valid_file_passes_and_touches_no_disk(tmp_path: Path) -> None:
    path = write(tmp_path, doc([vm(0), vm(1, ip="10.0.1.20")]))
    topo, plan = check_topology(path)
    assert [v.name for _, _, v in topo.vms()] == ["v0", "v1"]
    assert [p.node for p in plan.nodes] == ["node1"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lab.yaml"]
