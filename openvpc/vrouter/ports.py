"""The vRouter's real ports: VM TAPs (opened inside their namespace, with vnet headers and TSO),
pkt0 (the eBPF fast path's TAP to this process), and the fabric: UDP sockets for VXLAN and
MPLSoUDP (with GRO), raw IP for GRE and for sending, UDP GSO for runs of tunnel packets,
AF_PACKET with vnet headers for 802.1Q frames (TSO super-frames whole) and ARP. Non-blocking;
reads return None when nothing is waiting."""

import contextlib
import ctypes
import fcntl
import ipaddress
import os
import socket
import struct
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass

from pyroute2 import IPRoute, NetlinkError
from pyroute2 import netns as pyroute2_netns

from openvpc.packet.errors import Malformed
from openvpc.packet.ethernet import ETH_P_8021Q, VLAN_LEN, mac_from_str
from openvpc.vrouter.ebpf.slowhdr import SlowFrame, from_pkt0, to_pkt0
from openvpc.vrouter.offload import (
    F_NEEDS_CSUM,
    GSO_ECN,
    GSO_NONE,
    GSO_TCPV4,
    NO_VNET_HDR,
    TO_TAP_HDR,
    VNET_HDR_LEN,
    complete_checksum,
    parse_vnet_hdr,
    super_vnet_hdr,
)

# <linux/if_tun.h>
TUNSETIFF = 0x400454CA
TUNSETOFFLOAD = 0x400454D0
TUNSETVNETHDRSZ = 0x400454D8
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
TUN_F_CSUM = 0x01
TUN_F_TSO4 = 0x02
TAP_READ_SIZE = VNET_HDR_LEN + 65536 + 18  # a 64 KB TSO super-frame with its headers

# <linux/if_packet.h>
SOL_PACKET = 263
PACKET_AUXDATA = 8
PACKET_VNET_HDR = 15
PACKET_OUTGOING = 4
TP_STATUS_VLAN_VALID = 0x10
TP_STATUS_VLAN_TPID_VALID = 0x40
AUXDATA = struct.Struct("=IIIHHHH")  # status, len, snaplen, mac, net, vlan_tci, vlan_tpid
ETH_P_ALL = 0x0003
SO_ATTACH_FILTER = 26
SO_SNDBUFFORCE = 32
SO_RCVBUFFORCE = 33

UDP_PORT_VXLAN = 4789
UDP_PORT_MPLS = 6635
IPPROTO_GRE = 47
SOCKET_BUFFER = 4 << 20
FRAME_READ_SIZE = 65536
PACKET_READ_SIZE = VNET_HDR_LEN + 65536 + 18  # a TSO super-frame with its tag and header

# <linux/udp.h>: segmentation offload on send, coalesced datagrams on receive
SOL_UDP = 17
UDP_SEGMENT = 103
UDP_GRO = 104
GSO_MAX_SEGMENTS = 64  # the kernel takes up to 64 (older) or 128 segments per send
GSO_MAX_PAYLOAD = 65507 - 8  # UDP payload of one send: an IPv4 datagram's worth
GSO_SOCKETS = 256  # per-source-port sockets kept for GSO sends (least recently used go)
GSO_SEND_BUFFER = 1 << 20
_OUTER = 14 + 20 + 8  # Ethernet, IPv4 without options and UDP before a tunnel payload
_GSO_SIZE = struct.Struct("=H")
_GRO_SIZE = struct.Struct("=i")
_IPV4_PLAIN = b"\x08\x00\x45"  # IPv4 ethertype, version 4 with a 20-byte header


class PortError(OSError):
    """A port could not be opened: a missing namespace or TAP, or a refused ioctl."""


# -- TAPs ----------------------------------------------------------------------------------
@contextlib.contextmanager
def _in_netns(name: str) -> Iterator[None]:
    """Run the body in network namespace `name`, then come back (this thread only)."""
    own = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        try:
            pyroute2_netns.setns(name, flags=0)
        except OSError as e:
            raise PortError(f"cannot enter network namespace {name!r}: {e}") from e
        try:
            yield
        finally:
            pyroute2_netns.setns(own, flags=0)
    finally:
        os.close(own)


