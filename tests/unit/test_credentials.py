"""Credentials on the control channels: the hub's and the server's checks over real gRPC, TLS
with a certificate made here, secret files, and the vRouter channel's admission of its agent
and observers on a real unix socket."""

import os
import socket
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from openvpc.credentials import (
    Credential,
    CredentialError,
    new_secret,
    read_secret_file,
    secret_hash,
    write_secret_file,
)
from openvpc.lab.processes import openvpc_command
from openvpc.model.nodeconfig import NodeConfig
from openvpc.service import Service
from openvpc.service.errors import ServiceError
from openvpc.southbound import wire
from openvpc.southbound.client import SouthboundClient, SouthboundError
from openvpc.southbound.hub import ConfigHub, Refused
from openvpc.southbound.server import SouthboundServer, TlsFiles
from openvpc.store import Store
from openvpc.vrouter.channel import MAX_OBSERVERS, AgentChannel, Peer, Refusal, admit

SECRET_A, SECRET_B, OPERATOR = new_secret(), new_secret(), new_secret()


# -- the hub -------------------------------------------------------------------------------


def test_hub_remembers_nothing_of_unregistered_nodes() -> None:
    hub = ConfigHub()
    hub.set_credentials({"a": secret_hash(SECRET_A)})
    for name in ("ghost", "a2", ""):
        with pytest.raises(Refused, match="not registered"):
            hub.attach(name)
        assert hub.ack(name, 7) is False
        hub.mark_sent(name, 7)
        assert hub.next_config(name, 0, 0.01) is None
    assert hub.status()["nodes"] == []
    assert hub.authenticate("a", SECRET_A)
    assert not hub.authenticate("a", SECRET_B)
    assert not hub.authenticate("ghost", SECRET_A)


def test_hub_limits_subscriptions_per_node() -> None:
    hub = ConfigHub(max_subscriptions=2)
    hub.set_credentials({"a": secret_hash(SECRET_A)})
    hub.attach("a")
    hub.attach("a")
    with pytest.raises(Refused, match="already has 2"):
        hub.attach("a")
    hub.detach("a")
    hub.attach("a")  # a slot freed is a slot again
    assert [n["node"] for n in hub.status()["nodes"]] == ["a"]


# -- the server over gRPC ------------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[SouthboundServer]:
    srv = SouthboundServer("tcp:127.0.0.1:0", lambda node, eni, ip: True, operator_secret=OPERATOR)
    srv.hub.set_credentials({"a": secret_hash(SECRET_A), "b": secret_hash(SECRET_B)})
    srv.start()
    srv.publish(4, {"a": NodeConfig("a", 4), "b": NodeConfig("b", 4)})
    try:
        yield srv
    finally:
        srv.stop()


def client_of(srv: SouthboundServer, credential: Credential | None) -> SouthboundClient:
    return SouthboundClient(f"tcp:127.0.0.1:{srv.port}", timeout=5.0, credential=credential)


def first_config(client: SouthboundClient, node: str) -> NodeConfig:
    sub = client.subscribe(node)
    try:
        return next(iter(sub))
    finally:
        sub.cancel()


def test_a_node_acts_only_as_itself_with_its_own_secret(server: SouthboundServer) -> None:
    a = client_of(server, Credential("node", SECRET_A, "a"))
    wrong = client_of(server, Credential("node", SECRET_B, "a"))  # b's secret, a's name
    anonymous = client_of(server, None)
    try:
        assert first_config(a, "a") == NodeConfig("a", 4)
        with pytest.raises(SouthboundError, match="PERMISSION_DENIED"):
            first_config(a, "b")
        with pytest.raises(SouthboundError, match="PERMISSION_DENIED"):
            a.ack("b", 4)
        with pytest.raises(SouthboundError, match="PERMISSION_DENIED"):
            a.learn("b", "eni-1", "10.0.0.9")
        for bad in (wrong, anonymous):
            with pytest.raises(SouthboundError, match="UNAUTHENTICATED"):
                first_config(bad, "a")
            with pytest.raises(SouthboundError, match="UNAUTHENTICATED"):
                bad.ack("a", 4)
            with pytest.raises(SouthboundError, match="UNAUTHENTICATED"):
                bad.learn("a", "eni-1", "10.0.0.9")
        # nodes may not read the Status either: it is the operator's
        with pytest.raises(SouthboundError, match="UNAUTHENTICATED"):
            a.status()
        a.ack("a", 4)
    finally:
        for c in (a, wrong, anonymous):
            c.close()
    operator = client_of(server, Credential("operator", OPERATOR))
    try:
        nodes = {n["node"]: n for n in operator.status()["nodes"]}
        assert nodes["a"]["generation_acked"] == 4 and nodes["b"]["generation_acked"] is None
    finally:
        operator.close()


