"""The real lab itself: underlays on namespaces, processes, DHCP in VMs, exec, restart helpers,
and `down` (also after a crashed `up`) leaving nothing of ours behind."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from conftest import TINY, HostSnapshot, LabFactory, LabHandle, unique_name

from openvpc.lab import netns, real
from openvpc.lab.naming import RUN_ROOT, underlay_netns
from openvpc.lab.processes import openvpc_command

NODES_ONLY: dict[str, Any] = {"nodes": ["a", "b", "c"], "tenants": []}


def _fabric_pings(h: LabHandle, mtu: int) -> None:
    """Every node reaches every other node's fabric address with a full-size DF packet."""
    nodes = h.started.nodes
    for src in nodes:
        for dst in nodes:
            if src is dst:
                continue
            argv = ["ping", "-n", "-c", "1", "-W", "2", "-M", "do", "-s", str(mtu - 28)]
            r = h.node_exec(src.name, [*argv, dst.fabric_ip])
            assert r.returncode == 0, f"{src.name} -> {dst.name}: {r.stdout}{r.stderr}"


def _mtu(ns: str, ifname: str) -> int:
    out = subprocess.run(
        ["ip", "-n", ns, "-j", "link", "show", ifname], capture_output=True, text=True, check=True
    ).stdout
    return int(json.loads(out)[0]["mtu"])


def _processes_up(h: LabHandle) -> None:
    st = h.status()
    roles = sorted((p.role, p.node) for p in st.processes if p.alive)
    assert roles == sorted(
        [("controller", "")] + [(r, n.name) for n in st.nodes for r in ("agent", "vrouter")]
    )
    assert st.in_sync() and st.ready


def test_l2_underlay_bridges_every_node(lab: LabFactory) -> None:
    h = lab({**NODES_ONLY, "underlay": "l2", "fabric_mtu": 1500})
    assert [n.fabric_ip for n in h.started.nodes] == [
        "192.168.0.10",
        "192.168.0.11",
        "192.168.0.12",
    ]
    assert netns.netns_exists(underlay_netns(h.name, "sw"))
    for n in h.started.nodes:
        assert netns.netns_exists(n.netns)
        assert _mtu(n.netns, "fabric0") == 1500
    _fabric_pings(h, 1500)
    _processes_up(h)


