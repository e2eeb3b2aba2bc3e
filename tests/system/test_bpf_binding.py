"""The libbpf binding against this kernel (root): tests/bpf/sample.c loaded, every map kind read
and written, frames run through BPF_PROG_TEST_RUN, and tcx links on a veth between two scratch
namespaces, with bpftool and ping as the independent oracles."""

import contextlib
import json
import logging
import os
import platform
import select
import signal
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from openvpc.lab import netns
from openvpc.vrouter.ebpf import objects
from openvpc.vrouter.ebpf.libbpf import (
    MAP_ARRAY,
    MAP_HASH,
    MAP_LPM_TRIE,
    MAP_LRU_HASH,
    MAP_PERCPU_ARRAY,
    BpfError,
    BpfObject,
    TcxLink,
    num_possible_cpus,
)

BPF_SOURCES = Path(__file__).resolve().parents[1] / "bpf"
TC_ACT_OK, TC_ACT_SHOT, TC_ACT_REDIRECT = 0, 2, 7
U32 = struct.Struct("=I")
U64 = struct.Struct("=Q")
SETTINGS = struct.Struct("=III")  # verdict, redirect_ifindex, swap_macs
A_IP, B_IP = "10.98.0.1", "10.98.0.2"


def u32(n: int) -> bytes:
    return U32.pack(n)


def compile_bpf(source: Path, out_dir: Path) -> Path:
    """The Makefile's `bpf` flags, so that the test objects meet the datapath's standard."""
    out = out_dir / source.name.replace(".c", ".bpf.o")
    include = f"-I/usr/include/{platform.machine()}-linux-gnu"
    cmd = ["clang", "-O2", "-g", "-target", "bpf", "-Wall", "-Werror", include]
    subprocess.run([*cmd, "-c", str(source), "-o", str(out)], check=True, timeout=60)
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("bpf")
    return {name: compile_bpf(BPF_SOURCES / f"{name}.c", out) for name in ("sample", "rejected")}


@pytest.fixture
def sample(built: dict[str, Path]) -> Iterator[BpfObject]:
    with BpfObject.open(built["sample"]) as obj:
        yield obj


def ipv4_frame(src: str, dst: str) -> bytes:
    """Ethernet + a 20-byte IPv4 header: all the sample program reads."""
    ip = bytes([0x45, 0, 0, 20, 0, 0, 0, 0, 64, 1, 0, 0])
    ip += bytes(int(b) for b in src.split(".")) + bytes(int(b) for b in dst.split("."))
    return bytes.fromhex("0200000000020200000000010800") + ip


def ip4(addr: str) -> bytes:
    return bytes(int(b) for b in addr.split("."))