def test_invented_names_are_refused_and_leave_no_trace(server: SouthboundServer) -> None:
    before = server.refusals
    for n in range(200):
        name = f"invented{n}"
        liar = client_of(server, Credential("node", new_secret(), name))
        try:
            with pytest.raises(SouthboundError, match="UNAUTHENTICATED"):
                first_config(liar, name)
        finally:
            liar.close()
    assert server.refusals == before + 200
    assert {n["node"] for n in server.hub.status()["nodes"]} == {"a", "b"}


def test_subscriptions_per_node_are_limited(server: SouthboundServer) -> None:
    clients = [client_of(server, Credential("node", SECRET_A, "a")) for _ in range(3)]
    subs = []
    try:
        for c in clients[:2]:
            sub = c.subscribe("a")
            it = iter(sub)
            assert next(it) == NodeConfig("a", 4)  # attached once the first config arrives
            subs.append(sub)
        with pytest.raises(SouthboundError, match="RESOURCE_EXHAUSTED"):
            first_config(clients[2], "a")
    finally:
        for sub in subs:
            sub.cancel()
        for c in clients:
            c.close()


def test_a_reissued_secret_replaces_the_old_one(server: SouthboundServer) -> None:
    new = new_secret()
    old = client_of(server, Credential("node", SECRET_A, "a"))
    fresh = client_of(server, Credential("node", new, "a"))
    stream = iter(old.subscribe("a"))
    try:
        assert next(stream) == NodeConfig("a", 4)
        server.hub.set_credentials({"a": secret_hash(new), "b": secret_hash(SECRET_B)})
        # the stream opened with the old secret ends, and the old secret opens nothing more
        assert list(stream) == []
        with pytest.raises(SouthboundError, match="UNAUTHENTICATED"):
            old.ack("a", 4)
        fresh.ack("a", 4)
    finally:
        old.close()
        fresh.close()


# -- TLS -----------------------------------------------------------------------------------


def make_certificate(tmp: Path) -> tuple[bytes, bytes]:
    """A self-signed certificate for 127.0.0.1 and localhost, made by the openssl CLI."""
    key, cert = tmp / "key.pem", tmp / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    return cert.read_bytes(), key.read_bytes()


def test_tls_carries_the_calls_and_is_required_off_loopback(tmp_path: Path) -> None:
    cert, key = make_certificate(tmp_path)
    srv = SouthboundServer("tcp:127.0.0.1:0", lambda *a: True, tls=TlsFiles(cert, key))
    srv.hub.set_credentials({"a": secret_hash(SECRET_A)})
    srv.start()
    srv.publish(2, {"a": NodeConfig("a", 2)})
    target = f"tcp:127.0.0.1:{srv.port}"
    credential = Credential("node", SECRET_A, "a")
    tls = SouthboundClient(target, credential=credential, tls_ca=cert)
    plain = SouthboundClient(target, timeout=2.0, credential=credential)
    try:
        assert first_config(tls, "a") == NodeConfig("a", 2)
        with pytest.raises(SouthboundError, match="UNAVAILABLE"):
            plain.ack("a", 2)  # a plaintext client cannot talk to a TLS listener
    finally:
        tls.close()
        plain.close()
        srv.stop()
    # anything but loopback needs TLS, on both ends; nothing is bound
    for listen in ("tcp:0.0.0.0:0", "tcp:192.0.2.1:7000", "tcp:controller.example:7000"):
        refused = SouthboundServer(listen, lambda *a: True)
        with pytest.raises(OSError, match="TLS is required"):
            refused.start()
        with pytest.raises(ValueError, match="TLS is required"):
            SouthboundClient(listen, credential=credential)
    assert wire.is_local("tcp:127.0.0.1:1") and wire.is_local("tcp:::1:1")
    assert wire.is_local("tcp:localhost:1") and wire.is_local("unix:/run/x.sock")
    assert not wire.is_local("tcp:10.0.0.1:1")


# -- secret files --------------------------------------------------------------------------


def test_secret_files_are_private_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "node.secret"
    write_secret_file(path, SECRET_A)
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert read_secret_file(path) == SECRET_A
    os.chmod(path, 0o644)
    with pytest.raises(CredentialError, match="accessible to others"):
        read_secret_file(path)
    os.chmod(path, 0o600)
    path.write_text("not a secret\n")
    with pytest.raises(CredentialError, match="32 bytes in hex"):
        read_secret_file(path)
    with pytest.raises(CredentialError, match="No such file"):
        read_secret_file(tmp_path / "missing")
    assert SECRET_A.hex() not in repr(Credential("node", SECRET_A, "a"))


# -- the vRouter channel -------------------------------------------------------------------


def hello(secret: bytes, role: str = "agent") -> dict[str, object]:
    return {"id": 1, "op": "hello", "role": role, "secret": secret.hex()}


