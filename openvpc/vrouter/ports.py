"""The vRouter's real ports: VM TAPs (opened inside their namespace, with vnet headers and TSO)
and the fabric: UDP sockets for VXLAN and MPLSoUDP, raw IP for GRE and for sending, AF_PACKET
for 802.1Q frames and ARP. Non-blocking; reads return None when nothing is waiting."""

import contextlib
import ctypes
import fcntl
import ipaddress
import os
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from pyroute2 import IPRoute
from pyroute2 import netns as pyroute2_netns

from openvpc.packet.ethernet import ETH_P_8021Q, mac_from_str
from openvpc.vrouter.offload import TO_TAP_HDR, VNET_HDR_LEN

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
    """A persistent TAP of the lab, attached with IFF_VNET_HDR and CSUM|TSO4 offloads."""

    def __init__(self, vif: int, netns: str, ifname: str) -> None:
        self.vif = vif
        self.netns = netns
        self.ifname = ifname
        self.fd = self._open()

    def _open(self) -> int:
        if not 0 < len(self.ifname.encode()) < 16:
            raise PortError(f"bad interface name {self.ifname!r}")
        with _in_netns(self.netns):
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

    def write(self, frame: bytes) -> bool:
        try:
            os.write(self.fd, TO_TAP_HDR + frame)
        except OSError:
            return False  # the VM is down (EIO) or its queue is full
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
    """The underlay sockets of one vRouter, all non-blocking."""

    def __init__(self, link: FabricLink) -> None:
        self.link = link
        self.sockets: list[socket.socket] = []
        try:
            self.vxlan = self._udp(UDP_PORT_VXLAN)
            self.mpls = self._udp(UDP_PORT_MPLS)
            self.gre = self._add(socket.socket(socket.AF_INET, socket.SOCK_RAW, IPPROTO_GRE))
            self.raw_out = self._add(
                socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
            )
            # created unbound (it receives nothing) so the filter is on before the first frame
            self.packet = self._add(socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0))
            attach_filter(self.packet, FABRIC_FILTER)
            self.packet.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
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
        sock.bind((socket.inet_ntoa(self.link.ip), port))
        return sock

    def recv_udp(self, sock: socket.socket) -> bytes | None:
        """A VXLAN or MPLSoUDP payload (the UDP payload), or None."""
        try:
            return sock.recv(FRAME_READ_SIZE)
        except BlockingIOError:
            return None

    def recv_gre(self) -> bytes | None:
        """A whole IPv4 packet carrying GRE, outer header included, or None."""
        try:
            return self.gre.recv(FRAME_READ_SIZE)
        except BlockingIOError:
            return None

    def recv_frame(self) -> bytes | None:
        """An Ethernet frame from the fabric link (802.1Q tag restored), b"" for one to skip."""
        try:
            data, anc, _, addr = self.packet.recvmsg(FRAME_READ_SIZE, socket.CMSG_SPACE(32))
        except BlockingIOError:
            return None
        if addr[2] == PACKET_OUTGOING:
            return b""
        return rebuild_vlan_tag(data, anc)

    def send(self, frame: bytes) -> bool:
        """Send what the pipeline emitted on the fabric vif: IPv4 goes to the kernel to route
        (without its Ethernet header), anything else (802.1Q, ARP) out of the link as is."""
        try:
            if frame[12:14] == b"\x08\x00":
                self.raw_out.sendto(frame[14:], (socket.inet_ntoa(frame[30:34]), 0))
            else:
                self.packet.send(frame)
        except OSError:
            return False  # a full buffer, an MTU or routing refusal: the caller counts it
        return True

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()
        self.sockets.clear()
