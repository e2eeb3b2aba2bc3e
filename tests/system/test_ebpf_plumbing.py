"""The eBPF datapath's plumbing on real devices: a VM's veth pair as the agent's plug makes it
(node side in the node's namespace, named by vifnames), and pkt0 (framing both ways through
the kernel, gone with its fd, also after kill -9)."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest

from openvpc.agent.vm_plan import Tap, VmSpec
from openvpc.agent.vms import NetnsPlug
from openvpc.lab import netns
from openvpc.lab.netns import NODE_SIDE_MTU
from openvpc.model.vifnames import node_side_name
from openvpc.vrouter.ebpf.layout import SlowReason
from openvpc.vrouter.ebpf.slowhdr import SlowFrame, slow_hdr
from openvpc.vrouter.ports import FABRIC_ARP_FILTER, PKT0, PKT0_MTU, Pkt0Port, attach_filter

FRAME = bytes.fromhex("020000000002020000000001") + b"\x08\x00" + b"\x45" + bytes(40)
ETH_P_ALL = 3


@pytest.fixture
def node_ns() -> Iterator[str]:
    """A scratch 'node' namespace, removed with all it holds."""
    name = f"integ-n-{uuid.uuid4().hex[:6]}"
    netns.create_netns(name)
    try:
        yield name
    finally:
        netns.remove_netns(name)


def _link(ns: str | None, ifname: str) -> dict[str, object] | None:
    with netns.rtnl(ns) as ipr:
        found = ipr.link_lookup(ifname=ifname)
        if not found:
            return None
        link = ipr.get_links(found[0])[0]
        kind = link.get_attr("IFLA_LINKINFO").get_attr("IFLA_INFO_KIND")
        return {
            "mtu": link.get_attr("IFLA_MTU"),
            "mac": link.get_attr("IFLA_ADDRESS"),
            "up": bool(link["flags"] & 1),
            "kind": kind,
        }


def test_the_plug_makes_and_removes_a_vm_veth(node_ns: str) -> None:
    vm_ns = f"integ-v-{uuid.uuid4().hex[:6]}"
    eth0 = Tap("eth0", "02:00:00:00:0a:01", "eni-1", veth=True, mtu=1450)
    eth1 = Tap("eth1", "02:00:00:00:0a:02", "eni-2", veth=True, mtu=1450)
    plug = NetnsPlug()
    vm = VmSpec(vm_ns, (eth0, eth1))
    try:
        with netns.inside(node_ns):
            plug.plug(vm, None)
            assert _link(vm_ns, "eth0") == {
                "mtu": 1450,
                "mac": "02:00:00:00:0a:01",
                "up": True,
                "kind": "veth",
            }
            side = node_side_name(vm_ns, "eth0")
            found = _link(None, side)
            # the node side takes what the VM sends beyond its MTU (ICMP frag-needed)
            assert found is not None and (found["mtu"], found["up"], found["kind"]) == (
                NODE_SIDE_MTU,
                True,
                "veth",
            )
            # a removed interface takes its node side along
            plug.plug(VmSpec(vm_ns, (eth0,)), vm)
            assert _link(None, node_side_name(vm_ns, "eth1")) is None
            assert _link(None, side) is not None
            plug.unplug(VmSpec(vm_ns, (eth0,)))
            assert _link(None, side) is None
            assert not netns.netns_exists(vm_ns)
    finally:
        if netns.netns_exists(vm_ns):
            plug.unplug(vm)


def _packet_socket(ifname: str) -> socket.socket:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind((ifname, ETH_P_ALL))
    sock.settimeout(5.0)
    return sock


def test_pkt0_frames_both_ways_and_it_goes_with_its_fd(node_ns: str) -> None:
    with netns.inside(node_ns):
        pkt0 = Pkt0Port()
        try:
            found = _link(None, PKT0)
            assert found is not None and (found["mtu"], found["up"], found["kind"]) == (
                PKT0_MTU,
                True,
                "tun",
            )
            with _packet_socket(PKT0) as sock:
                # down: what we write arrives on pkt0's ingress (where slow_in will sit)
                assert pkt0.write(9, FRAME)
                deadline = time.monotonic() + 5
                while True:
                    data, addr = sock.recvfrom(65535)
                    if addr[2] != socket.PACKET_OUTGOING and data[12:14] == b"\x88\xb5":
                        break
                    assert time.monotonic() < deadline
                assert data == slow_hdr(9) + FRAME
                # up: what leaves pkt0's egress (where the programs redirect) is ours to read
                sock.send(slow_hdr(4, SlowReason.ARP) + FRAME)
                got = None
                for _ in range(500):
                    got = pkt0.read()
                    if got is not None:
                        break
                    time.sleep(0.01)
                assert got == SlowFrame(4, SlowReason.ARP, FRAME)
        finally:
            pkt0.close()
        assert _link(None, PKT0) is None


def test_pkt0_vanishes_when_its_process_is_killed(node_ns: str) -> None:
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from openvpc.lab import netns; from openvpc.vrouter.ports import "
            "Pkt0Port\nwith netns.inside(sys.argv[1]):\n p = Pkt0Port()\n"
            "print('ready', flush=True)\nsys.stdin.read()",
            node_ns,
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == b"ready\n"
        assert _link(node_ns, PKT0) is not None
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        deadline = time.monotonic() + 5
        while _link(node_ns, PKT0) is not None:
            assert time.monotonic() < deadline, "pkt0 outlived its process"
            time.sleep(0.05)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)


def test_the_ebpf_fabric_socket_takes_untagged_arp_only(node_ns: str) -> None:
    arp = bytes(6 * [0xFF]) + bytes.fromhex("020000000001") + b"\x08\x06" + bytes(28)
    ipv4 = FRAME
    tagged = arp[:12] + b"\x81\x00\x00\x64" + arp[12:]
    with netns.rtnl(node_ns) as ipr:
        ipr.link("add", ifname="p0", kind="veth", peer={"ifname": "p1"})
        for name in ("p0", "p1"):
            ipr.link("set", index=ipr.link_lookup(ifname=name)[0], state="up")
    with netns.inside(node_ns):
        rx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        try:
            attach_filter(rx, FABRIC_ARP_FILTER)
            rx.bind(("p1", ETH_P_ALL))
            rx.settimeout(2.0)
            with _packet_socket("p0") as tx:
                for frame in (tagged, ipv4, arp):
                    tx.send(frame)
            got = [rx.recv(2048)]
            rx.settimeout(0.3)
            with contextlib.suppress(TimeoutError):
                got.append(rx.recv(2048))
        finally:
            rx.close()
    # the tagged ARP and the IPv4 frame sent first never came: the fast path's to handle
    assert [g[:42] for g in got] == [arp]