def wait_for(what: str, cond: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    for _ in range(1000):
        if cond():
            return
        if time.monotonic() > deadline:
            break
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def bpftool(*args: str, ns: str | None = None) -> Any:
    prefix = ["ip", "netns", "exec", ns] if ns else []
    out = subprocess.run(
        [*prefix, "bpftool", "-j", *args], check=True, capture_output=True, text=True, timeout=30
    )
    return json.loads(out.stdout or "[]")


def link_ids() -> set[int]:
    return {int(link["id"]) for link in bpftool("link", "show")}


def prog_ids() -> set[int]:
    return {int(prog["id"]) for prog in bpftool("prog", "show")}


@dataclass(frozen=True)
class Pair:
    """A veth between two scratch namespaces: `a_if` in `a` (A_IP), `b_if` in `b` (B_IP)."""

    a: str
    b: str
    a_if: str = "bind-a"
    b_if: str = "bind-b"

    def a_ifindex(self) -> int:
        with netns.rtnl(self.a) as ipr:
            return int(ipr.link_lookup(ifname=self.a_if)[0])

    def ping_from_b(self, count: int = 3) -> bool:
        cmd = ["ip", "netns", "exec", self.b, "ping", "-c", str(count), "-i", "0.2", "-W", "1"]
        return subprocess.run([*cmd, A_IP], capture_output=True, timeout=30).returncode == 0


@pytest.fixture
def pair() -> Iterator[Pair]:
    tag = uuid.uuid4().hex[:6]
    p = Pair(f"binding-a-{tag}", f"binding-b-{tag}")
    made: list[str] = []
    try:
        for ns in (p.a, p.b):
            netns.create_netns(ns)
            made.append(ns)
        netns.add_veth(p.a, p.a_if, p.b, p.b_if, 1500)
        netns.add_address(p.a, p.a_if, f"{A_IP}/24")
        netns.add_address(p.b, p.b_if, f"{B_IP}/24")
        yield p
    finally:
        for ns in made:
            for pid in netns.pids_in_netns(ns):  # a child of ours a failed test left
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            netns.remove_netns(ns)
    assert not any(netns.netns_exists(ns) for ns in (p.a, p.b))


# -- maps -------------------------------------------------------------------------------------


def test_the_maps_have_their_declared_shapes(sample: BpfObject) -> None:
    names = [
        "sample_settings",
        "sample_seen",
        "sample_prefixes",
        "sample_verdicts",
        "sample_sources",
    ]
    maps = [sample.map(name) for name in names]
    shapes = {m.name: (m.type, m.key_size, m.value_size, m.max_entries) for m in maps}
    assert shapes == {
        "sample_settings": (MAP_ARRAY, 4, 12, 1),
        "sample_seen": (MAP_HASH, 4, 8, 64),
        "sample_prefixes": (MAP_LPM_TRIE, 8, 4, 64),
        "sample_verdicts": (MAP_PERCPU_ARRAY, 4, 4, 8),
        "sample_sources": (MAP_LRU_HASH, 4, 8, 16),
    }
    with pytest.raises(BpfError, match="sample_nope") as err:
        sample.map("sample_nope")
    assert err.value.errno == 2
    with pytest.raises(BpfError, match="nope_in"):
        sample.program("nope_in")


def test_array_map(sample: BpfObject) -> None:
    settings = sample.map("sample_settings")
    assert settings.lookup(u32(0)) == bytes(12)  # array slots always exist, zeroed
    assert settings.lookup(u32(1)) is None  # out of range reads as absent
    settings.update(u32(0), SETTINGS.pack(2, 5, 1))
    assert settings.lookup(u32(0)) == SETTINGS.pack(2, 5, 1)
    assert list(settings.keys()) == [u32(0)]
    assert list(settings.items()) == [(u32(0), SETTINGS.pack(2, 5, 1))]
    with pytest.raises(BpfError) as err:
        settings.delete(u32(0))  # array slots cannot be deleted
    assert err.value.errno == 22
    with pytest.raises(BpfError) as err:
        settings.update(u32(1), SETTINGS.pack(0, 0, 0))
    assert err.value.errno == 7  # E2BIG: beyond max_entries


def test_hash_map(sample: BpfObject) -> None:
    seen = sample.map("sample_seen")
    assert seen.lookup(u32(9)) is None
    assert seen.delete(u32(9)) is False
    assert list(seen.keys()) == [] and list(seen.items()) == []
    for i in range(1, 11):
        seen.update(u32(i), U64.pack(i * 100))
    assert seen.lookup(u32(3)) == U64.pack(300)
    assert sorted(seen.keys()) == sorted(u32(i) for i in range(1, 11))
    assert dict(seen.items()) == {u32(i): U64.pack(i * 100) for i in range(1, 11)}
    seen.update(u32(3), U64.pack(7))
    assert seen.lookup(u32(3)) == U64.pack(7)
    assert seen.delete(u32(3)) is True
    assert seen.lookup(u32(3)) is None
    assert len(list(seen.items())) == 9


def test_wrong_sizes_are_refused_with_the_map_name(sample: BpfObject) -> None:
    seen = sample.map("sample_seen")
    for bad in (b"", b"\0" * 3, b"\0" * 5):
        with pytest.raises(ValueError, match="sample_seen: key of"):
            seen.lookup(bad)
        with pytest.raises(ValueError, match="sample_seen: key of"):
            seen.update(bad, U64.pack(1))
        with pytest.raises(ValueError, match="sample_seen: key of"):
            seen.delete(bad)
    with pytest.raises(ValueError, match="sample_seen: value of 4 bytes, not 8"):
        seen.update(u32(1), u32(1))
    assert list(seen.keys()) == []


def test_lpm_trie_finds_the_longest_prefix(sample: BpfObject) -> None:
    prefixes = sample.map("sample_prefixes")
    prefixes.update(u32(8) + ip4("10.0.0.0"), u32(1))
    prefixes.update(u32(16) + ip4("10.1.0.0"), u32(2))
    assert prefixes.lookup(u32(32) + ip4("10.1.2.3")) == u32(2)
    assert prefixes.lookup(u32(32) + ip4("10.2.2.3")) == u32(1)
    assert prefixes.lookup(u32(32) + ip4("11.0.0.1")) is None
    # an LPM trie has no batch operations: items() falls back to keys + lookups
    assert dict(prefixes.items()) == {
        u32(8) + ip4("10.0.0.0"): u32(1),
        u32(16) + ip4("10.1.0.0"): u32(2),
    }
    assert prefixes.delete(u32(16) + ip4("10.1.0.0")) is True
    assert prefixes.lookup(u32(32) + ip4("10.1.2.3")) == u32(1)


def test_percpu_values_come_one_per_possible_cpu(sample: BpfObject) -> None:
    verdicts = sample.map("sample_verdicts")
    cpus = num_possible_cpus()
    assert cpus >= 1
    assert verdicts.lookup_percpu(u32(2)) == [bytes(4)] * cpus
    assert verdicts.lookup_percpu(u32(8)) is None
    verdicts.update(u32(2), u32(5))  # one value: every CPU gets it
    assert verdicts.lookup_percpu(u32(2)) == [u32(5)] * cpus
    # a whole per-CPU buffer: 4-byte values on an 8-byte stride
    verdicts.update(u32(3), b"".join(u32(100 + c) + bytes(4) for c in range(cpus)))
    assert verdicts.lookup_percpu(u32(3)) == [u32(100 + c) for c in range(cpus)]
    items = dict(verdicts.items_percpu())
    assert len(items) == 8 and items[u32(3)] == [u32(100 + c) for c in range(cpus)]
    with pytest.raises(ValueError, match="per-CPU: use lookup_percpu"):
        verdicts.lookup(u32(2))
    with pytest.raises(ValueError, match="per-CPU: use items_percpu"):
        verdicts.items()
    with pytest.raises(ValueError, match="value of 8 bytes"):
        verdicts.update(u32(2), bytes(8))


def test_lru_hash_evicts_instead_of_failing(sample: BpfObject) -> None:
    sources = sample.map("sample_sources")
    for i in range(100):
        sources.update(u32(i), U64.pack(i))
    kept = dict(sources.items())
    assert 0 < len(kept) <= 16
    assert all(value == U64.pack(U32.unpack(key)[0]) for key, value in kept.items())
    assert sources.lookup(u32(99)) == U64.pack(99)  # the newest survives


def test_max_entries_resized_before_load(built: dict[str, Path]) -> None:
    with BpfObject.open(built["sample"], max_entries={"sample_seen": 1000}) as obj:
        seen = obj.map("sample_seen")
        assert seen.max_entries == 1000
        for i in range(1000):
            seen.update(u32(i), U64.pack(i))
        with pytest.raises(BpfError) as err:
            seen.update(u32(1000), U64.pack(0))
        assert err.value.errno == 7  # E2BIG: the hash is full
        items = dict(seen.items())  # several batches of 256
        assert items == {u32(i): U64.pack(i) for i in range(1000)}
    with pytest.raises(BpfError, match="map sample_nope"):
        BpfObject.open(built["sample"], max_entries={"sample_nope": 10})


def test_a_refused_program_raises_with_the_verifier_log_in_our_log(
    built: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    refused = pytest.raises(BpfError, match="verifier: invalid access to packet")
    with caplog.at_level(logging.WARNING, logger="openvpc.vrouter.ebpf.libbpf"), refused as err:
        BpfObject.open(built["rejected"])
    assert err.value.errno == 13
    assert "BEGIN PROG LOAD LOG" in caplog.text
    assert "R1 offset is outside of the packet" in caplog.text


def test_what_is_not_an_object_is_refused_clearly(tmp_path: Path) -> None:
    with pytest.raises(BpfError, match=r"open .*absent\.bpf\.o: No such file") as err:
        BpfObject.open(tmp_path / "absent.bpf.o")
    assert err.value.errno == 2
    (tmp_path / "text.bpf.o").write_text("not ELF")
    with pytest.raises(BpfError, match=r"text\.bpf\.o: BPF object format invalid"):
        BpfObject.open(tmp_path / "text.bpf.o")


def test_closed_object_refuses_use(built: dict[str, Path]) -> None:
    obj = BpfObject.open(built["sample"])
    obj.close()
    obj.close()  # twice is harmless
    with pytest.raises(BpfError, match="closed"):
        obj.map("sample_seen")


# -- BPF_PROG_TEST_RUN ---------------------------------------------------------------------------


def test_test_run_returns_the_verdict_and_the_frame(sample: BpfObject) -> None:
    prog = sample.program("sample_in")
    frame = ipv4_frame("10.0.0.1", "10.0.0.2")
    run = prog.test_run(frame)
    assert (run.retval, run.data) == (TC_ACT_OK, frame)
    sample.map("sample_settings").update(u32(0), SETTINGS.pack(TC_ACT_SHOT, 0, 1))
    run = prog.test_run(frame, repeat=5)
    assert run.retval == TC_ACT_SHOT
    assert run.data == frame[6:12] + frame[0:6] + frame[12:]  # MACs swapped
    assert run.duration_ns >= 0
    sample.map("sample_prefixes").update(u32(24) + ip4("10.0.0.0"), u32(TC_ACT_REDIRECT))
    assert prog.test_run(frame).retval == TC_ACT_REDIRECT
    # the program counted: 1 OK, 5 SHOT, 1 REDIRECT, over the CPUs
    verdicts = sample.map("sample_verdicts")
    totals = {
        v: sum(U32.unpack(c)[0] for c in verdicts.lookup_percpu(u32(v)) or [])
        for v in (TC_ACT_OK, TC_ACT_SHOT, TC_ACT_REDIRECT)
    }
    assert totals == {TC_ACT_OK: 1, TC_ACT_SHOT: 5, TC_ACT_REDIRECT: 1}
    assert sample.map("sample_sources").lookup(ip4("10.0.0.1")) == U64.pack(7)
    with pytest.raises(ValueError, match="a frame of 13 bytes"):
        prog.test_run(frame[:13])
    with pytest.raises(BpfError, match="output over 20 bytes"):
        prog.test_run(frame, data_size_out=20)


def test_test_run_passes_the_mark(sample: BpfObject) -> None:
    prog = sample.program("sample_in")
    frame = ipv4_frame("10.0.0.1", "10.0.0.2")
    assert prog.test_run(frame, mark=TC_ACT_SHOT).retval == TC_ACT_SHOT
    assert prog.test_run(frame, mark=0).retval == TC_ACT_OK


def test_test_run_on_a_device_of_this_namespace(sample: BpfObject, pair: Pair) -> None:
    prog = sample.program("sample_in")
    ifindex = pair.a_ifindex()
    with netns.inside(pair.a):
        prog.test_run(ipv4_frame("10.0.0.1", "10.0.0.2"), ifindex=ifindex)
        with pytest.raises(BpfError) as err:
            prog.test_run(ipv4_frame("10.0.0.1", "10.0.0.2"), ifindex=ifindex + 1000)
    assert err.value.errno == 19  # ENODEV
    assert sample.map("sample_seen").lookup(u32(ifindex)) == U64.pack(1)


# -- tcx links -----------------------------------------------------------------------------------


def test_tcx_link_sees_traffic_and_close_detaches(sample: BpfObject, pair: Pair) -> None:
    prog = sample.program("sample_in")
    seen, settings = sample.map("sample_seen"), sample.map("sample_settings")
    ifindex = pair.a_ifindex()

    def packets() -> int:
        value = seen.lookup(u32(ifindex))
        return 0 if value is None else int(U64.unpack(value)[0])

    with netns.inside(pair.a):
        link = TcxLink.attach(prog, ifindex, "ingress")
    try:
        link_id = link.id
        shown = {int(x["id"]): x for x in bpftool("link", "show")}
        assert link_id in shown and int(shown[link_id]["prog_id"]) == prog.id
        assert pair.ping_from_b(3)
        assert packets() >= 3  # the echo requests (and ARP) went through the program
        settings.update(u32(0), SETTINGS.pack(TC_ACT_SHOT, 0, 0))
        before = packets()
        assert not pair.ping_from_b(2)  # its verdict is obeyed
        assert packets() >= before + 2
        settings.update(u32(0), SETTINGS.pack(TC_ACT_OK, 0, 0))
    finally:
        link.close()
    assert link_id not in link_ids()
    before = packets()
    settings.update(u32(0), SETTINGS.pack(TC_ACT_SHOT, 0, 0))
    assert pair.ping_from_b(2)  # detached: the drop verdict no longer applies
    assert packets() == before
    link.close()  # twice is harmless


def test_tcx_attach_refuses_bad_arguments(sample: BpfObject) -> None:
    prog = sample.program("sample_in")
    with pytest.raises(ValueError):
        TcxLink.attach(prog, 1, "sideways")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        TcxLink.attach(prog, 0, "ingress")
    with pytest.raises(BpfError, match="tcx ingress attach of sample_in to ifindex 999999"):
        TcxLink.attach(prog, 999999, "ingress")


CHILD = """
import sys
from pathlib import Path
from openvpc.vrouter.ebpf.libbpf import BpfObject, TcxLink
import socket
obj = BpfObject.open(Path(sys.argv[1]))
prog = obj.program("sample_in")
link = TcxLink.attach(prog, socket.if_nametoindex(sys.argv[2]), "ingress")
obj.map("sample_settings").update(bytes(4), (2).to_bytes(4, sys.byteorder) + bytes(8))
print(link.id, prog.id, flush=True)
sys.stdin.read()
"""


def test_a_killed_process_leaves_nothing_attached(built: dict[str, Path], pair: Pair) -> None:
    cmd = ["ip", "netns", "exec", pair.a, sys.executable, "-c", CHILD]
    child = subprocess.Popen(
        [*cmd, str(built["sample"]), pair.a_if],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        ready, _, _ = select.select([child.stdout], [], [], 30)
        assert ready, "the child did not attach in 30 s"
        link_id, prog_id = (int(x) for x in child.stdout.readline().split())
        assert link_id in link_ids() and prog_id in prog_ids()
        assert not pair.ping_from_b(1)  # the child's program drops everything
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=10)
    wait_for("the child's link to go", lambda: link_id not in link_ids())
    wait_for("the child's program to go", lambda: prog_id not in prog_ids())
    net = json.dumps(bpftool("net", "show", ns=pair.a))
    assert "sample_in" not in net and f'"id": {prog_id}' not in net
    assert pair.ping_from_b(1)  # nothing drops any more


def test_this_kernel_can_run_the_ebpf_datapath() -> None:
    assert objects.unsupported_reason() is None
    assert objects.ebpf_supported()
