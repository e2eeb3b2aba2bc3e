"""Authenticated control channels in a real lab, tried as a hostile tenant and as a local
attacker who reaches the sockets without the node's secret.

A VM is root in a namespace that shares the host's files, so the lab runs VM commands in a
mount namespace where the control plane's directory is an empty tmpfs and the capabilities
that could undo that are gone. From the host, the southbound and the vRouter channel refuse
whoever cannot prove the node's secret, and refusing costs the controller nothing.
"""

import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

import grpc
import pytest
from conftest import TINY, LabFactory, LabHandle
from pyroute2.netns import popns, pushns

from openvpc.credentials import Credential, new_secret, read_secret_file
from openvpc.lab.processes import node_secret_file, vrouter_socket
from openvpc.southbound import wire
from openvpc.southbound.client import SouthboundClient, SouthboundError
from openvpc.vrouter.control import ControlClient, ControlError

INVENTED = 1000

# run as root inside a VM: every way at the control plane, each outcome as an errno name
PROBE = r"""
import ctypes, errno, json, os, socket, sys
paths, sockets, pids = json.loads(sys.argv[1])
out = {}
def attempt(what, fn):
    try:
        fn()
        out[what] = "ok"
    except OSError as e:
        out[what] = errno.errorcode.get(e.errno, str(e.errno))
def read(path):
    with open(path, "rb") as f:
        f.read(1)
def connect(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
    finally:
        s.close()
for p in paths:
    attempt("read " + p, lambda p=p: read(p))
    for pid in pids:
        attempt(f"read /proc/{pid}/root" + p, lambda p=p, pid=pid: read(f"/proc/{pid}/root" + p))
for p in sockets:
    attempt("connect " + p, lambda p=p: connect(p))
    for pid in pids:
        attempt(f"connect /proc/{pid}/root" + p,
                lambda p=p, pid=pid: connect(f"/proc/{pid}/root" + p))
libc = ctypes.CDLL(None, use_errno=True)
def check(rc):
    if rc != 0:
        raise OSError(ctypes.get_errno(), "failed")
def enter_host_mounts():
    fd = os.open("/proc/1/ns/mnt", os.O_RDONLY)
    try:
        check(libc.setns(fd, 0x00020000))
    finally:
        os.close(fd)
attempt("setns to the host's mount namespace", enter_host_mounts)
attempt("unmount the cover", lambda: check(libc.umount2(b"/run/openvpc", 2)))
def listing():
    out["listing"] = sorted(os.listdir("/run/openvpc"))
attempt("see the host's /run/openvpc", listing)
print(json.dumps(out))
"""

# run inside a VM: subscribe to the controller as node b, however it can be named
SUBSCRIBE = r"""
import json, sys
from openvpc.credentials import Credential, new_secret
from openvpc.southbound.client import SouthboundClient, SouthboundError
out = {}
for target in json.loads(sys.argv[1]):
    client = SouthboundClient(target, timeout=3.0, credential=Credential("node", new_secret(), "b"))
    try:
        next(iter(client.subscribe("b")))
        out[target] = "subscribed"
    except SouthboundError as e:
        out[target] = str(e).split(":")[0]
    finally:
        client.close()
print(json.dumps(out))
"""


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _pid(h: LabHandle, role: str, node: str = "") -> int:
    return next(p.pid for p in h.status().processes if (p.role, p.node) == (role, node))


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def _vm_json(h: LabHandle, vm: str, script: str, arg: object) -> dict[str, Any]:
    done = h.exec(vm, [sys.executable, "-c", script, json.dumps(arg)], timeout=60)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_root_in_a_vm_cannot_see_or_reach_the_control_plane(lab: LabFactory) -> None:
    h = lab(TINY)
    sdir = Path(h.started.state_dir)
    # on the host everything of the control plane is root's only
    assert _mode(sdir) == 0o700
    private = [
        sdir / "state.json",
        sdir / "openvpc.db",
        sdir / "operator.secret",
        node_secret_file(sdir, "a"),
        node_secret_file(sdir, "b"),
        sdir / "sb.sock",
        vrouter_socket(sdir, "a"),
        sdir / "controller.log",
    ]
    private += [p for p in (sdir / "openvpc.db-wal", sdir / "openvpc.db-shm") if p.exists()]
    assert {str(p): _mode(p) for p in private} == {str(p): 0o600 for p in private}

    files = [str(p) for p in private if not stat.S_ISSOCK(os.stat(p).st_mode)]
    sockets = [str(sdir / "sb.sock"), str(vrouter_socket(sdir, "a"))]
    pids = [_pid(h, "controller"), _pid(h, "vrouter", "a"), _pid(h, "agent", "a")]
    seen = _vm_json(h, "v1", PROBE, [files, sockets, pids])
    listing = seen.pop("listing", None)
    assert seen.pop("see the host's /run/openvpc") == "ok"
    assert h.name not in (listing or []), listing  # an empty cover, at most the VM's own files
    for what, outcome in seen.items():
        if what.startswith(("read /proc", "connect /proc")):
            assert outcome == "EACCES", (what, outcome)  # no ptrace access to host processes
        elif what.startswith(("read", "connect")):
            assert outcome == "ENOENT", (what, outcome)  # hidden by the cover
        else:  # no CAP_SYS_ADMIN to undo it, no ptrace access to pid 1's namespaces
            assert outcome in ("EPERM", "EACCES"), (what, outcome)
    # nor can it subscribe as another node, whichever path it names the controller by
    targets = [f"unix:{sdir / 'sb.sock'}", f"unix:/proc/{pids[0]}/root{sdir / 'sb.sock'}"]
    assert _vm_json(h, "v1", SUBSCRIBE, targets) == dict.fromkeys(targets, "UNAVAILABLE")
    # the VM is otherwise a normal VM: it has its lease and reaches its peer
    assert h.ping("v1", h.ip("v2"))
    assert h.status().in_sync()


