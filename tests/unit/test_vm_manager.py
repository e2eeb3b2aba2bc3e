"""The agent's VM manager over a plug that keeps its VMs in memory (as a hypervisor plug would
keep them elsewhere): made before the vRouter gets their ports, ready once it holds them,
removed only when the controller's config drops them, adopted after a restart, and never a VM
it did not make."""

import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from agent_setup import PORT1

from openvpc.agent.reporter import Reporter
from openvpc.agent.state_file import AgentState
from openvpc.agent.vm_manager import VmManager
from openvpc.agent.vm_plan import VmSpec
from openvpc.agent.vms import PlugError
from openvpc.model.nodeconfig import NodeConfig, PortConfig, VmReport
from openvpc.southbound.client import SouthboundClient

PREFIX = "ov-lab-v-"


class MemoryPlug:
    """VMs as entries of a dict; `foreign` names exist but are someone else's."""

    def __init__(self) -> None:
        self.vms: dict[str, VmSpec] = {}
        self.tokens: dict[str, int] = {}
        self.foreign: set[str] = set()
        self.calls: list[str] = []
        self._next = 100

    def plug(self, want: VmSpec, have: VmSpec | None) -> int:
        if have is None and (want.netns in self.foreign or want.netns in self.vms):
            raise PlugError(f"network namespace {want.netns} already exists")
        self.calls.append(f"plug {want.netns} {[t.ifname for t in want.taps]}")
        self.vms[want.netns] = want
        if have is None:
            self._next += 1
            self.tokens[want.netns] = self._next
        return self.tokens[want.netns]

    def exists(self, vm: VmSpec, token: int) -> bool:
        return self.tokens.get(vm.netns) == token

    def unplug(self, vm: VmSpec) -> None:
        self.calls.append(f"unplug {vm.netns}")
        self.vms.pop(vm.netns, None)
        self.tokens.pop(vm.netns, None)


def _port(vif: int, netns: str, ifname: str = "eth0") -> PortConfig:
    return replace(
        PORT1,
        vif=vif,
        interface_id=f"eni-{vif}",
        instance_id=f"i-{vif}",
        name=f"vm{vif}",
        netns=netns,
        ifname=ifname,
        mac=f"02:00:00:00:00:{vif:02x}",
    )


class Agent:
    """The manager as the agent runs it, its thread's rounds (`step`) taken by the test, which
    also plays the vRouter link (`prepare`, then `applied`)."""

    def __init__(self, path: Path, plug: MemoryPlug) -> None:
        self.stop = threading.Event()
        self.client = SouthboundClient("unix:/nonexistent/sb.sock")
        self.vms = VmManager(
            PREFIX, plug, Reporter(self.client, "n1", self.stop), self.stop, AgentState(path), False
        )

    def apply(self, config: NodeConfig, from_controller: bool = True) -> None:
        self.vms.prepare(config)
        self.vms.applied(config, from_controller)
        self.vms.step()

    def close(self) -> None:
        self.client.close()


@pytest.fixture
def plug() -> MemoryPlug:
    return MemoryPlug()


@pytest.fixture
def agent(tmp_path: Path, plug: MemoryPlug) -> Iterator[Agent]:
    running = Agent(tmp_path / "agent.json", plug)
    try:
        yield running
    finally:
        running.close()


def test_made_before_the_vrouter_has_the_port_ready_once_it_does(
    agent: Agent, plug: MemoryPlug
) -> None:
    a = PREFIX + "a"
    config = NodeConfig("n1", 1, ports=(_port(2, a),))
    agent.vms.prepare(config)
    assert a in plug.vms
    assert agent.vms.reports() == ()  # not on the vRouter yet
    agent.vms.applied(config, from_controller=True)
    assert agent.vms.reports() == (VmReport("eni-2", a, "eth0", None, "i-2", "vm2"),)


def test_removed_only_when_the_controllers_config_drops_it(agent: Agent, plug: MemoryPlug) -> None:
    a, b = PREFIX + "a", PREFIX + "b"
    both = NodeConfig("n1", 1, ports=(_port(2, a), _port(3, b)))
    agent.apply(both)
    only_a = NodeConfig("n1", 2, ports=(_port(2, a),))
    agent.apply(only_a, from_controller=False)  # from the state file: removes nothing
    assert set(plug.vms) == {a, b}
    # while b is about to come back in the config being prepared, it stays
    agent.vms.prepare(both)
    agent.vms.applied(only_a, from_controller=True)
    agent.vms.step()
    assert set(plug.vms) == {a, b}
    agent.apply(only_a)
    assert set(plug.vms) == {a}
    assert agent.vms.reports() == (VmReport("eni-2", a, "eth0", None, "i-2", "vm2"),)
    assert plug.calls.count(f"unplug {b}") == 1
    assert set(AgentState(agent.vms.state.path).vms) == {a}


def test_a_new_interface_grows_the_vm_and_a_dropped_one_goes_after_the_vrouter(
    agent: Agent, plug: MemoryPlug
) -> None:
    a = PREFIX + "a"
    agent.apply(NodeConfig("n1", 1, ports=(_port(2, a),)))
    other = NodeConfig("n1", 2, ports=(_port(3, a, "eth1"),))
    agent.vms.prepare(other)
    assert [t.ifname for t in plug.vms[a].taps] == ["eth0", "eth1"]  # eth0 until applied
    agent.vms.applied(other, from_controller=True)
    agent.vms.step()
    assert [t.ifname for t in plug.vms[a].taps] == ["eth1"]
    assert plug.calls.count(f"unplug {a}") == 0  # the VM itself stays
    assert agent.vms.reports() == (VmReport("eni-3", a, "eth1", None, "i-3", "vm3"),)


def test_a_restarted_agent_adopts_its_vms_and_leaves_others_alone(
    tmp_path: Path, plug: MemoryPlug
) -> None:
    a, b, c = PREFIX + "a", PREFIX + "b", PREFIX + "c"
    path = tmp_path / "agent.json"
    first = Agent(path, plug)
    first.apply(NodeConfig("n1", 1, ports=(_port(2, a), _port(3, b))))
    first.close()  # stopping leaves the VMs
    assert set(plug.vms) == {a, b}
    plug.unplug(plug.vms[b])  # b vanished meanwhile, and someone else made c
    plug.foreign.add(c)
    calls = len(plug.calls)
    second = Agent(path, plug)
    try:
        assert set(second.vms.made()) == {a}
        second.vms.prepare(NodeConfig("n1", 2, ports=(_port(2, a), _port(3, b), _port(4, c))))
        assert plug.calls[calls:] == [f"plug {b} ['eth0']"]  # a adopted as is, c refused
        second.apply(NodeConfig("n1", 3, ports=()))
        assert plug.vms == {}
        assert f"unplug {c}" not in plug.calls
    finally:
        second.close()
    assert AgentState(path).vms == {}


def test_ports_outside_the_prefix_get_no_vm(agent: Agent, plug: MemoryPlug) -> None:
    agent.apply(NodeConfig("n1", 1, ports=(_port(2, "elsewhere"), _port(3, PREFIX + "a"))))
    assert set(plug.vms) == {PREFIX + "a"}
