"""A hostile VM against its node's vRouter (issue 7, points 1 and 2), with real processes.

One node hosts two tenants. The flooding tenant's VM writes raw frames with a new 5-tuple each
on its interface as fast as it can, until its VRF's flow quota refuses more; the other tenant's
VM keeps opening TCP connections and must barely notice. Then TCP super-frames with absurd
segment sizes and counts, written with a virtio_net_hdr from inside the VM: the vRouter reads
them as GSO frames and drops and counts each without cutting it, so nothing comes out anywhere.
"""

import os
import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest
from conftest import LabFactory, LabHandle, vrouter_stats

from openvpc.lab import nsexec

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")

NODE = "n1"
PORT = 7000
FLOOD_SECONDS = 20
TOPOLOGY: dict[str, Any] = {
    "underlay": "l3",
    "nodes": [NODE],
    "tenants": [
        {
            "name": tenant,
            "vpcs": [
                {
                    "name": "prod",
                    "cidr": "10.0.0.0/16",
                    "subnets": [{"name": "web", "cidr": "10.0.1.0/24"}],
                    "vms": [
                        {"name": f"{tenant[0]}1", "subnet": "web", "node": NODE},
                        {"name": f"{tenant[0]}2", "subnet": "web", "node": NODE},
                    ],
                }
            ],
        }
        for tenant in ("flood", "calm")
    ],
}

# the VM side of the attacks: stdlib only, run by the VM's own python3
_SOCKET = r"""
import fcntl, socket, struct, sys, time
mac = bytes.fromhex(open("/sys/class/net/eth0/address").read().strip().replace(":", ""))
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
src = fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", b"eth0"))[20:24]  # SIOCGIFADDR
dst = socket.inet_aton(sys.argv[1])
def csum(b):
    t = sum(struct.unpack(f"!{len(b) // 2}H", b))
    while t >> 16:
        t = (t & 0xFFFF) + (t >> 16)
    return t
def ipv4(proto, length, flags):
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, length, 1, flags, 64, proto, 0, src, dst))
    struct.pack_into("!H", ip, 10, ~csum(bytes(ip)) & 0xFFFF)
    return bytes(ip)
ether = b"\x00\x00\x5e\x00\x01\x00" + mac + b"\x08\x00"  # to the vRouter's gateway MAC
"""
FLOOD = (
    _SOCKET
    + r"""
seconds = float(sys.argv[2])
s.bind(("eth0", 0))
s.setblocking(False)
head = ether + ipv4(17, 20 + 8 + 4, 0)
sent = full = 0
end = time.monotonic() + seconds
rounds = 0
while time.monotonic() < end:
    rounds += 1
    for port in range(1024, 65536, 2):  # a new 5-tuple every frame; UDP checksum 0 is none
        udp = struct.pack("!HHHH", port, rounds, 12, 0)
        try:
            s.send(head + udp + b"boom")
            sent += 1
        except BlockingIOError:
            full += 1
        if sent == 1000:
            print("flooding", flush=True)
        if not port & 2047 and time.monotonic() >= end:
            break
print("sent", sent, "full", full, flush=True)
"""
)
INJECT = (
    _SOCKET
    + r"""
gso_size, size, count = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
s.setsockopt(263, 15, 1)  # SOL_PACKET, PACKET_VNET_HDR: a virtio_net_hdr before each frame
s.bind(("eth0", 0))
pseudo = csum(src + dst + struct.pack("!HH", 6, 20 + size))  # the partial checksum TSO leaves
tcp = struct.pack("!HHIIBBHHH", 40000, 5201, 1, 1, 5 << 4, 0x10, 65535, pseudo, 0)
frame = ether + ipv4(6, 40 + size, 0x4000) + tcp + bytes(size)
# flags NEEDS_CSUM, gso_type TCPV4, hdr_len, gso_size, csum_start, csum_offset (host order)
hdr = struct.pack("=BBHHHH", 1, 1, 54, gso_size, 34, 16)
for _ in range(count):
    s.send(hdr + frame)
print("sent", count, flush=True)
"""
)
SERVER = r"""
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(128)
s.settimeout(float(sys.argv[2]))
print("ready", flush=True)
n = 0
try:
    while True:
        c, _ = s.accept()
        c.close()
        n += 1
except socket.timeout:
    pass
print("accepted", n, flush=True)
"""
CLIENT = r"""
import socket, sys, time
dst, port, seconds, most = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
ok = failed = 0
end = time.monotonic() + seconds
while time.monotonic() < end and ok + failed < most:
    try:
        socket.create_connection((dst, port), timeout=3).close()
        ok += 1
    except OSError:
        failed += 1
    time.sleep(0.05)  # pacing: about 20 new connections a second
print(ok, failed, flush=True)
"""
FAIRNESS_DROPS = ("flow_hold_limit", "punt_rate_limited", "flow_vrf_quota_exceeded")


def delta(before: dict[str, Any], after: dict[str, Any], reason: str) -> int:
    return int(after["drops"].get(reason, 0)) - int(before["drops"].get(reason, 0))


