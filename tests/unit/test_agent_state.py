"""The agent's state file and the reporter's learned addresses: kept until the controller
answers, retried after transport errors, surviving a restart; damaged files are ignored."""

import json
import logging
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from agent_setup import CONFIG, PORT1, VIP
from waiting import until

from openvpc.agent.desired import Desired
from openvpc.agent.reporter import Reporter
from openvpc.agent.state_file import MAX_PENDING_LEARNS, AgentState
from openvpc.agent.vm_plan import Tap, VmSpec
from openvpc.credentials import Credential, new_secret, secret_hash
from openvpc.model.codec import to_dict
from openvpc.southbound.client import SouthboundClient
from openvpc.southbound.server import SouthboundServer

WAIT = 10.0
OTHER_IP = "10.0.1.101"
SECRET = new_secret()


def test_config_and_learns_are_written_privately_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "agent.json"
    state = AgentState(path)
    state.save_config(CONFIG)
    state.save_learns({VIP: PORT1.interface_id})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = AgentState(path)
    assert again.config == CONFIG
    assert again.learns == {VIP: PORT1.interface_id}


def test_a_state_file_from_before_learns_were_kept_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "agent.json"
    path.write_text(json.dumps(to_dict(CONFIG)))
    state = AgentState(path)
    assert state.config == CONFIG and state.learns == {}


