"""A real lab with `datapath: ebpf`: VMs on two nodes ping each other and exchange TCP across
VXLAN, MPLS over UDP and MPLS over GRE, with the fast path doing the work (its counters move,
the slow path sees only first packets); a vRouter killed with -9 leaves nothing attached, and
the restarted one forwards again. bpftool in the node's namespace is the independent oracle."""

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import LabHandle, checked_labs, vrouter_stats

from openvpc.lab.real import LabError, ebpf_refusal

ENCAPS = ("vxlan", "mplsoudp", "mplsogre")


def _vpc(i: int, encap: str) -> dict[str, Any]:
    return {
        "name": f"p{i}",
        "cidr": f"10.{i}.0.0/16",
        "encap": encap,
        "subnets": [{"name": "s", "cidr": f"10.{i}.1.0/24"}],
        "vms": [
            {"name": f"a{i}", "subnet": "s", "node": "a"},
            {"name": f"b{i}", "subnet": "s", "node": "b"},
        ],
    }


TOPOLOGY: dict[str, Any] = {
    "underlay": "l3",
    "datapath": "ebpf",
    "nodes": ["a", "b"],
    "tenants": [{"name": "red", "vpcs": [_vpc(i, e) for i, e in enumerate(ENCAPS, 1)]}],
}

SERVER = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 7400))
s.listen(1)
print("listening", flush=True)
s.settimeout(20)
c, _ = s.accept()
c.settimeout(20)
got = 0
while True:
    data = c.recv(1 << 16)
    if not data:
        break
    got += len(data)