def _refused(call: Any, **kwargs: Any) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as e:
        call(**kwargs)
    code: grpc.StatusCode = e.value.code()
    return code


def test_without_the_node_secret_nobody_subscribes_and_names_cost_nothing(
    lab: LabFactory,
) -> None:
    h = lab(TINY)
    sdir = Path(h.started.state_dir)
    target = f"unix:{sdir / 'sb.sock'}"
    secret_b = read_secret_file(node_secret_file(sdir, "b"))
    # the node's name with a wrong secret, with none, or another node's secret: refused
    for credential, code in (
        (Credential("node", new_secret(), "a"), "UNAUTHENTICATED"),
        (None, "UNAUTHENTICATED"),
        (Credential("node", secret_b, "b"), "PERMISSION_DENIED"),  # b may not act as a
    ):
        client = SouthboundClient(target, timeout=5.0, credential=credential)
        try:
            with pytest.raises(SouthboundError, match=code):
                next(iter(client.subscribe("a")))
            with pytest.raises(SouthboundError, match=code):
                client.ack("a", 1)
        finally:
            client.close()

    controller = _pid(h, "controller")
    channel = grpc.insecure_channel(wire.grpc_target(target))
    subscribe = channel.unary_stream(wire.method_path(wire.SUBSCRIBE), wire.encode, wire.decode)

    def invent(first: int, count: int) -> None:
        for n in range(first, first + count):
            name = f"invented-{n}"
            metadata = Credential("node", new_secret(), name).metadata()
            call = subscribe({"node": name}, metadata=metadata, timeout=5.0)
            assert _refused(lambda call=call: next(iter(call))) == grpc.StatusCode.UNAUTHENTICATED

    try:
        invent(0, 100)  # warm up the server's threads and buffers
        before = _rss_kb(controller)
        invent(100, INVENTED)
        after = _rss_kb(controller)
    finally:
        channel.close()
    operator = Credential("operator", read_secret_file(sdir / "operator.secret"))
    client = SouthboundClient(target, timeout=5.0, credential=operator)
    try:
        status = client.status()
    finally:
        client.close()
    assert {n["node"] for n in status["nodes"]} == {"a", "b"}
    assert status["refused_calls"] >= INVENTED + 100
    # an entry per name would be at least a few hundred bytes each; allow allocator noise
    assert after - before < 1024, f"RSS grew {after - before} kB over {INVENTED} refusals"
    st = h.wait_in_sync(10.0)
    assert all(a.connected for a in st.agents)


def _agent_connections(log: Path) -> int:
    return log.read_text().count("agent connected")


def test_the_vrouter_channel_refuses_strangers_and_keeps_its_agent(lab: LabFactory) -> None:
    h = lab(TINY)
    sdir = Path(h.started.state_dir)
    path = str(vrouter_socket(sdir, "a"))
    secret = read_secret_file(node_secret_file(sdir, "a"))
    vr_log = sdir / "vrouter-a.log"
    connections = _agent_connections(vr_log)
    acked = {a.node: a.generation_acked for a in h.status().agents}

    def hello(secret: bytes, role: str = "agent") -> int:
        """Say hello as `role`; an observer then reads and may not write. The vRouter's
        count of refused connections."""
        client = ControlClient(path, lambda _: None, timeout=5.0)
        try:
            refused: int = client.hello(secret, role)["refused"]
            assert client.request("dump")["generation"] == acked["a"]
            with pytest.raises(ControlError, match="observer may not"):
                client.request("batch", ops=[], generation=1)
            return refused
        finally:
            client.close()

    before = hello(secret, "observer")
    with pytest.raises(ControlError, match="bad node secret"):
        hello(new_secret())
    with pytest.raises(ControlError, match="network namespace"):
        hello(secret)  # the right secret from the host's namespace: not the agent
    pushns(h.vm_netns("v1"))  # a VM's namespace, holding the secret somehow
    try:
        with pytest.raises(ControlError, match="network namespace"):
            hello(secret)
    finally:
        popns()
    with pytest.raises(ControlError, match="first request must be a hello"):
        client = ControlClient(path, lambda _: None, timeout=5.0)
        try:
            client.request("batch", ops=[], generation=1)  # no hello: refused, closed
        finally:
            client.close()
    assert hello(secret, "observer") == before + 4

    # the agent was never displaced: no reconnection, its generation still acked, and a
    # new flow (whose first packet goes up to the agent) is forwarded
    assert _agent_connections(vr_log) == connections
    st = h.wait_in_sync(10.0)
    assert {a.node: a.generation_acked for a in st.agents} == acked
    assert h.ping("v1", h.ip("v2"), count=2)
    assert h.exec("v2", ["ping", "-n", "-c", "1", "-W", "2", h.ip("v1")]).returncode == 0