def settled_stats(
    h: LabHandle, node: str, done: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """The vRouter's counters once `done` holds of them (frames a VM wrote are counted when
    the vRouter has read them, a little after the writer returned), or the last ones read
    after a bounded wait, for the caller's assertions to show."""
    deadline = time.monotonic() + 10.0
    while True:
        stats = vrouter_stats(h, node)
        if done(stats) or time.monotonic() > deadline:
            return stats
        time.sleep(0.05)


def vif_of(stats: dict[str, Any], name: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [v for v in stats["vifs"].values() if v["name"] == name]
    assert len(found) == 1, f"vif {name}: {found}"
    return found[0]


def popen(h: LabHandle, vm: str, argv: list[str]) -> "subprocess.Popen[str]":
    return nsexec.popen(
        h.vm_netns(vm), argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def first_line(proc: "subprocess.Popen[str]", want: str) -> None:
    """Wait for the process to say `want` (or fail with what it said if it ended)."""
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith(want):
        proc.kill()
        rest = proc.communicate(timeout=10)[0]
        raise AssertionError(f"expected {want!r}, got {line + rest!r}")


def finish(proc: "subprocess.Popen[str]", timeout: float) -> str:
    try:
        return proc.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate(timeout=10)
        raise


def test_a_vm_flooding_new_flows_does_not_starve_another_tenant(lab: LabFactory) -> None:
    h = lab(TOPOLOGY)
    server = popen(h, "c2", ["python3", "-c", SERVER, str(PORT), str(FLOOD_SECONDS + 30)])
    flooder: subprocess.Popen[str] | None = None
    try:
        first_line(server, "ready")
        before = vrouter_stats(h, NODE)
        flooder = popen(h, "f1", ["python3", "-c", FLOOD, h.ip("f2"), str(FLOOD_SECONDS)])
        first_line(flooder, "flooding")
        # the other tenant's VM opens connections for as long as the flood lasts
        argv = ["python3", "-c", CLIENT, h.ip("c2"), str(PORT), str(FLOOD_SECONDS - 3), "400"]
        done = h.exec("c1", argv, timeout=FLOOD_SECONDS + 30)
        assert done.returncode == 0, done.stdout + done.stderr
        ok, failed = map(int, done.stdout.split())
        flood_out = finish(flooder, FLOOD_SECONDS + 30)
        after = vrouter_stats(h, NODE)
    finally:
        for proc in (server, flooder):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=10)
    assert failed <= 0.05 * (ok + failed), f"{failed} of {ok + failed} connections failed"
    assert ok >= 10, f"the client hardly ran: {ok} connections"
    assert flood_out.startswith("sent")
    # the flooder's first packets were refused under the fairness reasons, on its own vif
    fair = {r: delta(before, after, r) for r in FAIRNESS_DROPS}
    flooder_drops = vif_of(after, "f1")["drops"] - vif_of(before, "f1")["drops"]
    assert sum(fair.values()) >= 1000, fair
    assert flooder_drops >= sum(fair.values()), (flooder_drops, fair)
    # and its flows stayed within its VRF's share of the table
    flows = after["flows"]
    assert max(flows["per_vrf"].values()) <= flows["vrf_quota"]


# gso_size 1, 8 and 64 (below the minimum MSS), and 600 over 60 KB: 101 segments, more than
# a frame from a VM of MTU 1450 may make
ABSURD = [(1, "gso_size_invalid"), (8, "gso_size_invalid"), (64, "gso_size_invalid"),
          (600, "gso_too_many_segments")]  # fmt: skip
SIZE = 60_000
REPEAT = 3


def test_tso_frames_with_absurd_segmentation_are_dropped_uncut(lab: LabFactory) -> None:
    h = lab(TOPOLOGY)
    target = h.ip("f2")
    # f1's own IPv6 chatter (router solicitations, MLD) would add to its vif's counts
    h.exec("f1", ["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"])
    want: dict[str, int] = {}
    for _, reason in ABSURD:
        want[reason] = want.get(reason, 0) + REPEAT
    before = vrouter_stats(h, NODE)
    for gso_size, _ in ABSURD:
        argv = ["python3", "-c", INJECT, target, str(gso_size), str(SIZE), str(REPEAT)]
        done = h.exec("f1", argv)
        assert done.returncode == 0 and done.stdout.startswith("sent"), done.stdout + done.stderr
    # every frame counted under its reason: only then may "nothing came out" be checked
    after = settled_stats(h, NODE, lambda s: all(delta(before, s, r) >= n for r, n in want.items()))
    assert {r: delta(before, after, r) for r in want} == want
    # nothing was cut or sent: not to the target, not to the fabric, not to the agent
    for name in ("f2", "fabric", "agent"):
        assert vif_of(after, name)["tx_packets"] == vif_of(before, name)["tx_packets"], name
    assert vif_of(after, "f1")["drops"] - vif_of(before, "f1")["drops"] >= sum(want.values())
    # the same path with a sane segment size: read as one GSO frame of 43 segments
    argv = ["python3", "-c", INJECT, target, "1398", str(SIZE), "1"]
    assert h.exec("f1", argv).returncode == 0
    segments = -(-SIZE // 1398)

    def read(stats: dict[str, Any]) -> int:
        return int(vif_of(stats, "f1")["rx_packets"] - vif_of(after, "f1")["rx_packets"])

    sane = settled_stats(h, NODE, lambda s: read(s) >= segments)
    assert {r: delta(after, sane, r) for r in want} == dict.fromkeys(want, 0)
    assert read(sane) == segments