class TapPort:
    """A persistent TAP of the lab, attached with IFF_VNET_HDR and CSUM|TSO4 offloads; in
    `netns`, or with netns "" in this process's own namespace."""

    def __init__(self, vif: int, netns: str, ifname: str) -> None:
        self.vif = vif
        self.netns = netns
        self.ifname = ifname
        self.fd = self._open()

    def _open(self) -> int:
        if not 0 < len(self.ifname.encode()) < 16:
            raise PortError(f"bad interface name {self.ifname!r}")
        with _in_netns(self.netns) if self.netns else contextlib.nullcontext():
            # TUNSETIFF would create a TAP that does not exist: only attach to the lab's own
            try:
                socket.if_nametoindex(self.ifname)
            except OSError as e:
                raise PortError(f"no interface {self.ifname!r} in {self.netns!r}") from e
            fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
            try:
                flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR
                fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", self.ifname.encode(), flags))
                fcntl.ioctl(fd, TUNSETVNETHDRSZ, struct.pack("i", VNET_HDR_LEN))
                fcntl.ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4)
            except OSError as e:
                os.close(fd)
                raise PortError(f"cannot attach TAP {self.ifname!r} in {self.netns!r}: {e}") from e
        return fd

    def read(self) -> bytes | None:
        """One vnet header + frame, or None when nothing is waiting."""
        try:
            return os.read(self.fd, TAP_READ_SIZE)
        except BlockingIOError:
            return None

    def write(self, frame: bytes, mss: int = 0) -> bool:
        """Write a frame, or with `mss` a TCP super-frame the VM's kernel takes whole."""
        try:
            hdr = super_vnet_hdr(frame, mss) if mss else TO_TAP_HDR
            os.writev(self.fd, (hdr, frame))
        except (OSError, Malformed):
            return False  # the VM is down (EIO) or its queue is full
        return True

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


# -- a VM's device in the node's namespace (eBPF datapath) ---------------------------------
@dataclass(frozen=True, slots=True)
class NodeDevice:
    """The device vif_in sits on: a veth's node end (delivered to with bpf_redirect_peer,
    straight into the VM's namespace) or a TAP (to its egress, which its fd holder reads)."""

    ifindex: int
    veth: bool


def node_device(ifname: str) -> NodeDevice:
    """`ifname` in this namespace, by the kind the kernel says it is; PortError when it is
    missing or is neither a veth nor a TAP (a TUN has no Ethernet to deliver)."""
    with IPRoute() as ipr:
        try:
            found = ipr.link_lookup(ifname=ifname)
            links = ipr.get_links(found[0]) if found else []
        except NetlinkError as e:
            raise PortError(f"cannot look up {ifname}: {e}") from e
    if not links:
        raise PortError(f"no device {ifname}")
    info = links[0].get_attr("IFLA_LINKINFO")
    kind = None if info is None else info.get_attr("IFLA_INFO_KIND")
    data = None if info is None else info.get_attr("IFLA_INFO_DATA")
    if kind == "veth":
        return NodeDevice(int(links[0]["index"]), True)
    if kind == "tun" and data is not None and data.get_attr("IFLA_TUN_TYPE") == IFF_TAP:
        return NodeDevice(int(links[0]["index"]), False)
    raise PortError(f"{ifname} is a {kind or 'device'} device, not a veth or a TAP")


# -- pkt0 -----------------------------------------------------------------------------------
PKT0 = "pkt0"
PKT0_MTU = 65535 - 14  # a TAP's largest (64 KB less its Ethernet header)


class Pkt0Port:
    """pkt0: a TAP this process creates in its namespace (not persistent: it vanishes with our
    fd, so with us), up, with vnet headers and CSUM|TSO4 offloads so that super-frames cross
    it whole. The fast path redirects what it passes up to its egress; what we write is
    received on its ingress, where `slow_in` takes it."""

    def __init__(self, ifname: str = PKT0) -> None:
        self.ifname = ifname
        with IPRoute() as ipr:
            if ipr.link_lookup(ifname=ifname):
                raise PortError(f"{ifname} exists already: another vRouter in this namespace?")
        self.fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR
            fcntl.ioctl(self.fd, TUNSETIFF, struct.pack("16sH", ifname.encode(), flags))
            fcntl.ioctl(self.fd, TUNSETVNETHDRSZ, struct.pack("i", VNET_HDR_LEN))
            fcntl.ioctl(self.fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4)
            # the kernel's own IPv6 chatter would only be frames without a slow_hdr
            with (
                contextlib.suppress(OSError),
                open(f"/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6", "w") as f,
            ):
                f.write("1")
            with IPRoute() as ipr:
                self.ifindex = int(ipr.link_lookup(ifname=ifname)[0])
                ipr.link("set", index=self.ifindex, mtu=PKT0_MTU, state="up")
        except (OSError, IndexError, NetlinkError) as e:
            self.close()
            raise PortError(f"cannot make {ifname}: {e}") from e

    def read(self) -> SlowFrame | None:
        """The next frame the fast path sent up, or None when nothing is waiting; Malformed
        for one without a usable header."""
        try:
            data = os.read(self.fd, TAP_READ_SIZE + 64)
        except BlockingIOError:
            return None
        return from_pkt0(data)

    def write(self, vif: int, frame: bytes, mss: int = 0) -> bool:
        """Send `frame` out of `vif` through the fast path (`mss`: a TCP super-frame whole)."""
        try:
            os.writev(self.fd, to_pkt0(vif, frame, mss))
        except (OSError, Malformed):
            return False
        return True

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


