"""The agent makes its node's VMs: the VM manager on real namespaces (made before the vRouter
is given their ports, adopted by a restarted agent, removed when their ports leave the config,
never one it did not make), and in a lab, VMs that survive a kill -9 of their agent."""

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import TINY, LabFactory, unique_name

from openvpc.agent.reporter import Reporter
from openvpc.agent.state_file import AgentState
from openvpc.agent.vm_manager import VmManager
from openvpc.agent.vm_plan import VmSpec
from openvpc.agent.vms import NetnsPlug
from openvpc.lab import netns, nsexec
from openvpc.model.nodeconfig import NodeConfig, PortConfig, VmReport
from openvpc.southbound.client import SouthboundClient

WAIT = 15.0
BASE = PortConfig(
    vif=2,
    interface_id="eni-2",
    instance_id="i-2",
    name="vm2",
    netns="",
    ifname="eth0",
    vrf=1,
    mac="02:00:00:00:00:02",
    ip="10.0.1.2",
    prefix_len=24,
    gateway="10.0.1.1",
    dns="10.0.0.2",
    domain="ec2.internal",
    hostname="ip-10-0-1-2",
    mtu=1450,
)


def _port(vif: int, netns_name: str) -> PortConfig:
    return replace(
        BASE,
        vif=vif,
        interface_id=f"eni-{vif}",
        instance_id=f"i-{vif}",
        name=f"vm{vif}",
        netns=netns_name,
        mac=f"02:00:00:00:00:{vif:02x}",
    )