def _rx_packets(ns: str, ifname: str) -> int:
    out = subprocess.run(
        ["ip", "-n", ns, "-s", "-j", "link", "show", ifname],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return int(json.loads(out)[0]["stats64"]["rx"]["packets"])


def test_l3_underlay_routes_across_both_spines(lab: LabFactory) -> None:
    h = lab({**NODES_ONLY, "underlay": "l3", "fabric_mtu": 1400})
    ips = [n.fabric_ip for n in h.started.nodes]
    assert ips == ["172.16.1.10", "172.16.2.10", "172.16.1.11"]
    for j, other in ((1, "172.16.2.0/24"), (2, "172.16.1.0/24")):
        leaf = underlay_netns(h.name, f"leaf{j}")
        out = subprocess.run(
            ["ip", "-n", leaf, "-j", "route", "show", other],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        (route,) = json.loads(out)
        assert sorted(hop["dev"] for hop in route["nexthops"]) == ["spine1", "spine2"]
        assert netns.read_sysctl(leaf, "net.ipv4.fib_multipath_hash_policy") == "1"
        assert netns.read_sysctl(leaf, "net.ipv4.ip_forward") == "1"
        assert _mtu(leaf, "spine1") == 1400
    _fabric_pings(h, 1400)
    _processes_up(h)

    # 64 flows from node a (leaf1) to node b (leaf2) differing only in the UDP source port
    spines = [underlay_netns(h.name, f"spine{s}") for s in (1, 2)]
    before = [_rx_packets(ns, "leaf1") for ns in spines]
    sender = (
        "import socket\n"
        "for port in range(41000, 41064):\n"
        "    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        f"    s.bind(('', port)); s.sendto(b'x', ('{ips[1]}', 9)); s.close()\n"
    )
    r = h.node_exec("a", [sys.executable, "-c", sender])
    assert r.returncode == 0, r.stderr
    spread = [_rx_packets(ns, "leaf1") - b for ns, b in zip(spines, before, strict=True)]
    assert sum(spread) >= 64
    assert min(spread) >= 8, f"flows per spine: {spread}"


def test_vms_get_addresses_by_dhcp_and_resolv_conf_stays_theirs(lab: LabFactory) -> None:
    host_resolv = Path("/etc/resolv.conf").read_bytes()
    h = lab(TINY)
    ips = {vm.name: vm.ip for vm in h.status().vms}
    assert set(ips) == {"v1", "v2"}
    for ip in ips.values():
        assert ip is not None and ip.startswith("10.0.1.") and ip.endswith("/24")
    resolv = h.exec("v1", ["cat", "/etc/resolv.conf"])
    assert "nameserver 10.0.0.2" in resolv.stdout  # the VPC's DNS, written by dhclient-script
    assert Path("/etc/resolv.conf").read_bytes() == host_resolv
    assert h.ping("v1", h.ip("v2"), count=2)
    # the DHCP client daemons were stopped once the addresses were in place
    st = h.status()
    for vm in st.vms:
        assert netns.pids_in_netns(vm.netns) == []


def test_cli_exec_returns_the_command_exit_code(lab: LabFactory) -> None:
    h = lab(TINY, dhcp=False)
    cli = [*openvpc_command(), "exec", "--lab", h.name]
    assert subprocess.run([*cli, "v1", "--", "sh", "-c", "exit 3"], timeout=30).returncode == 3
    r = subprocess.run(
        [*cli, "v2", "--", "cat", "/sys/class/net/eth0/address"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 0
    assert r.stdout.strip() == next(
        rec["mac"] for rec in _records(h.name) if rec["kind"] == "vm" and rec["name"] == "v2"
    )
    r = subprocess.run([*cli, "nosuchvm", "--", "true"], capture_output=True, text=True)
    assert r.returncode != 0 and "no VM nosuchvm" in r.stderr
    status = subprocess.run(
        [*openvpc_command(), "status", h.name], capture_output=True, text=True, timeout=30
    )
    assert status.returncode == 0 and "ov-" in status.stdout and "gen " in status.stdout


def _records(name: str) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = json.loads((RUN_ROOT / name / "state.json").read_text())
    return records


def test_up_twice_changes_nothing(lab: LabFactory) -> None:
    h = lab({**NODES_ONLY, "underlay": "l2"})
    pids = sorted(p.pid for p in h.status().processes)
    again = real.up(h.path)
    assert sorted(p.pid for p in again.processes) == pids
    assert all(p.alive for p in again.processes)


def test_restart_helpers_bring_processes_back(lab: LabFactory) -> None:
    h = lab(TINY)
    target = h.ip("v2")
    old = {(p.role, p.node): p.pid for p in h.status().processes}
    for role, node in (("agent", "a"), ("controller", ""), ("vrouter", "b")):
        new_pid = h.restart(role, node)
        assert new_pid != old[(role, node)]
        h.wait_in_sync(timeout=20)
        deadline = time.monotonic() + 10
        while not h.ping("v1", target, wait=1):
            assert time.monotonic() < deadline, f"no forwarding after restarting {role} {node}"
    old_b = h.kill("agent", "b", hold=True)
    held = {(p.role, p.node): p for p in h.status().processes}[("agent", "b")]
    assert not held.alive and held.held
    running = {(p.role, p.node): p.pid for p in h.status().processes}[("agent", "a")]
    assert h.start("agent", "a") == running  # it runs: nothing to do
    assert h.start("agent", "b") != old_b
    h.wait_in_sync(timeout=20)


def test_down_removes_everything_and_is_safe_twice(
    lab: LabFactory, host_snapshot: HostSnapshot
) -> None:
    h = lab(TINY)
    namespaces = [n.netns for n in h.started.nodes] + [vm.netns for vm in h.status().vms]
    swept: list[str] = []
    assert real.down(h.name, report=swept.append) is True
    assert swept == []  # an intact state file accounts for everything: the sweep finds nothing
    assert h.down() is False
    assert not any(netns.netns_exists(ns) for ns in namespaces)
    after = HostSnapshot.take()
    assert after.leaks_since(host_snapshot, [h.name]) == []
    if not real.labs():  # no other lab shares them: the parents go when `up` made them
        assert after.run_dirs <= host_snapshot.run_dirs
        assert after.etc_netns <= host_snapshot.etc_netns


def test_down_after_a_crashed_up_and_up_again(tmp_path: Path, host_snapshot: HostSnapshot) -> None:
    name = unique_name()
    path = tmp_path / "lab.yaml"
    path.write_text(yaml.safe_dump({**TINY, "name": name}))
    state = RUN_ROOT / name / "state.json"
    up = subprocess.Popen(
        [*openvpc_command(), "up", str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # crash `up` once it has started the processes (namespaces, VMs and files exist)
        deadline = time.monotonic() + 60
        while not (state.exists() and '"agent"' in state.read_text()):
            assert up.poll() is None, "up finished before it could be crashed"
            assert time.monotonic() < deadline
            time.sleep(0.01)
        up.send_signal(signal.SIGKILL)
        up.wait()
        assert real.status(name).ready is False
        st = real.up(path)  # cleans the leftovers, then comes up
        assert st.ready and st.in_sync() and all(vm.ip for vm in st.vms)
        assert real.down(name) is True
        assert HostSnapshot.take().leaks_since(host_snapshot, [name]) == []
        # and a crash followed by `down` alone
        up = subprocess.Popen(
            [*openvpc_command(), "up", str(path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while not (state.exists() and '"vm"' in state.read_text()):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        up.send_signal(signal.SIGKILL)
        up.wait()
        assert real.down(name) is True
        assert HostSnapshot.take().leaks_since(host_snapshot, [name]) == []
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
        real.down(name)
