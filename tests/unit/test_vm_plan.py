"""The agent's VM planner: which VMs a config asks for (and refuses), what is made before the
vRouter gets a config, what is removed once it holds one, and what is reported ready."""

from dataclasses import replace

import pytest
from agent_setup import PORT1

from openvpc.agent.vm_plan import (
    Tap,
    VmSpec,
    after_apply,
    attached,
    before_apply,
    check_prefix,
    merge,
    report,
    wanted_vms,
)
from openvpc.model.nodeconfig import NodeConfig, PortConfig, VmReport

PREFIX = "ov-lab-v-"


def _port(vif: int, netns: str, ifname: str = "eth0", mac: str | None = None) -> PortConfig:
    return replace(
        PORT1,
        vif=vif,
        interface_id=f"eni-{vif}",
        instance_id=f"i-{vif}",
        name=f"vm{vif}",
        netns=netns,
        ifname=ifname,
        mac=mac or f"02:00:00:00:00:{vif:02x}",
    )


def _config(*ports: PortConfig) -> NodeConfig:
    return NodeConfig("n1", 7, ports=ports)


def _tap(vif: int, ifname: str = "eth0") -> Tap:
    return Tap(ifname, f"02:00:00:00:00:{vif:02x}", f"eni-{vif}")


def test_a_vm_per_namespace_with_a_tap_per_port_sorted() -> None:
    ns = PREFIX + "web"
    wanted, refused = wanted_vms(
        _config(_port(3, ns, "eth1"), _port(2, ns, "eth0"), _port(4, PREFIX + "db")), PREFIX
    )
    assert refused == []
    assert wanted == {
        ns: VmSpec(ns, (_tap(2, "eth0"), _tap(3, "eth1"))),
        PREFIX + "db": VmSpec(PREFIX + "db", (_tap(4),)),
    }


@pytest.mark.parametrize(
    ("port", "why"),
    [
        (_port(2, "ov-other-v-x"), "does not start with the VM prefix"),
        (_port(2, PREFIX), "does not start with the VM prefix"),  # the prefix alone
        (_port(2, "ov-lab-v-../../etc"), "not a usable name"),
        (_port(2, PREFIX + "a b"), "not a usable name"),
        (_port(2, PREFIX + "x" * 60), "not a usable name"),
        (_port(2, PREFIX + "x", ifname="eth0/../x"), "interface name"),
        (_port(2, PREFIX + "x", ifname="a" * 16), "interface name"),
        (_port(2, PREFIX + "x", mac="03:00:00:00:00:01"), "not a unicast MAC"),
        (_port(2, PREFIX + "x", mac="02:00:00:00:00"), "not a unicast MAC"),
    ],
)
def test_ports_outside_the_prefix_or_with_bad_names_get_no_vm(port: PortConfig, why: str) -> None:
    wanted, refused = wanted_vms(_config(port, _port(9, PREFIX + "ok")), PREFIX)
    assert list(wanted) == [PREFIX + "ok"]
    assert len(refused) == 1 and why in refused[0] and "eni-2" in refused[0]


def test_two_ports_cannot_share_a_tap_name() -> None:
    ns = PREFIX + "a"
    wanted, refused = wanted_vms(_config(_port(2, ns), _port(3, ns)), PREFIX)
    assert wanted == {ns: VmSpec(ns, (_tap(2),))}
    assert refused == [f"port eni-3: two ports name eth0 in {ns}"]


def test_prefix_must_be_a_namespace_name() -> None:
    assert check_prefix("ov-lab-v-") == "ov-lab-v-"
    for bad in ("", "a/b", "..", "x" * 65, "a b"):
        with pytest.raises(ValueError, match="bad VM namespace prefix"):
            check_prefix(bad)


def test_before_apply_makes_new_vms_and_grows_changed_ones_keeping_old_taps() -> None:
    a, b = PREFIX + "a", PREFIX + "b"
    made = {a: VmSpec(a, (_tap(2),)), b: VmSpec(b, (_tap(4),))}
    wanted = {
        a: VmSpec(a, (_tap(2),)),  # as it is: nothing
        b: VmSpec(b, (_tap(5, "eth1"),)),  # eth0 leaves, eth1 comes
        PREFIX + "c": VmSpec(PREFIX + "c", (_tap(6),)),
    }
    assert before_apply(wanted, made) == [
        # until the vRouter lets go of eth0, the VM keeps it
        (VmSpec(b, (_tap(4), _tap(5, "eth1"))), made[b]),
        (wanted[PREFIX + "c"], None),
    ]
    assert before_apply(made, made) == []


def test_a_tap_replaced_under_the_same_name_is_replaced_before_apply() -> None:
    a = PREFIX + "a"
    made = {a: VmSpec(a, (_tap(2),))}
    wanted = {a: VmSpec(a, (Tap("eth0", "02:00:00:00:00:09", "eni-9"),))}
    assert before_apply(wanted, made) == [(wanted[a], made[a])]


def test_after_apply_removes_dropped_vms_and_shrinks_changed_ones() -> None:
    a, b, c = PREFIX + "a", PREFIX + "b", PREFIX + "c"
    made = {
        a: VmSpec(a, (_tap(2),)),
        b: VmSpec(b, (_tap(4), _tap(5, "eth1"))),
        c: VmSpec(c, (_tap(6),)),
    }
    wanted = {a: made[a], b: VmSpec(b, (_tap(5, "eth1"),))}
    shrink, remove = after_apply(wanted, made)
    assert shrink == [(wanted[b], made[b])]
    assert remove == [made[c]]
    assert after_apply(made, made) == ([], [])


def test_what_the_link_is_about_to_apply_is_not_removed() -> None:
    """The VM thread removes against the applied config and the one being prepared, so a VM
    that comes back in the next config is not removed under it."""
    a, b = PREFIX + "a", PREFIX + "b"
    made = {a: VmSpec(a, (_tap(2),)), b: VmSpec(b, (_tap(3),))}
    applied = {a: made[a]}
    prepared = {b: made[b]}
    assert after_apply(merge(applied, prepared), made) == ([], [])
    assert after_apply(applied, made) == ([], [made[b]])


def test_ready_means_made_and_on_the_vrouter_with_the_lease_once_bound() -> None:
    a = PREFIX + "a"
    vm = VmSpec(a, (_tap(2), _tap(3, "eth1")))
    on_vrouter = attached(_config(_port(2, a), _port(7, PREFIX + "gone")))
    assert report([vm], on_vrouter, {}) == (VmReport("eni-2", a, "eth0", None, "i-2", "vm2"),)
    assert report([vm], on_vrouter, {"eni-2": "10.0.1.3/24"}) == (
        VmReport("eni-2", a, "eth0", "10.0.1.3/24", "i-2", "vm2"),
    )
    assert report([], on_vrouter, {}) == ()


def test_the_ebpf_datapath_plugs_veths_with_the_vm_mtu() -> None:
    ns = PREFIX + "web"
    wanted, _ = wanted_vms(_config(_port(2, ns)), PREFIX, "ebpf")
    assert wanted[ns].taps == (replace(_tap(2), veth=True, mtu=PORT1.mtu),)


def test_a_changed_datapath_replaces_the_interfaces() -> None:
    ns = PREFIX + "web"
    made = {ns: VmSpec(ns, (_tap(2),))}
    wanted, _ = wanted_vms(_config(_port(2, ns)), PREFIX, "ebpf")
    # the TAP of the same name goes and the veth comes in one change of the VM
    assert before_apply(wanted, made) == [(wanted[ns], made[ns])]
    assert after_apply(wanted, {ns: wanted[ns]}) == ([], [])
