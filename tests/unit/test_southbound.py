"""The southbound over real gRPC on a unix socket, fed by a real store, service and compiler."""

import os
import queue
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import grpc
import pytest
from waiting import until

from openvpc.agent.reporter import Reporter
from openvpc.compiler.compile import compile_all
from openvpc.controller.main import Controller
from openvpc.credentials import Credential, new_secret, secret_hash
from openvpc.model.nodeconfig import DnsRecord, NodeConfig, VmReport
from openvpc.service import Service
from openvpc.southbound import wire
from openvpc.southbound.backoff import Backoff
from openvpc.southbound.client import Follower, SouthboundClient, SouthboundError
from openvpc.southbound.hub import ConfigHub
from openvpc.southbound.server import SouthboundServer
from openvpc.store import Store

WAIT = 5.0


@dataclass
class World:
    db: Path
    listen: str
    sock: Path
    service: Service
    web: str  # subnet id of red's web subnet
    vm1_eni: str
    vm2_eni: str
    secrets: dict[str, bytes]  # node -> its southbound secret
    operator_secret: bytes

    def node(self, name: str, target: str | None = None) -> SouthboundClient:
        """A client holding node `name`'s credential."""
        credential = Credential("node", self.secrets[name], name)
        return SouthboundClient(target or self.listen, credential=credential)

    def operator(self) -> SouthboundClient:
        return SouthboundClient(
            self.listen, credential=Credential("operator", self.operator_secret)
        )


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    store = Store(tmp_path / "ov.db")
    service = Service(store)
    service.register_node("node1", "192.168.0.10")
    service.register_node("node2", "192.168.0.11")
    for tenant in ("red", "blue"):
        service.create_tenant(tenant)
    vpc = service.create_vpc("red", "prod", "10.0.0.0/16")
    web = service.create_subnet("red", vpc.id, "web", "10.0.1.0/24")
    _, eni1 = service.run_instance(
        "red", web.id, "vm1", "node1", "ov-t-vm1", allowed_addresses=["10.0.1.100"]
    )
    _, eni2 = service.run_instance(
        "red", web.id, "vm2", "node1", "ov-t-vm2", allowed_addresses=["10.0.1.100"]
    )
    secrets = {n: service.issue_node_secret(n) for n in ("node1", "node2")}
    sock = tmp_path / "sb.sock"
    try:
        yield World(
            tmp_path / "ov.db",
            f"unix:{sock}",
            sock,
            service,
            web.id,
            eni1.id,
            eni2.id,
            secrets,
            new_secret(),
        )
    finally:
        store.close()


class RunningController:
    """A Controller on its own thread, stopped (and its thread joined) by `stop`."""

    def __init__(self, world: World) -> None:
        self.controller = Controller(
            str(world.db), world.listen, operator_secret=world.operator_secret
        )
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self.controller.run, args=(self.stop_event,))
        self.thread.start()
        assert self.controller.serving.wait(WAIT)

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(WAIT)
        assert not self.thread.is_alive()


@pytest.fixture
def controller(world: World) -> Iterator[RunningController]:
    running = RunningController(world)
    try:
        yield running
    finally:
        running.stop()


class Subscriber:
    """A Follower on its own thread; every config it receives lands in `configs`."""

    def __init__(self, world: World, node: str) -> None:
        self.client = world.node(node)
        self.configs: queue.Queue[NodeConfig] = queue.Queue()
        self.follower = Follower(self.client, node, self.configs.put, Backoff(0.05, 0.2))
        self.thread = threading.Thread(target=self.follower.run)
        self.thread.start()

    def next(self, timeout: float = WAIT) -> NodeConfig:
        return self.configs.get(timeout=timeout)

    def close(self) -> None:
        self.follower.stop()
        self.thread.join(WAIT)
        self.client.close()
        assert not self.thread.is_alive()


@pytest.fixture
def subscribe(world: World) -> Iterator[type[Subscriber]]:
    made: list[Subscriber] = []

    class Tracked(Subscriber):
        def __init__(self, world: World, node: str) -> None:
            super().__init__(world, node)
            made.append(self)

    try:
        yield Tracked
    finally:
        for s in made:
            s.close()


