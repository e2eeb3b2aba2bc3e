"""The vRouter process: one thread, a `selectors` loop moving frames between the real ports and
the pure pipeline, and serving the agent's control channel. Time is `time.monotonic()`.

What one readiness of a port yields (up to BATCH reads) is forwarded first and sent together:
tunnel packets of one flow leave in one GSO send, TCP segments for one TAP are coalesced.

With the eBPF datapath the programs forward and this process is their slow path: it reads
what they pass up from pkt0, runs the same pipeline on it, and writes what goes to a VM back
down pkt0 (fabric frames leave through its own sockets as ever). VMs are on veths (delivered
to with redirect_peer) or on TAPs in the node's namespace (a port with netns "", as QEMU's)."""

import contextlib
import json
import logging
import selectors
import signal
import socket
import time
import uuid
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any

from pyroute2 import netns as pyroute2_netns

from openvpc.credentials import CredentialError, read_secret_file
from openvpc.model.forwarding import AGENT_VIF, FABRIC_VIF
from openvpc.model.nodeconfig import PortConfig
from openvpc.model.vifnames import DEFAULT_DATAPATH, Datapath, node_device_name
from openvpc.packet.errors import Malformed
from openvpc.process import private_umask
from openvpc.vrouter.channel import AgentChannel, ChannelError, Peer, Refusal
from openvpc.vrouter.control import OBSERVER_OPS, ROLE_AGENT, TYPE_JSON, TYPE_PACKET
from openvpc.vrouter.drops import Drop
from openvpc.vrouter.gso import coalesce, ethernet_l3
from openvpc.vrouter.handler import ControlHandler
from openvpc.vrouter.limits import DEFAULT_LIMITS, NodeLimits
from openvpc.vrouter.neighbors import retry_pending
from openvpc.vrouter.offload import frames_from_tap, tap_super
from openvpc.vrouter.pipeline import Emit, process
from openvpc.vrouter.ports import FabricPorts, PortError, TapPort, fabric_link, node_device
from openvpc.vrouter.program import build_tables
from openvpc.vrouter.superframe import (
    SuperEmit,
    gre_payload,
    process_overlay_batch,
    process_super,
)
from openvpc.vrouter.tables import Fabric

if TYPE_CHECKING:
    from openvpc.vrouter.ebpf.datapath import EbpfDatapath

log = logging.getLogger("openvpc.vrouter")

BATCH = 64  # reads per readiness of one fd, so that no port starves the others
AGE_INTERVAL = 1.0  # seconds between flow-table aging passes
# a fold walks every fast-path flow: a large table is walked less often, at most every
# FOLD_MAX_INTERVAL seconds (the shortest idle timeout of a decided flow is DROP_TIMEOUT)
FOLD_PER_SECOND = 50_000
FOLD_MAX_INTERVAL = 4.0
INTERNAL_ERROR = "internal_error"
Callback = Callable[[int], None]
_IP_HDR = b"\x08\x00"


class Taps:
    """The open TAP of every VM vif (the `PortAttacher` of the control handler)."""

    def __init__(self, vrouter: "Vrouter") -> None:
        self.vrouter = vrouter
        self.by_vif: dict[int, TapPort] = {}

    def attach(self, port: PortConfig, apply: Callable[[], None]) -> None:
        old = self.by_vif.get(port.vif)
        if old is not None and old.fd >= 0 and (old.netns, old.ifname) == (port.netns, port.ifname):
            apply()
            return
        tap = TapPort(port.vif, port.netns, port.ifname)
        try:
            apply()
        except BaseException:
            tap.close()
            raise
        self.detach(port.vif)
        self.by_vif[port.vif] = tap
        self.vrouter.watch(tap.fd, lambda _: self.vrouter.on_tap(tap))
        log.info("vif %d: attached TAP %s in %s", port.vif, port.ifname, port.netns)

    def detach(self, vif: int) -> None:
        tap = self.by_vif.pop(vif, None)
        if tap is not None:
            self.unplug(tap)

    def unplug(self, tap: TapPort) -> None:
        """Close a TAP's fd (the TAP itself belongs to the lab)."""
        if tap.fd >= 0:
            self.vrouter.unwatch(tap.fd)
            tap.close()

    def close(self) -> None:
        for vif in list(self.by_vif):
            self.detach(vif)