def test_admission_is_pure_and_strict() -> None:
    assert admit(hello(SECRET_A), SECRET_A, same_netns=True) == "agent"
    assert admit(hello(SECRET_A, "observer"), SECRET_A, same_netns=False) == "observer"
    for request, why in (
        (hello(SECRET_A), "network namespace"),  # the agent must be on the node
        (hello(SECRET_B), "bad node secret"),
        ({"op": "hello"}, "bad node secret"),
        ({"op": "dump"}, "first request must be a hello"),
        (hello(SECRET_A, "root"), "unknown role"),
        ("hello", "first request must be a hello"),
    ):
        with pytest.raises(Refusal, match=why):
            admit(request, SECRET_A, same_netns=False)


@pytest.fixture
def channel(tmp_path: Path) -> Iterator[AgentChannel]:
    ch = AgentChannel(str(tmp_path / "vr.sock"), SECRET_A)
    try:
        yield ch
    finally:
        ch.close()


def connect(channel: AgentChannel, made: list[socket.socket]) -> Peer:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(channel.path)
    made.append(sock)
    peer = channel.accept(0.0)
    assert peer is not None
    return peer


def test_the_channel_keeps_its_agent_against_impostors(channel: AgentChannel) -> None:
    assert os.stat(channel.path).st_mode & 0o777 == 0o600
    made: list[socket.socket] = []
    try:
        agent = connect(channel, made)
        assert agent.same_netns  # this test runs in one namespace
        assert channel.hello(agent, hello(SECRET_A)) == "agent"
        assert channel.agent is agent
        impostor = connect(channel, made)
        with pytest.raises(Refusal):
            channel.hello(impostor, hello(SECRET_B))
        assert channel.agent is agent and channel.refused == 1
        observers = [connect(channel, made) for _ in range(MAX_OBSERVERS + 1)]
        for peer in observers[:MAX_OBSERVERS]:
            assert channel.hello(peer, hello(SECRET_A, "observer")) == "observer"
        with pytest.raises(Refusal, match="observers"):
            channel.hello(observers[-1], hello(SECRET_A, "observer"))
        assert channel.agent is agent
        # a silent connection is closed once its time to say hello is up
        silent = connect(channel, made)
        channel.expire(1000.0)
        assert silent not in channel.peers and agent in channel.peers
        # a restarted agent that proves itself takes over
        successor = connect(channel, made)
        assert channel.hello(successor, hello(SECRET_A)) == "agent"
        assert channel.agent is successor and agent not in channel.peers
    finally:
        for sock in made:
            sock.close()


# -- files at rest -------------------------------------------------------------------------


def test_the_store_and_its_journal_are_private(tmp_path: Path) -> None:
    old = os.umask(0o022)  # a permissive umask: the store must not rely on the caller's
    try:
        store = Store(tmp_path / "ov.db")
        try:
            with store.transaction() as tx:
                tx.put("node", "a", {"name": "a"})
            made = sorted(tmp_path.iterdir())
            assert {p.name for p in made} >= {"ov.db", "ov.db-wal", "ov.db-shm"}
            assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in made} == {
                p.name: 0o600 for p in made
            }
        finally:
            store.close()
    finally:
        os.umask(old)


def test_node_secrets_are_issued_to_registered_nodes_and_stored_hashed(tmp_path: Path) -> None:
    store = Store(tmp_path / "ov.db")
    try:
        service = Service(store)
        service.register_node("a", "192.168.0.1")
        with pytest.raises(ServiceError, match="not registered"):
            service.issue_node_secret("ghost")
        first = service.issue_node_secret("a")
        assert service.node_secret_hashes() == {"a": secret_hash(first)}
        second = service.issue_node_secret("a")  # reissuing revokes the first
        assert service.node_secret_hashes() == {"a": secret_hash(second)} and first != second
        raw = (tmp_path / "ov.db").read_bytes() + (tmp_path / "ov.db-wal").read_bytes()
        assert second.hex().encode() not in raw and second not in raw
    finally:
        store.close()


def test_daemons_refuse_to_start_without_their_credentials(tmp_path: Path) -> None:
    openvpc = list(openvpc_command())
    good, loose = tmp_path / "good.secret", tmp_path / "loose.secret"
    write_secret_file(good, new_secret())
    write_secret_file(loose, new_secret())
    os.chmod(loose, 0o644)
    agent = [*openvpc, "agent", "--node", "a", "--vrouter", str(tmp_path / "vr.sock")]
    cases = [
        (
            [*openvpc, "controller", "--db", str(tmp_path / "ov.db"), "--listen", "tcp:0.0.0.0:0"],
            "TLS is required",
        ),
        ([*agent, "--controller", "unix:/nonexistent", "--secret-file", str(loose)], "0600"),
        ([*agent, "--controller", "tcp:192.0.2.1:7000", "--secret-file", str(good)], "TLS"),
        (
            [*openvpc, "vrouter", "--control", str(tmp_path / "vr.sock"), "--fabric", "lo",
             "--secret-file", str(tmp_path / "missing")],
            "No such file",
        ),
    ]  # fmt: skip
    for argv, why in cases:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 1 and why in done.stderr, (argv, done.stderr)
    assert not (tmp_path / "vr.sock").exists()