c.sendall(str(got).encode())
c.close()
"""
CLIENT = """
import socket, sys
c = socket.create_connection((sys.argv[1], 7400), timeout=20)
c.sendall(b"x" * int(sys.argv[2]))
c.shutdown(socket.SHUT_WR)
print(c.recv(100).decode(), flush=True)
"""
SENT = 2_000_000


@pytest.fixture(scope="module")
def ebpf_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabHandle]:
    why = ebpf_refusal()
    if why is not None:
        pytest.skip(f"no eBPF datapath here: {why}")
    with checked_labs(tmp_path_factory.mktemp("integ"), "integ") as labs:
        yield labs.make(TOPOLOGY)


def owned(pid: int) -> dict[str, set[int]]:
    """The BPF links, programs and maps a process holds, by id (from its fds' fdinfo)."""
    found: dict[str, set[int]] = {"link": set(), "prog": set(), "map": set()}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            info = Path(f"/proc/{pid}/fdinfo/{fd}").read_text()
        except OSError:
            continue  # closed meanwhile
        # "anon_inode:bpf-prog", "anon_inode:bpf-map", "anon_inode:bpf_link"
        kind = target.removeprefix("anon_inode:bpf").lstrip("-_")
        if kind in found:
            ids = dict(line.split(":\t", 1) for line in info.splitlines() if ":\t" in line)
            found[kind].add(int(ids[f"{kind}_id"]))
    return found


def existing() -> dict[str, set[int]]:
    """Every BPF link, program and map the kernel holds (bpftool: the oracle)."""
    out = {}
    for kind in ("link", "prog", "map"):
        shown = subprocess.run(
            ["bpftool", "-j", kind, "show"], capture_output=True, text=True, check=True
        )
        out[kind] = {int(x["id"]) for x in json.loads(shown.stdout or "[]")}
    return out


def vrouter_pid(h: LabHandle, node: str) -> int:
    (p,) = [p for p in h.status().processes if (p.role, p.node) == ("vrouter", node)]
    assert p.alive and p.pid > 0
    return p.pid


def tcp_exchange(h: LabHandle, client: str, server: str) -> None:
    argv = ["python3", "-c", SERVER]
    cmd = ["ip", "netns", "exec", h.vm_netns(server), *argv]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "listening"
        out = h.exec(client, ["python3", "-c", CLIENT, h.ip(server), str(SENT)], timeout=30)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == str(SENT)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def fast_vif_packets(s: dict[str, Any]) -> int:
    return sum(v["rx_packets"] + v["tx_packets"] for v in s["ebpf"]["vifs"].values())


def slow_packets(s: dict[str, Any]) -> int:
    return sum(s["ebpf"]["slow"].values())


@pytest.mark.parametrize("i", [1, 2, 3], ids=ENCAPS)
def test_vms_on_two_nodes_ping_and_talk_tcp_through_the_fast_path(
    ebpf_lab: LabHandle, i: int
) -> None:
    h = ebpf_lab
    assert h.ping(f"a{i}", h.ip(f"b{i}"), count=3), "no ping across the fabric"
    before = {n: vrouter_stats(h, n) for n in ("a", "b")}
    tcp_exchange(h, f"a{i}", f"b{i}")
    after = {n: vrouter_stats(h, n) for n in ("a", "b")}
    for n in ("a", "b"):
        fast = fast_vif_packets(after[n]) - fast_vif_packets(before[n])
        slow = slow_packets(after[n]) - slow_packets(before[n])
        # 2 MB is some 1400 segments each way (fewer with super-frames); the slow path sees
        # the first packets of the flow only
        assert fast > 50, f"node {n}: the fast path moved {fast} packets"
        assert slow < 20, f"node {n}: {slow} packets went up to the slow path"


def test_vlan_on_an_l2_underlay_goes_through_the_fast_path(tmp_path: Path) -> None:
    """802.1Q: the fabric socket takes ARP only, so a tagged frame is forwarded once, by the
    fast path (or by the slow path behind pkt0 for the first packets)."""
    if (why := ebpf_refusal()) is not None:
        pytest.skip(f"no eBPF datapath here: {why}")
    topology = {**TOPOLOGY, "underlay": "l2"}
    topology["tenants"] = [{"name": "red", "vpcs": [_vpc(4, "vlan")]}]
    with checked_labs(tmp_path, "integ") as labs:
        h = labs.make(topology)
        assert h.ping("a4", h.ip("b4"), count=3)
        before = {n: vrouter_stats(h, n) for n in ("a", "b")}
        tcp_exchange(h, "a4", "b4")
        after = {n: vrouter_stats(h, n) for n in ("a", "b")}
        for n in ("a", "b"):
            fast = fast_vif_packets(after[n]) - fast_vif_packets(before[n])
            slow = slow_packets(after[n]) - slow_packets(before[n])
            assert fast > 50 and slow < 20, f"node {n}: fast {fast}, slow {slow}"


def test_a_killed_vrouter_leaves_nothing_attached_and_its_successor_forwards(
    ebpf_lab: LabHandle,
) -> None:
    h = ebpf_lab
    had = owned(vrouter_pid(h, "a"))
    # fabric_in, slow_in and a vif_in per VM of node a; the object's programs and maps
    assert len(had["link"]) == 2 + 3 and had["prog"] and had["map"], had
    assert all(had[k] <= v for k, v in existing().items())
    old = h.kill("vrouter", "a", hold=True)
    # held by its supervisor: nothing runs, and nothing it had may remain (the kernel frees
    # them as the fds close: poll bpftool for a bounded time)
    deadline = time.monotonic() + 10
    while any(had[k] & v for k, v in existing().items()):
        assert time.monotonic() < deadline, f"left: {existing()} of {had}"
        time.sleep(0.1)
    shown = h.node_exec("a", ["ip", "-o", "link", "show", "pkt0"])
    assert shown.returncode != 0, "pkt0 outlived its vRouter"
    h.start("vrouter", "a")
    new = h.wait_process("vrouter", "a", other_than=old)
    # the agent has programmed the new vRouter once every VM's vif_in is on again
    deadline = time.monotonic() + 30
    while True:
        try:
            if len(vrouter_stats(h, "a")["ebpf"]["attached"]) == 3:
                break
        except LabError:
            pass  # its control socket is not there yet
        assert time.monotonic() < deadline, "the restarted vRouter was not programmed"
        time.sleep(0.2)
    assert h.ping("a1", h.ip("b1"), count=3, wait=2.0)
    assert len(owned(new)["link"]) == 2 + 3