def _until(check: Callable[[], object], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


@pytest.fixture
def prefix() -> Iterator[str]:
    """A VM prefix of our own; whatever carries it is removed afterwards."""
    name = f"ov-{unique_name('m')}-v-"
    try:
        yield name
    finally:
        for ns in netns.list_netns():
            if ns.startswith(name):
                NetnsPlug().unplug(VmSpec(ns, ()))
        leftovers = [e for e in _listdir(nsexec.ETC_NETNS) if e.startswith(name)]
        assert leftovers == [], leftovers


def _listdir(path: Path) -> list[str]:
    try:
        return sorted(p.name for p in path.iterdir())
    except FileNotFoundError:
        return []


class Node:
    """A VM manager as an agent runs it (no vRouter, no controller: the test plays the link)."""

    def __init__(self, state: Path, prefix: str) -> None:
        self.stop = threading.Event()
        self.client = SouthboundClient("unix:/nonexistent/sb.sock")
        self.reporter = Reporter(self.client, "n1", self.stop)
        self.vms = VmManager(
            prefix, NetnsPlug(), self.reporter, self.stop, AgentState(state), False
        )
        self.thread = threading.Thread(target=self.vms.run)
        self.thread.start()

    def apply(self, config: NodeConfig) -> None:
        """What the vRouter link does around a batch."""
        self.vms.prepare(config)
        self.vms.applied(config, from_controller=True)

    def close(self) -> None:
        self.stop.set()
        self.vms.wake()
        self.thread.join(WAIT)
        assert not self.thread.is_alive()
        self.client.close()


def _mac(ns: str, ifname: str) -> str:
    with netns.rtnl(ns) as ipr:
        (link,) = ipr.get_links(ifname=ifname)
        return str(link.get_attr("IFLA_ADDRESS"))


def test_vms_are_made_adopted_and_removed_and_foreign_namespaces_left_alone(
    tmp_path: Path, prefix: str
) -> None:
    a, b, c = prefix + "a", prefix + "b", prefix + "c"
    state = tmp_path / "agent.json"
    node = Node(state, prefix)
    umask = os.umask(0o077)  # the agent's (openvpc.process.private_umask)
    try:
        config = NodeConfig("n1", 1, ports=(_port(2, a), _port(3, b)))
        node.apply(config)
        assert netns.netns_exists(a) and netns.netns_exists(b)
        assert _mac(a, "eth0") == "02:00:00:00:00:02"
        assert "written by its DHCP client" in nsexec.resolv_conf(a).read_text()
        # readable inside the VM by any user, whatever the agent's umask
        assert nsexec.resolv_conf(a).stat().st_mode & 0o777 == 0o644
        assert nsexec.resolv_conf(a).parent.stat().st_mode & 0o777 == 0o755
        assert node.vms.reports() == (
            VmReport("eni-2", a, "eth0", None, "i-2", "vm2"),
            VmReport("eni-3", b, "eth0", None, "i-3", "vm3"),
        )
        inodes = {ns: netns.netns_inode(ns) for ns in (a, b)}
    finally:
        os.umask(umask)
        node.close()  # a stopped agent leaves its VMs
    assert all(netns.netns_exists(ns) for ns in (a, b))

    # a restarted agent adopts them as they are: the same namespaces, nothing remade
    netns.add_address(a, "eth0", "10.0.1.2/24")  # as DHCP left it
    node = Node(state, prefix)
    try:
        assert set(node.vms.made()) == {a, b}
        node.apply(config)
        assert {ns: netns.netns_inode(ns) for ns in (a, b)} == inodes
        assert node.vms.reports()[0] == VmReport("eni-2", a, "eth0", "10.0.1.2/24", "i-2", "vm2")

        # a namespace under the prefix that the agent did not make is never touched
        netns.create_netns(c)
        foreign = netns.netns_inode(c)
        node.apply(NodeConfig("n1", 2, ports=(_port(2, a), _port(3, b), _port(4, c))))
        assert "eni-4" not in {r.interface_id for r in node.vms.reports()}
        # b's port leaves the config: its VM goes, with what ran in it; c stays (not ours)
        sleeper = nsexec.popen(b, ["sleep", "600"], stdin=subprocess.DEVNULL)
        node.apply(NodeConfig("n1", 3, ports=(_port(2, a),)))
        _until(lambda: not netns.netns_exists(b), "b was not removed")
        assert sleeper.wait(WAIT) is not None
        assert not (nsexec.ETC_NETNS / b).exists()
        assert netns.netns_inode(c) == foreign and netns.netns_inode(a) == inodes[a]
        assert node.vms.reports() == (VmReport("eni-2", a, "eth0", "10.0.1.2/24", "i-2", "vm2"),)
        # outside the prefix nothing is made
        node.apply(NodeConfig("n1", 4, ports=(_port(2, a), _port(5, "ov-elsewhere-x"))))
        assert not netns.netns_exists("ov-elsewhere-x")
    finally:
        node.close()
    assert set(AgentState(state).vms) == {a}


def test_lab_vms_survive_a_killed_agent_which_adopts_them(lab: LabFactory) -> None:
    """kill -9 of the agent: its VMs keep their namespace, address and traffic; the new agent
    adopts them (nothing remade, no DHCP again) and reports them ready with their lease. An
    agent stopped by SIGTERM leaves them as well."""
    h = lab(TINY)
    before = h.status().vm("v1")
    assert before.ready and before.ip is not None
    inode = netns.netns_inode(before.netns)
    log = Path(next(p.log for p in h.status().processes if (p.role, p.node) == ("agent", "a")))
    offset = log.stat().st_size
    h.restart("agent", "a")

    def said(text: str) -> bool:
        return text in log.read_text(errors="replace")[offset:]

    _until(lambda: said(f"adopted 1 VMs: {before.netns}"), "the new agent adopted nothing")
    _until(lambda: said("already in place"), "the new agent did not reconcile")
    h.wait_in_sync(timeout=20)
    assert not said(" made (") and not said("DHCP")
    after = h.status().vm("v1")
    assert after.ip == before.ip and netns.netns_inode(after.netns) == inode
    assert netns.ipv4_addresses(after.netns, "eth0") == [before.ip]
    assert netns.pids_in_netns(after.netns) == []  # no DHCP client again
    assert h.ping("v1", h.ip("v2"), count=2)
    # SIGTERM (held: nothing restarts it) leaves the VMs too
    h.kill("agent", "a", sig=signal.SIGTERM, hold=True)
    assert netns.netns_inode(after.netns) == inode
    assert netns.ipv4_addresses(after.netns, "eth0") == [before.ip]
    h.start("agent", "a")
    h.wait_in_sync(timeout=20)
