"""Supervised daemons and state that survives faults, on a real two-node lab.

kill -9 of each daemon during a ping between nodes: it is back by itself (new pid, restart
count +1) and the ping loses at most 30 replies for a vRouter, none for an agent or the
controller. A VIP moved while the controller is down reaches the store when it returns; with
the controller down, a node's restarted agent and vRouter rebuild forwarding from the state file.

The controller is kept down with a supervisor hold (`kill(..., hold=True)`): the supervisor
does not restart it until `start` releases it.
"""

import os
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from conftest import LabFactory, LabHandle

from openvpc.lab.processes import openvpc_command
from openvpc.lab.real import ProcessStatus
from openvpc.service import Service
from openvpc.store import Store

VIP = "10.0.1.100"
PING_COUNT = 100  # every 0.1 s: 10 s of traffic around the crash
KILL_AFTER = 10  # replies seen before the crash
BACK_TIMEOUT = 15.0

TWO_NODES: dict[str, Any] = {
    "underlay": "l3",
    "nodes": ["a", "b"],
    "tenants": [
        {
            "name": "red",
            "vpcs": [
                {
                    "name": "prod",
                    "cidr": "10.0.0.0/16",
                    "subnets": [{"name": "web", "cidr": "10.0.1.0/24"}],
                    "vms": [
                        {"name": "v1", "subnet": "web", "node": "a", "allowed_addresses": [VIP]},
                        {"name": "v2", "subnet": "web", "node": "b"},
                        {"name": "v3", "subnet": "web", "node": "b", "allowed_addresses": [VIP]},
                    ],
                }
            ],
        }
    ],
}


def _process(h: LabHandle, role: str, node: str) -> ProcessStatus:
    return next(p for p in h.status().processes if (p.role, p.node) == (role, node))


@contextmanager
def _pinging(h: LabHandle, vm: str, target: str) -> Iterator["subprocess.Popen[str]"]:
    """`ping -i 0.1` from `vm`, yielded once KILL_AFTER replies came back."""
    argv = ["ip", "netns", "exec", h.vm_netns(vm), "ping", "-n", "-i", "0.1",
            "-c", str(PING_COUNT), "-W", "1", target]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        replies = 0
        while replies < KILL_AFTER:
            line = proc.stdout.readline()  # bounded: ping exits after its count
            assert line, "ping ended before it got any reply"
            replies += "bytes from" in line
        yield proc
    finally:
        if proc.poll() is None and proc.returncode is None:
            proc.wait(PING_COUNT // 10 + 30)


def _lost(proc: "subprocess.Popen[str]") -> int:
    """Echo requests without a reply, from ping's own summary line."""
    out, _ = proc.communicate(timeout=PING_COUNT // 10 + 30)
    found = re.search(r"(\d+) packets transmitted, (\d+) received", out)
    assert found, out
    sent, received = int(found[1]), int(found[2])
    assert sent == PING_COUNT, out
    return sent - received


@pytest.mark.parametrize(
    ("role", "node", "may_lose"),
    [("vrouter", "a", 30), ("vrouter", "b", 30), ("agent", "a", 0), ("controller", "", 0)],
    ids=["vrouter-of-the-pinging-vm", "vrouter-of-the-peer", "agent", "controller"],
)
def test_a_killed_daemon_is_back_by_itself_and_the_ping_goes_on(
    lab: LabFactory, role: str, node: str, may_lose: int
) -> None:
    h = lab(TWO_NODES)
    target = h.ip("v2")
    before = _process(h, role, node)
    assert before.alive and before.restarts == 0
    with _pinging(h, "v1", target) as ping:
        old = h.kill(role, node)
        assert old == before.pid
        new = h.wait_process(role, node, other_than=old)
        lost = _lost(ping)
    assert lost <= may_lose, f"{lost} replies lost after killing {role} {node}"
    after = _process(h, role, node)
    assert after.pid == new != old and after.alive
    assert after.restarts == 1 and after.last_exit == "killed by SIGKILL"
    h.wait_in_sync()
    shown = subprocess.run(
        [*openvpc_command(), "status", h.name],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "COLUMNS": "250"},
    )
    assert shown.returncode == 0 and f"{new} restarts 1" in shown.stdout, shown.stdout


def _owner(h: LabHandle, ip: str) -> str:
    store = Store(Path(h.status().state_dir) / "openvpc.db")
    try:
        owners = Service(store).describe_address_owners("red")
    finally:
        store.close()
    return next(o.interface for o in owners if o.ip == ip)


def _interface(h: LabHandle, vm: str) -> str:
    store = Store(Path(h.status().state_dir) / "openvpc.db")
    try:
        interfaces = Service(store).describe_interfaces("red")
    finally:
        store.close()
    ns = h.vm_netns(vm)
    return next(i.id for i in interfaces if i.netns == ns)


def _wait_for_line(path: Path, text: str, timeout: float = BACK_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while text not in path.read_text(errors="replace"):
        assert time.monotonic() < deadline, f"{path.name} never said {text!r}"
        time.sleep(0.05)


def _until(check: Any, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_a_vip_moved_while_the_controller_is_down_is_reported_when_it_returns(
    lab: LabFactory,
) -> None:
    h = lab(TWO_NODES)
    v1_eni, v3_eni = _interface(h, "v1"), _interface(h, "v3")
    assert _owner(h, VIP) == v1_eni
    h.kill("controller", hold=True)
    assert h.exec("v3", ["ip", "addr", "add", f"{VIP}/32", "dev", "eth0"]).returncode == 0
    garp = h.exec("v3", ["arping", "-U", "-c", "1", "-I", "eth0", VIP], timeout=10)
    assert garp.returncode in (0, 1), garp.stderr  # -U expects no reply
    agent_log = Path(h.status().state_dir) / "agent-b.log"
    _wait_for_line(agent_log, f"learned {VIP} on {v3_eni} not reported yet")
    assert _owner(h, VIP) == v1_eni  # nobody could tell the store
    h.start("controller")
    _until(lambda: _owner(h, VIP) == v3_eni, "the VIP did not move within 5 s", 5.0)
    h.wait_in_sync()
    _until(lambda: h.ping("v1", VIP, wait=1), "the VIP is not reachable on v3", BACK_TIMEOUT)


def test_with_the_controller_down_a_restarted_agent_and_vrouter_rebuild_forwarding(
    lab: LabFactory,
) -> None:
    h = lab(TWO_NODES)
    target = h.ip("v2")
    assert h.ping("v1", target)
    h.kill("controller", hold=True)
    old_agent = h.kill("agent", "a")
    old_vrouter = h.kill("vrouter", "a")
    h.wait_process("agent", "a", other_than=old_agent)
    h.wait_process("vrouter", "a", other_than=old_vrouter)
    agent_log = Path(h.status().state_dir) / "agent-a.log"
    _wait_for_line(agent_log, "rebuilding generation")
    _until(lambda: h.ping("v1", target, wait=1), "no forwarding without the controller", 20.0)
    assert h.ping("v2", h.ip("v1"))
    assert not _process(h, "controller", "").alive  # all of it without the controller
    h.start("controller")
    h.wait_in_sync()