@pytest.mark.parametrize(
    "content",
    [
        pytest.param("[" * 100_000 + "]" * 100_000, id="deeply-nested"),
        pytest.param('{"config": {"node": "node1", "generation": 3', id="cut-short"),
        pytest.param("", id="empty"),
        pytest.param(b"\xff\xfe{}", id="not-utf8"),
        pytest.param('["a list", "not an object"]', id="not-an-object"),
        pytest.param('{"config": {"node": 5}, "learns": "no"}', id="wrong-shapes"),
    ],
)
def test_a_damaged_state_file_is_ignored_with_a_log_line(
    tmp_path: Path, content: str | bytes, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "agent.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with caplog.at_level(logging.WARNING, logger="openvpc.agent"):
        state = AgentState(path)
    assert state.config is None and state.learns == {}
    assert Desired(state).for_proxies() is None
    assert str(path) in caplog.text


def test_a_truncated_state_file_is_ignored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "agent.json"
    state = AgentState(path)
    state.save_config(CONFIG)
    state.save_learns({VIP: PORT1.interface_id})
    whole = path.read_bytes()
    for cut in (1, len(whole) // 2, len(whole) - 1):
        path.write_bytes(whole[:cut])
        with caplog.at_level(logging.WARNING, logger="openvpc.agent"):
            broken = AgentState(path)
        assert broken.config is None and broken.learns == {}
    assert "unreadable" in caplog.text


def test_bad_learned_entries_are_dropped_and_good_ones_kept(tmp_path: Path) -> None:
    path = tmp_path / "agent.json"
    learns = [
        {"ip": VIP, "interface_id": "eni-old"},
        {"ip": "not an address", "interface_id": "eni-1"},
        {"ip": OTHER_IP},
        7,
        {"ip": VIP, "interface_id": PORT1.interface_id},  # the newest claim wins
    ]
    path.write_text(json.dumps({"config": None, "learns": learns}))
    assert AgentState(path).learns == {VIP: PORT1.interface_id}


def test_the_vms_the_agent_made_are_kept_with_config_and_learns(tmp_path: Path) -> None:
    path = tmp_path / "agent.json"
    vm = VmSpec("ov-l-v-a", (Tap("eth0", "02:00:00:00:00:02", "eni-2"),))
    state = AgentState(path)
    state.save_config(CONFIG)
    state.save_vms({vm.netns: (vm, 4026532000)})
    state.save_learns({VIP: PORT1.interface_id})
    again = AgentState(path)
    assert again.vms == {vm.netns: (vm, 4026532000)}
    assert again.config == CONFIG and again.learns == {VIP: PORT1.interface_id}
    state.save_vms({})
    assert AgentState(path).vms == {}


def test_bad_vm_records_are_dropped_and_good_ones_kept(tmp_path: Path) -> None:
    path = tmp_path / "agent.json"
    tap = {"ifname": "eth0", "mac": "02:00:00:00:00:02", "interface_id": "eni-2"}
    vms = [
        {"netns": "ov-l-v-a", "token": 7, "taps": [tap]},
        {"netns": "../etc", "token": 7, "taps": [tap]},
        {"netns": "ov-l-v-b", "token": "7", "taps": [tap]},
        {"netns": "ov-l-v-c", "token": 7, "taps": [{"ifname": "eth0"}]},
        {"netns": "ov-l-v-d", "token": True, "taps": []},
        "ov-l-v-e",
    ]
    path.write_text(json.dumps({"config": None, "learns": [], "vms": vms}))
    assert list(AgentState(path).vms) == ["ov-l-v-a"]
    path.write_text(json.dumps({"config": None, "vms": {"ov-l-v-a": 7}}))
    assert AgentState(path).vms == {}


class Controller:
    """A real southbound server; `answer` says whether a Learn is accepted."""

    def __init__(self, port: int = 0, answer: bool = True) -> None:
        self.learned: list[tuple[str, str]] = []
        self.answer = answer
        self.server = SouthboundServer(f"tcp:127.0.0.1:{port}", self._learn)
        self.server.hub.set_credentials({"node1": secret_hash(SECRET)})
        self.server.start()
        assert self.server.port is not None
        self.port: int = self.server.port

    def _learn(self, node: str, interface_id: str, ip: str) -> bool:
        self.learned.append((interface_id, ip))
        return self.answer


@pytest.fixture
def stopper() -> Iterator[list[tuple[Reporter, threading.Thread, SouthboundClient]]]:
    running: list[tuple[Reporter, threading.Thread, SouthboundClient]] = []
    yield running
    for rep, thread, client in running:
        rep.stop.set()
        rep.wake()
        thread.join(WAIT)
        client.close()
        assert not thread.is_alive()


def _reporter(
    port: int,
    state: AgentState,
    running: list[tuple[Reporter, threading.Thread, SouthboundClient]],
) -> Reporter:
    credential = Credential("node", SECRET, "node1")
    client = SouthboundClient(f"tcp:127.0.0.1:{port}", timeout=1.0, credential=credential)
    rep = Reporter(client, "node1", threading.Event(), state)
    thread = threading.Thread(target=rep.run, daemon=True)
    thread.start()
    running.append((rep, thread, client))
    return rep


def test_a_claim_made_while_the_controller_is_away_is_retried_and_survives_a_restart(
    tmp_path: Path,
    stopper: list[tuple[Reporter, threading.Thread, SouthboundClient]],
) -> None:
    path = tmp_path / "agent.json"
    first = Controller()
    port = first.port
    first.server.stop()  # the controller goes away; its port stays known
    rep = _reporter(port, AgentState(path), stopper)
    rep.learn("eni-old", VIP)
    rep.learn(PORT1.interface_id, VIP)  # the newest claim per address wins
    rep.learn(PORT1.interface_id, OTHER_IP)
    until(lambda: rep.learn_retries >= 2, "the reporter never tried", WAIT)
    assert rep.pending() == {VIP: PORT1.interface_id, OTHER_IP: PORT1.interface_id}
    # the agent restarts: its claims come back from the state file
    rep.stop.set()
    rep.wake()
    stopper[0][1].join(WAIT)
    restarted = AgentState(path)
    assert restarted.learns == {VIP: PORT1.interface_id, OTHER_IP: PORT1.interface_id}
    back = Controller(port, answer=False)  # refused is an answer too: nothing stays pending
    try:
        rep2 = _reporter(port, restarted, stopper)
        until(lambda: not rep2.pending(), "the claims never reached the controller", WAIT)
        assert back.learned == [(PORT1.interface_id, VIP), (PORT1.interface_id, OTHER_IP)]
        assert AgentState(path).learns == {}
    finally:
        back.server.stop()


def test_pending_claims_are_bounded_oldest_first(
    tmp_path: Path,
    stopper: list[tuple[Reporter, threading.Thread, SouthboundClient]],
) -> None:
    gone = Controller()
    port = gone.port
    gone.server.stop()
    rep = _reporter(port, AgentState(tmp_path / "agent.json"), stopper)
    addresses = [f"10.0.{i // 200}.{i % 200 + 1}" for i in range(MAX_PENDING_LEARNS + 3)]
    for ip in addresses:
        rep.learn(PORT1.interface_id, ip)
    assert list(rep.pending()) == addresses[3:]