# -- the fabric -----------------------------------------------------------------------------
@dataclass(frozen=True)
class FabricLink:
    """The underlay interface as netlink reports it."""

    ifname: str
    index: int
    ip: bytes
    prefix_len: int
    mac: bytes
    mtu: int

    @property
    def network(self) -> bytes:
        return ipaddress.IPv4Network(
            (self.ip, self.prefix_len), strict=False
        ).network_address.packed


def fabric_link(ifname: str) -> FabricLink:
    """Read the fabric interface's IPv4 address, MAC and MTU in the current namespace."""
    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=ifname)
        if not found:
            raise PortError(f"no fabric interface {ifname!r} in this namespace")
        index = found[0]
        link = ipr.get_links(index)[0]
        addrs = ipr.get_addr(index=index, family=socket.AF_INET)
    if not addrs:
        raise PortError(f"fabric interface {ifname!r} has no IPv4 address")
    addr = addrs[0]
    return FabricLink(
        ifname,
        index,
        ipaddress.IPv4Address(addr.get("address")).packed,
        int(addr["prefixlen"]),
        mac_from_str(link.get("address")),
        int(link.get("mtu")),
    )


def _bpf(*insns: tuple[int, int, int, int]) -> bytes:
    return b"".join(struct.pack("=HBBI", *i) for i in insns)


_SKF_AD = 0xFFFFF000  # SKF_AD_OFF (-4096) as an unsigned offset: the kernel's metadata
SKF_AD_PKTTYPE = 4
SKF_AD_VLAN_TAG_PRESENT = 48
# accept 802.1Q frames (the tag sits in metadata by now) and ARP, never our own sends
FABRIC_FILTER = _bpf(
    (0x20, 0, 0, _SKF_AD + SKF_AD_PKTTYPE),  # ld pkttype
    (0x15, 6, 0, PACKET_OUTGOING),  # jeq outgoing -> reject
    (0x20, 0, 0, _SKF_AD + SKF_AD_VLAN_TAG_PRESENT),  # ld vlan_tag_present
    (0x15, 0, 3, 0),  # jeq 0 -> check the ethertype, else accept
    (0x28, 0, 0, 12),  # ldh [12]
    (0x15, 1, 0, 0x0806),  # ARP -> accept
    (0x15, 0, 1, ETH_P_8021Q),  # a tag still in the frame -> accept, else reject
    (0x06, 0, 0, 0x40000),  # accept
    (0x06, 0, 0, 0),  # reject
)


# with the eBPF fast path (which sees the tagged frames and passes up, through pkt0, those it
# does not handle) only ARP: a tagged frame taken here too would be forwarded twice
FABRIC_ARP_FILTER = _bpf(
    (0x20, 0, 0, _SKF_AD + SKF_AD_PKTTYPE),  # ld pkttype
    (0x15, 5, 0, PACKET_OUTGOING),  # jeq outgoing -> reject
    (0x20, 0, 0, _SKF_AD + SKF_AD_VLAN_TAG_PRESENT),  # ld vlan_tag_present
    (0x15, 0, 3, 0),  # tagged -> reject
    (0x28, 0, 0, 12),  # ldh [12]
    (0x15, 0, 1, 0x0806),  # ARP -> accept, else reject
    (0x06, 0, 0, 0x40000),  # accept
    (0x06, 0, 0, 0),  # reject
)