class NodeDevices:
    """The node-namespace device of every VM vif (eBPF datapath; the `PortAttacher`): vif_in
    is attached while the vif's port is set, to the device its name finds now: the node end
    of the VM's veth, or with the port's netns "" the port's own device (a TAP QEMU holds)."""

    def __init__(self, fast: "EbpfDatapath") -> None:
        self.fast = fast

    def attach(self, port: PortConfig, apply: Callable[[], None]) -> None:
        name = node_device_name(port.netns, port.ifname)
        try:
            device = node_device(name)
        except PortError as e:
            raise PortError(f"{port.ifname} of {port.netns or 'the node'}: {e}") from e
        apply()
        self.fast.attach_vif(port.vif, device.ifindex, peer=device.veth)
        kind = "veth" if device.veth else "TAP"
        log.info(
            "vif %d: vif_in on %s %s (%s in %s)",
            port.vif,
            kind,
            name,
            port.ifname,
            port.netns or "the node",
        )

    def detach(self, vif: int) -> None:
        self.fast.detach_vif(vif)

    def close(self) -> None:
        for vif in list(self.fast.vif_links):
            self.detach(vif)


class Vrouter:
    """Everything one vRouter process owns; `run` until SIGTERM/SIGINT, then `close`."""

    def __init__(
        self,
        control_path: str,
        fabric_ifname: str,
        secret: bytes,
        limits: NodeLimits = DEFAULT_LIMITS,
        datapath: Datapath = DEFAULT_DATAPATH,
    ) -> None:
        link = fabric_link(fabric_ifname)
        self.stopping = False
        self.now = time.monotonic()
        self.next_fold = self.now
        self.internal_errors = 0
        self.sel = selectors.DefaultSelector()
        fabric = Fabric(FABRIC_VIF, link.ip, link.mac, link.mtu, kernel_routed=True)
        self.programmer = build_tables(fabric, [], limits=limits)
        self.tables = self.programmer.tables
        self.tables.add_underlay_route(link.network, link.prefix_len, None)
        self.boot_id = uuid.uuid4().hex
        self.taps = Taps(self)
        self._wake_r, self._wake_w = socket.socketpair()
        self.fabric: FabricPorts | None = None
        self.channel: AgentChannel | None = None
        self.fast: EbpfDatapath | None = None
        self.node_devices: NodeDevices | None = None
        try:
            if datapath == "ebpf":
                # loaded only here: the python datapath needs neither libbpf nor the object
                from openvpc.vrouter.ebpf import datapath as ebpf

                self.fast = ebpf.EbpfDatapath(link, limits.flow_capacity)
                self.node_devices = NodeDevices(self.fast)
            self.fabric = FabricPorts(link, arp_only=self.fast is not None)
            self.channel = AgentChannel(control_path, secret, on_drop=self._peer_gone)
            if self.fast is not None:
                self.fast.start(self.tables)
        except BaseException:
            self.close()
            raise
        self.handler = ControlHandler(
            self.programmer,
            self.boot_id,
            self.node_devices or self.taps,
            datapath,
            None if self.fast is None else self.fast.stats,
        )
        if self.fast is not None and self.fast.pkt0 is not None:
            self.watch(self.fast.pkt0.fd, self._on_pkt0)
        f = self.fabric
        self.watch(f.vxlan, lambda _: self._on_udp(f.vxlan, "vxlan"))
        self.watch(f.mpls, lambda _: self._on_udp(f.mpls, "mpls"))
        self.watch(f.gre, self._on_gre)
        self.watch(f.packet, self._on_packet)
        self.watch(self.channel.listener, self._on_listener)
        for s in (self._wake_r, self._wake_w):
            s.setblocking(False)
        self.watch(self._wake_r, self._on_wake)
        log.info(
            "vrouter %s (%s datapath): fabric %s %s/%d mtu %d, control %s",
            self.boot_id[:8],
            datapath,
            link.ifname,
            socket.inet_ntoa(link.ip),
            link.prefix_len,
            link.mtu,
            control_path,
        )

    # -- the selector -----------------------------------------------------------------------
    def watch(self, fileobj: socket.socket | int, callback: Callback) -> None:
        self.sel.register(fileobj, selectors.EVENT_READ, callback)

    def unwatch(self, fileobj: socket.socket | int) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(fileobj)

    def run(self) -> None:
        """Forward until `stopping` is set (by a signal: the wakeup fd ends the select)."""
        old_wakeup = signal.set_wakeup_fd(self._wake_w.fileno(), warn_on_full_buffer=False)
        try:
            next_age = time.monotonic() + AGE_INTERVAL
            while not self.stopping:
                events = self.sel.select(max(0.0, next_age - time.monotonic()))
                self.now = time.monotonic()
                for key, mask in events:
                    try:
                        key.data(mask)
                    except Exception:  # a bug must not stop forwarding: count, log, go on
                        self._internal_error()
                if self.now >= next_age:
                    if self.channel is not None:
                        self.channel.expire(self.now)
                    self._age()
                    self.send(retry_pending(self.tables))
                    next_age = self.now + AGE_INTERVAL
        finally:
            signal.set_wakeup_fd(old_wakeup)

    def _age(self) -> None:
        """An aging pass; the fast path's flow counters are folded in first, so that flows
        busy there only stay, and what aged out leaves the fast path too."""
        if self.now >= self.next_fold:
            self._fold()
            walk = len(self.tables.flows.flows) / FOLD_PER_SECOND
            self.next_fold = self.now + min(FOLD_MAX_INTERVAL, max(AGE_INTERVAL, walk))
        self.tables.expire(self.now)
        if self.fast is not None:
            self.fast.sync_flows(self.tables)

    def _fold(self) -> None:
        """Bring the fast path's counters (flows, drops, vifs) into the tables."""
        if self.fast is None:
            return
        try:
            self.fast.fold_flows(self.tables)
            self.fast.fold_counters(self.tables)
        except OSError:
            self._internal_error()

    def _on_wake(self, mask: int) -> None:
        with contextlib.suppress(BlockingIOError):
            self._wake_r.recv(4096)

    def _internal_error(self) -> None:
        self.internal_errors += 1
        self.tables.count_drop(INTERNAL_ERROR, None)
        if self.internal_errors <= 10 or self.internal_errors % 1000 == 0:
            log.exception("internal error #%d (frame dropped)", self.internal_errors)

    # -- receive ----------------------------------------------------------------------------
    def on_tap(self, tap: TapPort) -> None:
        t = self.tables
        out: list[SuperEmit] = []
        try:
            for _ in range(BATCH):
                if tap.fd < 0:
                    return
                try:
                    data = tap.read()
                except OSError as e:
                    # the TAP went away under us (the lab removed the VM): stop polling it
                    log.warning("vif %d: TAP %s unreadable (%s); closed", tap.vif, tap.ifname, e)
                    self.taps.unplug(tap)
                    return
                if not data:
                    return
                try:
                    whole = tap_super(data)
                    if whole is not None:  # a TSO super-frame: forwarded once
                        frame, mss = whole
                        out.extend(process_super(t, frame, tap.vif, mss, self.now))
                        continue
                    frames = frames_from_tap(data)
                except Malformed as e:
                    t.count_drop(e.reason, t.vifs.get(tap.vif))
                    continue
                for frame in frames:
                    out.extend((vif, f, 0) for vif, f in process(t, frame, tap.vif, self.now))
        finally:
            self.deliver(out)

    def _on_pkt0(self, mask: int) -> None:
        """What the fast path passed up: the pipeline runs on it from the vif it came in on."""
        assert self.fast is not None and self.fast.pkt0 is not None
        pkt0 = self.fast.pkt0
        t = self.tables
        out: list[SuperEmit] = []
        try:
            for _ in range(BATCH):
                try:
                    got = pkt0.read()
                except Malformed as e:
                    t.count_drop(e.reason, None)
                    continue
                if got is None:
                    return
                if got.mss:
                    out.extend(process_super(t, got.frame, got.vif, got.mss, self.now))
                else:
                    out.extend((v, f, 0) for v, f in process(t, got.frame, got.vif, self.now))
        finally:
            if t.flows.dirty:  # flows the pipeline decided: the fast path takes them over now
                self.fast.sync_flows(t)
            self.deliver(out)

    def _on_udp(self, sock: socket.socket, kind: str) -> None:
        assert self.fabric is not None
        out: list[SuperEmit] = []
        try:
            for _ in range(BATCH):
                payloads = self.fabric.recv_udp(sock)
                if payloads is None:
                    return
                out.extend(process_overlay_batch(self.tables, kind, payloads, self.now))
        finally:
            self.deliver(out)

    def _on_gre(self, mask: int) -> None:
        assert self.fabric is not None
        t = self.tables
        out: list[SuperEmit] = []
        plain: list[bytes] = []  # MPLS payloads of plain GRE packets, coalesced together
        try:
            for _ in range(BATCH):
                packet = self.fabric.recv_gre()
                if packet is None:
                    break
                payload = gre_payload(t, packet)
                if payload is not None:
                    plain.append(payload)
                    continue
                if plain:
                    out.extend(process_overlay_batch(t, "mpls", plain, self.now))
                    plain = []
                # the raw socket hands over the outer IPv4 packet: frame it as the link did
                frame = t.fabric.mac + t.fabric.mac + _IP_HDR + packet
                out.extend((v, f, 0) for v, f in process(t, frame, FABRIC_VIF, self.now))
            if plain:
                out.extend(process_overlay_batch(t, "mpls", plain, self.now))
        finally:
            self.deliver(out, gro=True)

    def _on_packet(self, mask: int) -> None:
        assert self.fabric is not None
        t = self.tables
        out: list[SuperEmit] = []
        try:
            for _ in range(BATCH):
                try:
                    got = self.fabric.recv_frame()
                except Malformed as e:
                    t.count_drop(e.reason, t.vifs.get(FABRIC_VIF))
                    continue
                if got is None:
                    return
                frame, mss = got
                if mss:
                    out.extend(process_super(t, frame, FABRIC_VIF, mss, self.now))
                elif frame:
                    out.extend((v, f, 0) for v, f in process(t, frame, FABRIC_VIF, self.now))
        finally:
            self.deliver(out, gro=True)

    # -- send -------------------------------------------------------------------------------
    def send(self, emits: list[Emit]) -> None:
        self.deliver([(vif, data, 0) for vif, data in emits])

    def deliver(self, emits: list[SuperEmit], gro: bool = False) -> None:
        """Send what the pipeline emitted: plain fabric frames together (GSO runs), with `gro`
        the TCP segments for each TAP coalesced into super-frames."""
        fabric: list[bytes] = []
        taps: dict[int, list[bytes]] = {}
        for vif, data, mss in emits:
            if vif == AGENT_VIF:
                self._punt(data)
            elif vif == FABRIC_VIF and not mss:
                fabric.append(data)
            elif vif == FABRIC_VIF:
                self._flush_fabric(fabric)  # keep the order on the wire
                self._out(vif, data, mss)
            elif gro and not mss:
                taps.setdefault(vif, []).append(data)
            else:
                if vif in taps:
                    self._flush_tap(vif, taps.pop(vif))  # keep the order into the VM
                self._out(vif, data, mss)
        self._flush_fabric(fabric)
        for vif, frames in taps.items():
            self._flush_tap(vif, frames)

    def _flush_fabric(self, frames: list[bytes]) -> None:
        if not frames:
            return
        assert self.fabric is not None
        failed = (
            self.fabric.send_batch(frames) if len(frames) > 1 else not self.fabric.send(frames[0])
        )
        for _ in range(failed):
            self.tables.count_drop(Drop.TX_FAILED, self.tables.vifs.get(FABRIC_VIF))
        frames.clear()

    def _flush_tap(self, vif: int, frames: list[bytes]) -> None:
        if len(frames) == 1:
            self._out(vif, frames[0], 0)
            return
        for group in coalesce(frames, ethernet_l3):
            self._out(vif, group.data, group.mss)

    def _out(self, vif: int, data: bytes, mss: int) -> None:
        if vif == FABRIC_VIF:
            assert self.fabric is not None
            ok = self.fabric.send(data, mss)
        elif self.fast is not None:
            pkt0 = self.fast.pkt0
            ok = pkt0 is not None and pkt0.write(vif, data, mss)
        else:
            tap = self.taps.by_vif.get(vif)
            ok = tap is not None and tap.fd >= 0 and tap.write(data, mss)
        if not ok:
            self.tables.count_drop(Drop.TX_FAILED, self.tables.vifs.get(vif))

    def _punt(self, data: bytes) -> None:
        assert self.channel is not None
        agent = self.tables.vifs.get(AGENT_VIF)
        if not self.channel.connected:
            self.tables.count_drop(Drop.AGENT_DISCONNECTED, agent)
        elif not self.channel.send(TYPE_PACKET, data):
            self.tables.count_drop(Drop.AGENT_BACKLOG, agent)
        self._agent_interest()

    # -- the agent and observers -------------------------------------------------------------
    def _on_listener(self, mask: int) -> None:
        assert self.channel is not None
        peer = self.channel.accept(self.now)
        if peer is not None:
            peer.mask = selectors.EVENT_READ
            self.sel.register(peer.sock, peer.mask, lambda m: self._on_peer(peer, m))

    def _peer_gone(self, peer: Peer) -> None:
        self.unwatch(peer.sock)
        if peer.role is not None:
            log.info("%s disconnected", peer.role)

    def _agent_interest(self) -> None:
        channel = self.channel
        if channel is not None and channel.agent is not None:
            self._interest(channel.agent)

    def _interest(self, peer: Peer) -> None:
        """Wait for writability only while replies or punts are queued."""
        if self.channel is None or peer not in self.channel.peers:
            return
        mask = selectors.EVENT_READ | (selectors.EVENT_WRITE if peer.out else 0)
        if mask != peer.mask:
            self.sel.modify(peer.sock, mask, lambda m: self._on_peer(peer, m))
            peer.mask = mask

    def _on_peer(self, peer: Peer, mask: int) -> None:
        channel = self.channel
        assert channel is not None
        if mask & selectors.EVENT_WRITE:
            channel.flush(peer)
        if mask & selectors.EVENT_READ and peer in channel.peers:
            frames = channel.read(peer)
            if frames is None:
                channel.drop(peer)
                return
            for kind, body in frames:
                if peer not in channel.peers:
                    return  # refused, or replaced by a newer agent
                if kind == TYPE_JSON:
                    self._request(peer, body)
                elif kind == TYPE_PACKET and peer.role == ROLE_AGENT:
                    self.send(process(self.tables, body, AGENT_VIF, self.now))
                elif peer.role is None:
                    channel.drop(peer)  # no hello yet: nothing else is heard
                    return
                else:
                    self.tables.count_drop(Drop.FROM_AGENT_INVALID, None)
        self._interest(peer)

    def _request(self, peer: Peer, body: bytes) -> None:
        """Answer one request of `peer`; a connection's first must be an accepted hello."""
        assert self.channel is not None
        emits: list[Emit] = []
        try:
            request = json.loads(body)
        except ValueError:
            request = None
        rid = request.get("id") if isinstance(request, dict) else None
        op = request.get("op") if isinstance(request, dict) else None
        reply: dict[str, Any]
        if peer.role is None:
            try:
                role = self.channel.hello(peer, request)
            except Refusal as e:
                reply = {"id": rid, "ok": False, "error": f"refused: {e}"}
                self.channel.send_to(peer, TYPE_JSON, _encode(reply))
                self.channel.drop(peer)
                return
            log.info("%s connected (pid %d)", role, peer.pid)
            reply, _ = self.handler.handle({"id": rid, "op": "hello"}, self.now)
        elif request is None:
            reply = {"id": None, "ok": False, "error": "request is not JSON"}
        elif peer.role != ROLE_AGENT and op not in OBSERVER_OPS:
            reply = {"id": rid, "ok": False, "error": f"an observer may not {str(op)[:32]}"}
        else:
            if self.fast is not None and op in ("flows", "show", "stats"):
                self._fold()  # what the fast path counted since the last aging pass shows
            reply, emits = self.handler.handle(request, self.now)
            if not reply["ok"]:
                log.warning("request refused: %s", reply["error"])
            if self.fast is not None and op == "batch":
                self.fast.sync(self.tables)  # a refused batch may have applied some ops
            elif self.fast is not None and op == "flow":
                self.fast.sync_flows(self.tables)  # a verdict changes flows only
        if op == "hello" and reply["ok"]:
            # who we think the caller is, and how many strangers were turned away
            extra = {"role": peer.role, "refused": self.channel.refused}
            reply = {**reply, "result": {**reply["result"], **extra}}
        self.channel.send_to(peer, TYPE_JSON, _encode(reply))
        self.send(emits)

    # -- shutdown ----------------------------------------------------------------------------
    def close(self) -> None:
        self.taps.close()
        if self.node_devices is not None:
            self.node_devices.close()
        if self.fast is not None:
            self.fast.close()
        if self.channel is not None:
            self.channel.close()
        if self.fabric is not None:
            self.fabric.close()
        self._wake_r.close()
        self._wake_w.close()
        self.sel.close()


def _encode(reply: dict[str, Any]) -> bytes:
    return json.dumps(reply, separators=(",", ":")).encode()


def serve(
    control: str,
    fabric: str,
    secret_file: str,
    netns: str | None = None,
    limits: NodeLimits = DEFAULT_LIMITS,
    datapath: Datapath = DEFAULT_DATAPATH,
) -> int:
    """The `openvpc vrouter` command: 0 after a clean stop, 1 when the setup fails."""
    vrouter: Vrouter | None = None
    stop_early = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stop_early
        log.info("signal %d: stopping", signum)
        stop_early = True
        if vrouter is not None:
            vrouter.stopping = True

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    private_umask()
    try:
        secret = read_secret_file(secret_file)
        if netns is not None:
            try:
                pyroute2_netns.setns(netns, flags=0)
            except OSError as e:
                raise PortError(f"cannot enter network namespace {netns!r}: {e}") from e
        vrouter = Vrouter(control, fabric, secret, limits, datapath)
    except (ChannelError, CredentialError, OSError) as e:
        log.error("vrouter: %s", e)
        return 1
    vrouter.stopping = stop_early
    try:
        vrouter.run()
    finally:
        vrouter.close()
    log.info("vrouter stopped")
    return 0
