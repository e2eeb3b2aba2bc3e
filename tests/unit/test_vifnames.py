"""The node-side names of VM veths: short enough for the kernel, stable, ours, distinct."""

import re

import pytest

from openvpc.model.vifnames import NODE_NETNS, check_datapath, node_device_name, node_side_name


def test_a_node_side_name_fits_ifnamsiz_and_is_stable() -> None:
    name = node_side_name("ov-lab-v-web", "eth0")
    assert re.fullmatch(r"ovv[0-9a-f]{12}", name)
    assert len(name) == 15
    assert node_side_name("ov-lab-v-web", "eth0") == name


def test_node_side_names_differ_by_namespace_and_interface() -> None:
    names = {node_side_name(ns, ifname) for ns in ("a", "b", "ab") for ifname in ("eth0", "eth1")}
    assert len(names) == 6
    # no ambiguity from where one name ends and the other begins
    assert node_side_name("a", "beth0") != node_side_name("ab", "eth0")


def test_datapaths() -> None:
    assert check_datapath("ebpf") == "ebpf"
    with pytest.raises(ValueError, match="unknown datapath 'dpdk'"):
        check_datapath("dpdk")


def test_a_port_in_the_node_namespace_names_its_own_device() -> None:
    assert node_device_name(NODE_NETNS, "tap-qemu0") == "tap-qemu0"
    assert node_device_name("ov-lab-v-web", "eth0") == node_side_name("ov-lab-v-web", "eth0")