def attach_filter(sock: socket.socket, program: bytes) -> None:
    """SO_ATTACH_FILTER with a classic BPF program (8-byte instructions)."""
    buf = ctypes.create_string_buffer(program)
    fprog = struct.pack("@HP", len(program) // 8, ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def rebuild_vlan_tag(frame: bytes, ancdata: list[tuple[int, int, bytes]]) -> bytes:
    """Put back the 802.1Q tag the kernel moved into PACKET_AUXDATA."""
    for level, kind, data in ancdata:
        if level != SOL_PACKET or kind != PACKET_AUXDATA or len(data) < AUXDATA.size:
            continue
        status, _, _, _, _, tci, tpid = AUXDATA.unpack_from(data)
        if status & TP_STATUS_VLAN_VALID:
            if not status & TP_STATUS_VLAN_TPID_VALID:
                tpid = ETH_P_8021Q
            return frame[:12] + struct.pack("!HH", tpid, tci) + frame[12:]
    return frame


def _buffers(sock: socket.socket) -> None:
    # root may exceed rmem_max/wmem_max with the *FORCE options; others get what they may
    for force, plain in ((SO_RCVBUFFORCE, socket.SO_RCVBUF), (SO_SNDBUFFORCE, socket.SO_SNDBUF)):
        try:
            sock.setsockopt(socket.SOL_SOCKET, force, SOCKET_BUFFER)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, plain, SOCKET_BUFFER)


