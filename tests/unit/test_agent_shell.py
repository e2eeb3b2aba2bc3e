"""The agent's threads without a vRouter: the punt queue, the desired config, the reporter.

The whole agent process, with a vRouter and a controller, is in tests/system/test_agent_process
and test_supervision (crashes, restarts, the controller away).
"""

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from agent_setup import CONFIG, PORT1, VIP, punt_of
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import ARP, Ether

from openvpc.agent.desired import Desired
from openvpc.agent.punt_worker import PuntWorker
from openvpc.agent.reporter import Reporter
from openvpc.agent.state_file import AgentState
from openvpc.credentials import Credential, new_secret, secret_hash
from openvpc.model.nodeconfig import NodeConfig
from openvpc.southbound.client import SouthboundClient
from openvpc.southbound.server import SouthboundServer
from openvpc.vrouter.punt import Punt

WAIT = 5.0
SECRET = new_secret()


class Controller:
    """A real southbound server whose Learn calls land in `learned`."""

    def __init__(self) -> None:
        self.learned: list[tuple[str, str, str]] = []
        self.server = SouthboundServer("tcp:127.0.0.1:0", self._learn)
        self.server.hub.set_credentials({"node1": secret_hash(SECRET)})

    def _learn(self, node: str, interface_id: str, ip: str) -> bool:
        self.learned.append((node, interface_id, ip))
        return True


@pytest.fixture
def controller() -> Iterator[Controller]:
    c = Controller()
    c.server.start()
    try:
        yield c
    finally:
        c.server.stop()


@pytest.fixture
def reporter(controller: Controller) -> Iterator[Reporter]:
    stop = threading.Event()
    client = SouthboundClient(
        f"tcp:127.0.0.1:{controller.server.port}", credential=Credential("node", SECRET, "node1")
    )
    rep = Reporter(client, "node1", stop)
    thread = threading.Thread(target=rep.run)
    thread.start()
    try:
        yield rep
    finally:
        stop.set()
        rep.wake()
        thread.join(WAIT)
        client.close()
        assert not thread.is_alive()


def dhcp_discover() -> bytes:
    return punt_of(
        Punt.DHCP,
        PORT1,
        Ether(src=PORT1.mac, dst="ff:ff:ff:ff:ff:ff")
        / IP(src="0.0.0.0", dst="255.255.255.255")
        / UDP(sport=68, dport=67)
        / BOOTP(chaddr=bytes.fromhex(PORT1.mac.replace(":", "")), xid=7)
        / DHCP(options=[("message-type", "discover"), "end"]),
    )


def test_desired_prefers_the_controller_over_what_was_adopted() -> None:
    desired = Desired()
    assert desired.latest() == (0, None) and desired.for_proxies() is None
    adopted = NodeConfig("node1", 4)
    desired.adopt(adopted)
    assert desired.for_proxies() is adopted
    assert desired.wait_past(0, 0.01) == 0  # nothing new: times out
    desired.offer(CONFIG)
    assert desired.wait_past(0, 0.01) == 1
    assert desired.latest() == (1, CONFIG) and desired.for_proxies() is CONFIG
    desired.offer(CONFIG)  # the same config again (a resubscribe) is still news
    assert desired.latest()[0] == 2


def test_punt_queue_is_bounded_and_counts_overflow(reporter: Reporter) -> None:
    worker = PuntWorker(Desired(), reporter, threading.Event(), capacity=2)
    for _ in range(5):
        worker.offer(dhcp_discover())
    assert len(worker.queue) == 2
    assert worker.snapshot() == {"punt_queue_overflow": 3}
    queued = worker.queue.get(0)
    assert queued is not None
    worker.handle(queued)
    assert worker.snapshot()["punt_no_config"] == 1


def test_punts_are_answered_and_learned_addresses_reported(
    reporter: Reporter, controller: Controller
) -> None:
    desired = Desired()
    desired.offer(CONFIG)
    worker = PuntWorker(desired, reporter, threading.Event())
    worker.handle(dhcp_discover())
    # an offer was made, but with no vRouter channel it cannot be sent: counted, not raised
    assert worker.snapshot() == {"dhcp_offer": 1, "punt_vrouter_down": 1}
    garp = Ether(src=PORT1.mac, dst="ff:ff:ff:ff:ff:ff") / ARP(
        op=1, hwsrc=PORT1.mac, psrc=VIP, hwdst="00:00:00:00:00:00", pdst=VIP
    )
    worker.handle(punt_of(Punt.ARP, PORT1, garp))
    deadline = time.monotonic() + WAIT
    while not controller.learned:
        assert time.monotonic() < deadline, "the learned address never reached the controller"
        time.sleep(0.02)
    assert controller.learned == [("node1", PORT1.interface_id, VIP)]
    worker.handle(b"\x00")  # too short for an agent header
    assert worker.snapshot()["punt_short_agent_header"] == 1


def test_acks_reach_the_controller(reporter: Reporter, controller: Controller) -> None:
    controller.server.publish(9, {"node1": NodeConfig("node1", 9)})
    reporter.ack(8)
    reporter.ack(9)  # only the newest matters
    deadline = time.monotonic() + WAIT
    while reporter.acked != 9:
        assert time.monotonic() < deadline, "ack never delivered"
        time.sleep(0.02)
    node1 = controller.server.hub.status()["nodes"][0]
    assert node1["generation_acked"] == 9


def test_the_last_config_survives_an_agent_restart_in_its_state_file(tmp_path: Path) -> None:
    state = tmp_path / "agent.json"
    Desired(AgentState(state)).offer(CONFIG)
    restarted = Desired(AgentState(state))  # the controller has not spoken yet
    assert restarted.latest() == (0, None)  # the controller's word is still to come...
    assert restarted.saved() == CONFIG  # ...forwarding is rebuilt towards the file's
    assert restarted.for_proxies() == CONFIG  # and DNS and DHCP answer as before


def test_an_unreadable_state_file_is_ignored(tmp_path: Path) -> None:
    state = tmp_path / "agent.json"
    state.write_text('{"node": "node1", "generation": "not a number"}')
    assert Desired(AgentState(state)).for_proxies() is None