def status_of(client: SouthboundClient, node: str) -> dict[str, object]:
    return next(n for n in client.status()["nodes"] if n["node"] == node)


# -- pure parts ----------------------------------------------------------------------------


def test_targets() -> None:
    assert wire.grpc_target("unix:/run/ov/sb.sock") == "unix:/run/ov/sb.sock"
    assert wire.grpc_target("tcp:127.0.0.1:7000") == "127.0.0.1:7000"
    assert wire.grpc_target("tcp:::1:7000") == "[::1]:7000"
    assert wire.unix_path("unix:/run/sb.sock") == "/run/sb.sock"
    assert wire.unix_path("unix:///run/sb.sock") == "/run/sb.sock"
    assert wire.unix_path("tcp:h:1") is None
    for bad in ("", "unix:", "tcp:host", "tcp:host:port", "tcp::80", "http://x", "tcp:h:99999"):
        with pytest.raises(ValueError, match="unix:/PATH or tcp:HOST:PORT"):
            wire.grpc_target(bad)


def test_backoff_is_bounded_and_resets() -> None:
    b = Backoff(0.1, 1.0)
    assert [b.delay() for _ in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    b.reset()
    assert b.delay() == 0.1
    with pytest.raises(ValueError):
        Backoff(0, 1)


def test_hub_reports_only_nodes_whose_config_changed() -> None:
    hub = ConfigHub()
    a = NodeConfig("a", 1)
    b = NodeConfig("b", 1, dns=(DnsRecord(1, "vm9.internal", "10.0.0.9"),))
    assert hub.publish(1, {"a": a, "b": b}) == ["a", "b"]
    # a new generation alone is not a change
    assert hub.publish(2, {"a": replace(a, generation=2), "b": replace(b, generation=2)}) == []
    with_dns = replace(a, generation=3, dns=(DnsRecord(1, "vm1.internal", "10.0.0.5"),))
    assert hub.publish(3, {"a": with_dns, "b": b}) == ["a"]
    # a node the compiler no longer lists gets an empty config at that revision
    assert hub.publish(4, {"a": with_dns}) == ["b"]
    assert hub.publish(5, {"a": with_dns}) == []
    got = hub.next_config("b", 0, 0.1)
    assert got is not None and got[1] == NodeConfig("b", 4)
    assert hub.next_config("b", got[0], 0.05) is None  # nothing newer: times out
    # a registered node nobody compiled is told it hosts nothing
    hub.set_credentials({"c": secret_hash(b"c" * 32)})
    hub.attach("c")
    unknown = hub.next_config("c", 0, 0.1)
    assert unknown is not None and unknown[1] == NodeConfig("c", 5)


# -- the real thing ----------------------------------------------------------------------


def test_subscribe_gets_the_compiled_config_at_once(
    world: World, controller: RunningController, subscribe: type[Subscriber]
) -> None:
    sub = subscribe(world, "node1")
    first = sub.next()
    expected = compile_all(world.service.snapshot())["node1"]
    assert first == expected
    assert first.generation == world.service.revision()
    assert len(first.ports) == 2
    other = subscribe(world, "node2").next()
    assert other.ports == () and other.node == "node2"


def test_a_change_reaches_only_the_nodes_it_affects(
    world: World, controller: RunningController, subscribe: type[Subscriber]
) -> None:
    sub1 = subscribe(world, "node1")
    sub2 = subscribe(world, "node2")
    before1, before2 = sub1.next(), sub2.next()
    # blue's VM on node2 changes nothing on node1
    blue = world.service.create_vpc("blue", "dev", "10.0.0.0/16")
    blue_web = world.service.create_subnet("blue", blue.id, "web", "10.0.1.0/24")
    world.service.run_instance("blue", blue_web.id, "b1", "node2", "ov-t-b1")
    after2 = sub2.next()
    revision = world.service.revision()
    assert after2.generation == revision > before2.generation
    assert [p.name for p in after2.ports] == ["b1"]
    assert after2 == compile_all(world.service.snapshot())["node2"]
    client = world.operator()
    try:
        assert client.status()["revision"] == revision
        assert status_of(client, "node1")["generation_sent"] == before1.generation
    finally:
        client.close()
    with pytest.raises(queue.Empty):
        sub1.next(timeout=0.3)
    # a VM on node2 in red's network gives node1 a route to it
    world.service.run_instance("red", world.web, "vm3", "node2", "ov-t-vm3")
    after1 = sub1.next()
    assert len(after1.routes) > len(before1.routes)
    assert sub2.next().generation == after1.generation


def test_acks_and_connections_show_in_status(
    world: World, controller: RunningController, subscribe: type[Subscriber]
) -> None:
    client, node1_client = world.operator(), world.node("node1")
    try:
        sub = subscribe(world, "node1")
        config = sub.next()
        until(
            lambda: status_of(client, "node1")["connected"] is True, "node1 never connected", WAIT
        )
        node1 = status_of(client, "node1")
        assert node1["generation_acked"] is None
        assert node1["generation_sent"] == node1["generation"] == config.generation
        node1_client.ack("node1", config.generation)
        assert status_of(client, "node1")["generation_acked"] == config.generation
        assert status_of(client, "node2")["connected"] is False
        sub.close()
        until(
            lambda: status_of(client, "node1")["connected"] is False, "node1 stayed connected", WAIT
        )
    finally:
        client.close()
        node1_client.close()


def test_learn_moves_an_allowed_address_and_refuses_others(
    world: World, controller: RunningController, subscribe: type[Subscriber]
) -> None:
    sub = subscribe(world, "node1")
    sub.next()
    client, node2 = world.node("node1"), world.node("node2")
    try:
        assert client.learn("node1", world.vm2_eni, "10.0.1.100") == (True, None)
        moved = sub.next()
        vip = [r for r in moved.routes if r.prefix == "10.0.1.100/32"]
        vm2_vif = next(p.vif for p in moved.ports if p.interface_id == world.vm2_eni)
        nh = next(n for n in moved.nexthops if n.key == vip[0].nh)
        assert nh.vif == vm2_vif
        assert client.learn("node1", world.vm2_eni, "10.0.1.101") == (False, None)
        assert node2.learn("node2", world.vm1_eni, "10.0.1.100") == (False, None)
        with pytest.raises(SouthboundError, match="PERMISSION_DENIED"):
            client.learn("node2", world.vm1_eni, "10.0.1.100")  # only as itself
        with pytest.raises(SouthboundError, match="INVALID_ARGUMENT"):
            client.learn("node1", world.vm1_eni, 5)  # type: ignore[arg-type]
    finally:
        client.close()
        node2.close()


def test_malformed_requests_are_refused(world: World, controller: RunningController) -> None:
    channel = grpc.insecure_channel(world.listen)
    metadata = Credential("node", world.secrets["node1"], "node1").metadata()
    try:
        raw = channel.unary_unary(wire.method_path(wire.ACK), None, None)
        with pytest.raises(grpc.RpcError) as e:
            raw(b"\xff not json", timeout=WAIT, metadata=metadata)
        assert e.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        stream = channel.unary_stream(wire.method_path(wire.SUBSCRIBE), None, None)
        with pytest.raises(grpc.RpcError) as e:
            list(stream(b'{"node": 3}', timeout=WAIT, metadata=metadata))
        assert e.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        # without a credential, a malformed body is not even looked at
        with pytest.raises(grpc.RpcError) as e:
            raw(b"\xff not json", timeout=WAIT)
        assert e.value.code() is grpc.StatusCode.UNAUTHENTICATED
    finally:
        channel.close()
    # the server is still there
    client = world.operator()
    try:
        assert client.status()["revision"] == world.service.revision()
    finally:
        client.close()


def test_a_restarted_controller_is_resubscribed(world: World, subscribe: type[Subscriber]) -> None:
    first = RunningController(world)
    try:
        sub = subscribe(world, "node1")
        config = sub.next()
    finally:
        first.stop()
    assert not world.sock.exists()  # a graceful stop removes its socket
    until(lambda: not sub.follower.connected.is_set(), "the follower stayed connected", WAIT)
    # a change while the controller is away is picked up on resubscribe
    world.service.run_instance("red", world.web, "vm4", "node1", "ov-t-vm4")
    second = RunningController(world)
    try:
        again = sub.next()
        assert len(again.ports) == len(config.ports) + 1
        assert again == compile_all(world.service.snapshot())["node1"]
        assert sub.follower.connected.is_set()
    finally:
        second.stop()


def test_tcp_listen_on_an_ephemeral_port() -> None:
    server = SouthboundServer("tcp:127.0.0.1:0", lambda node, eni, ip: False)
    secret = new_secret()
    server.hub.set_credentials({"n1": secret_hash(secret)})
    server.start()
    try:
        assert server.port
        server.publish(3, {"n1": NodeConfig("n1", 3)})
        credential = Credential("node", secret, "n1")
        client = SouthboundClient(f"tcp:127.0.0.1:{server.port}", credential=credential)
        try:
            assert next(iter(client.subscribe("n1"))) == NodeConfig("n1", 3)
            assert client.learn("n1", "eni-1", "10.0.0.9") == (False, None)
        finally:
            client.close()
    finally:
        server.stop()


def test_a_stale_socket_file_is_replaced_but_a_live_server_is_not(world: World) -> None:
    leftover = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    leftover.bind(str(world.sock))
    leftover.close()  # a crashed server leaves the file behind
    running = RunningController(world)
    try:
        client = world.operator()
        try:
            until(lambda: _answers(client), "the server never answered", WAIT)
        finally:
            client.close()
        second = Controller(str(world.db), world.listen)
        with pytest.raises(OSError, match="another controller is listening"):
            second.run(threading.Event())  # refuses, and leaves the live server's socket alone
        assert os.path.exists(world.sock)
    finally:
        running.stop()


def _answers(client: SouthboundClient) -> bool:
    try:
        client.status()
    except SouthboundError:
        return False
    return True


def test_after_the_whole_config_a_stream_carries_only_changes(
    world: World, controller: RunningController
) -> None:
    channel = grpc.insecure_channel(wire.grpc_target(world.listen))
    try:
        call = channel.unary_stream(
            wire.method_path(wire.SUBSCRIBE),
            request_serializer=wire.encode,
            response_deserializer=wire.decode,
        )(
            {"node": "node1"},
            timeout=WAIT * 2,
            metadata=Credential("node", world.secrets["node1"], "node1").metadata(),
        )
        stream = iter(call)
        first = next(stream)
        assert isinstance(first, dict) and set(first) == {"config"}
        assert world.service.learn_address("node1", world.vm2_eni, "10.0.1.100")
        second = next(stream)
        assert isinstance(second, dict) and set(second) == {"delta"}
        # the movable address changed hands: its one route, nothing else
        assert [(s["kind"], s["obj"]["prefix"]) for s in second["delta"]["set"]] == [
            ("route", "10.0.1.100/32")
        ]
        assert second["delta"]["delete"] == [] and "dns" not in second["delta"]
    finally:
        channel.close()


def test_acked_vms_reach_the_controllers_runtime_and_status(
    world: World, controller: RunningController, subscribe: type[Subscriber]
) -> None:
    """An ack carries the node's ready VMs (the whole set each time); the controller's
    runtime answers from it, per node, and another node cannot speak for it."""
    runtime = controller.controller.runtime
    client, node1, node2 = world.operator(), world.node("node1"), world.node("node2")
    try:
        config = subscribe(world, "node1").next()
        assert runtime.acked("node1") is None
        assert not runtime.vm_ready("node1", world.vm1_eni)
        ready = VmReport(world.vm1_eni, "ov-t-vm1", "eth0", None)
        node1.ack("node1", config.generation, [ready])
        assert runtime.acked("node1") == config.generation
        assert runtime.vm_ready("node1", world.vm1_eni)
        assert not runtime.vm_ready("node1", world.vm2_eni)
        assert not runtime.vm_ready("node2", world.vm1_eni)  # per node
        bound = replace(ready, ip="10.0.1.4/24")
        node1.ack(
            "node1", config.generation, [bound, VmReport(world.vm2_eni, "ov-t-vm2", "eth0", None)]
        )
        expected: list[dict[str, str | None]] = [
            {
                "interface_id": world.vm1_eni,
                "netns": "ov-t-vm1",
                "ifname": "eth0",
                "ip": "10.0.1.4/24",
                "instance_id": "",
                "name": "",
            },
            {
                "interface_id": world.vm2_eni,
                "netns": "ov-t-vm2",
                "ifname": "eth0",
                "ip": None,
                "instance_id": "",
                "name": "",
            },
        ]
        expected.sort(key=lambda v: str(v["interface_id"]))
        assert status_of(client, "node1")["vms"] == expected
        node1.ack("node1", config.generation + 1)  # an agent that makes no VMs: kept
        assert runtime.acked("node1") == config.generation + 1
        assert runtime.vm_ready("node1", world.vm2_eni)
        node1.ack("node1", config.generation + 1, [])  # its VMs went away
        assert not runtime.vm_ready("node1", world.vm1_eni)
        with pytest.raises(SouthboundError, match="PERMISSION_DENIED"):
            node2.ack("node1", config.generation, [ready])
        assert not runtime.vm_ready("node1", world.vm1_eni)
        assert runtime.acked("nosuchnode") is None
    finally:
        for c in (client, node1, node2):
            c.close()


@pytest.mark.parametrize(
    "vms",
    [
        "eni-1",
        [{"interface_id": "eni-1", "netns": "ns"}],
        [{"interface_id": "eni-1", "netns": "a/b", "ifname": "eth0", "ip": None}],
        [{"interface_id": "eni-1", "netns": "ns", "ifname": "eth0", "ip": "10.0.1.4"}],
        [{"interface_id": "eni-1", "netns": "ns", "ifname": "eth0", "ip": 5}],
        [{"interface_id": "eni-1", "netns": "ns", "ifname": "eth0"}] * (wire.MAX_VMS + 1),
    ],
)
def test_malformed_vm_reports_are_refused(
    world: World, controller: RunningController, vms: object
) -> None:
    channel = grpc.insecure_channel(world.listen)
    metadata = Credential("node", world.secrets["node1"], "node1").metadata()
    try:
        ack = channel.unary_unary(wire.method_path(wire.ACK), wire.encode, wire.decode)
        with pytest.raises(grpc.RpcError) as e:
            ack({"node": "node1", "generation": 1, "vms": vms}, metadata=metadata, timeout=WAIT)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert controller.controller.runtime.acked("node1") is None  # nothing kept
    finally:
        channel.close()


def test_the_reporter_sends_vm_reports_with_acks_and_alone_when_they_change(
    world: World, controller: RunningController, subscribe: type[Subscriber]
) -> None:
    runtime = controller.controller.runtime
    hub = controller.controller.server.hub
    config = subscribe(world, "node1").next()
    client = world.node("node1")
    stop = threading.Event()
    reporter = Reporter(client, "node1", stop)
    thread = threading.Thread(target=reporter.run)
    thread.start()
    try:
        ready = VmReport(world.vm1_eni, "ov-t-vm1", "eth0", None)
        reporter.report_vms((ready,))  # goes up with the first ack
        reporter.ack(config.generation)
        until(lambda: runtime.vm_ready("node1", world.vm1_eni), "no VM report with the ack", WAIT)
        assert runtime.acked("node1") == config.generation
        bound = replace(ready, ip="10.0.1.4/24")
        reporter.report_vms((bound,))  # a lease between acks: sent alone
        until(lambda: hub.vm("node1", world.vm1_eni) == bound, "the lease never went up", WAIT)
        assert runtime.acked("node1") == config.generation
        reporter.report_vms(())
        until(lambda: not runtime.vm_ready("node1", world.vm1_eni), "VM still ready", WAIT)
    finally:
        stop.set()
        reporter.wake()
        thread.join(WAIT)
        client.close()