class FabricPorts:
    """The underlay sockets of one vRouter, all non-blocking. The GSO sockets are made on first
    use, in the caller's network namespace: the vRouter's own, the fabric's. With `arp_only`
    (the eBPF datapath) the link socket takes ARP only."""

    def __init__(self, link: FabricLink, arp_only: bool = False) -> None:
        self.link = link
        self.sockets: list[socket.socket] = []
        # UDP sockets bound to a flow's entropy source port, for GSO sends (None: not bindable)
        self.gso: OrderedDict[int, socket.socket | None] = OrderedDict()
        try:
            self.vxlan = self._udp(UDP_PORT_VXLAN)
            self.mpls = self._udp(UDP_PORT_MPLS)
            self.gre = self._add(socket.socket(socket.AF_INET, socket.SOCK_RAW, IPPROTO_GRE))
            self.raw_out = self._add(
                socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
            )
            # created unbound (it receives nothing) so the filter is on before the first frame
            self.packet = self._add(socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0))
            attach_filter(self.packet, FABRIC_ARP_FILTER if arp_only else FABRIC_FILTER)
            self.packet.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
            self.packet.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
            self.packet.bind((link.ifname, ETH_P_ALL))
        except OSError as e:
            self.close()
            raise PortError(f"fabric sockets on {link.ifname!r}: {e}") from e

    def _add(self, sock: socket.socket) -> socket.socket:
        self.sockets.append(sock)
        sock.setblocking(False)
        _buffers(sock)
        return sock

    def _udp(self, port: int) -> socket.socket:
        sock = self._add(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        with contextlib.suppress(OSError):  # without it (older kernels) datagrams come singly
            sock.setsockopt(SOL_UDP, UDP_GRO, 1)
        sock.bind((socket.inet_ntoa(self.link.ip), port))
        return sock

    def recv_udp(self, sock: socket.socket) -> list[bytes] | None:
        """The VXLAN or MPLSoUDP payloads (UDP payloads) of one read, or None: the kernel
        hands over a run of datagrams of one sender's GSO send at once."""
        try:
            data, anc, _, _ = sock.recvmsg(FRAME_READ_SIZE, socket.CMSG_SPACE(_GRO_SIZE.size))
        except BlockingIOError:
            return None
        for level, kind, value in anc:
            if level == SOL_UDP and kind == UDP_GRO and len(value) >= _GRO_SIZE.size:
                size = _GRO_SIZE.unpack_from(value)[0]
                if 0 < size < len(data):
                    return [data[i : i + size] for i in range(0, len(data), size)]
        return [data]

    def recv_gre(self) -> bytes | None:
        """A whole IPv4 packet carrying GRE, outer header included, or None."""
        try:
            return self.gre.recv(FRAME_READ_SIZE)
        except BlockingIOError:
            return None

    def recv_frame(self) -> tuple[bytes, int] | None:
        """An Ethernet frame from the fabric link (802.1Q tag restored) and, for a TCP
        super-frame, its MSS (else 0); an empty frame for one to skip. Malformed: an offload
        we cannot take (a GSO type but TCPv4, a bad checksum offset)."""
        try:
            data, anc, _, addr = self.packet.recvmsg(PACKET_READ_SIZE, socket.CMSG_SPACE(32))
        except BlockingIOError:
            return None
        if addr[2] == PACKET_OUTGOING:
            return b"", 0
        hdr = parse_vnet_hdr(data)
        frame = rebuild_vlan_tag(data[VNET_HDR_LEN:], anc)
        gso = hdr.gso_type & ~GSO_ECN
        if gso == GSO_TCPV4:
            return frame, hdr.gso_size
        if gso != GSO_NONE:
            raise Malformed("gso_unsupported")
        if hdr.flags & F_NEEDS_CSUM:
            # the kernel counts the offset without the tag it kept aside
            moved = VLAN_LEN if len(frame) > len(data) - VNET_HDR_LEN else 0
            buf = bytearray(frame)
            complete_checksum(buf, hdr.csum_start + moved, hdr.csum_offset)
            frame = bytes(buf)
        return frame, 0

    def send(self, frame: bytes, mss: int = 0) -> bool:
        """Send what the pipeline emitted on the fabric vif: IPv4 goes to the kernel to route
        (without its Ethernet header), anything else (802.1Q, ARP) out of the link as is, a
        TCP super-frame (`mss`) for the kernel to cut."""
        try:
            if frame[12:14] == b"\x08\x00":
                self.raw_out.sendto(memoryview(frame)[14:], (socket.inet_ntoa(frame[30:34]), 0))
            else:
                hdr = super_vnet_hdr(frame, mss) if mss else NO_VNET_HDR
                self.packet.sendmsg((hdr, frame))
        except (OSError, Malformed):
            return False  # a full buffer, an MTU or routing refusal: the caller counts it
        return True

    def send_batch(self, frames: list[bytes]) -> int:
        """Send frames as `send` does, runs of equal-sized tunnel packets of one flow with one
        UDP GSO send each (the kernel cuts them again); returns how many failed."""
        failed = 0
        i, n = 0, len(frames)
        while i < n:
            j = _udp_run(frames, i)
            if j - i > 1 and self._send_gso(frames[i:j]):
                i = j
                continue
            for frame in frames[i:j]:
                failed += not self.send(frame)
            i = j
        return failed

    def _send_gso(self, run: list[bytes]) -> bool:
        first = run[0]
        if first[26:30] != self.link.ip:
            return False  # only our own address can be a GSO socket's source
        sock = self._gso_socket(int.from_bytes(first[34:36], "big"))
        if sock is None:
            return False
        size = len(first) - _OUTER
        try:
            sock.sendmsg(
                [memoryview(f)[_OUTER:] for f in run],
                [(SOL_UDP, UDP_SEGMENT, _GSO_SIZE.pack(size))],
                0,
                (socket.inet_ntoa(first[30:34]), int.from_bytes(first[36:38], "big")),
            )
        except OSError:
            return False  # sent one by one instead, where the failures are counted
        return True

    def _gso_socket(self, sport: int) -> socket.socket | None:
        """A UDP socket sending from `sport` (the flow's entropy port, which ECMP hashes)."""
        if sport in self.gso:
            self.gso.move_to_end(sport)
            return self.gso[sport]
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        found: socket.socket | None = sock
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, GSO_SEND_BUFFER)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)  # it never reads
            sock.bind((socket.inet_ntoa(self.link.ip), sport))
        except OSError:
            sock.close()  # the port is taken: this flow goes one packet at a time
            found = None
        self.gso[sport] = found
        if len(self.gso) > GSO_SOCKETS:
            _, old = self.gso.popitem(last=False)
            if old is not None:
                old.close()
        return found

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()
        self.sockets.clear()
        for gso in self.gso.values():
            if gso is not None:
                gso.close()
        self.gso.clear()


def _udp_run(frames: list[bytes], i: int) -> int:
    """The end of the run of tunnel packets from `frames[i]` that one UDP GSO send can carry:
    IPv4 (no options) + UDP to one destination and port from one source port, all of one size
    but a shorter last one."""
    first = frames[i]
    size = len(first)
    if size <= _OUTER or first[12:15] != _IPV4_PLAIN or first[23] != socket.IPPROTO_UDP:
        return i + 1
    ends = first[30:38]  # destination address, source and destination ports
    total = size - _OUTER
    j = i + 1
    while j < len(frames) and j - i < GSO_MAX_SEGMENTS:
        f = frames[j]
        length = len(f)
        if not _OUTER < length <= size or total + length - _OUTER > GSO_MAX_PAYLOAD:
            break
        if f[30:38] != ends or f[12:15] != _IPV4_PLAIN or f[23] != socket.IPPROTO_UDP:
            break
        total += length - _OUTER
        j += 1
        if length < size:
            break  # only the last may be shorter
    return j
