"""The DHCP server of one port: the client on a vif can only ever get that port's address.

Answers come from the subnet gateway's address and the vRouter MAC (RFC 2131 section 4.1 for
where each reply goes); DISCOVER -> OFFER, REQUEST -> ACK or NAK, INFORM -> ACK without a lease.
"""

import ipaddress

from openvpc.agent.outcome import Outcome
from openvpc.agent.udp_frames import build_udp_frame, parse_udp_frame
from openvpc.model.forwarding import VROUTER_MAC
from openvpc.model.nodeconfig import PortConfig
from openvpc.packet import dhcp
from openvpc.packet.errors import Malformed
from openvpc.packet.ethernet import BROADCAST, mac_from_str

LEASE_SECONDS = 86400
RENEW_SECONDS = LEASE_SECONDS // 2  # T1 and T2 as RFC 2131 suggests: 0.5 and 0.875 of the lease
REBIND_SECONDS = LEASE_SECONDS * 7 // 8
MIN_MTU = 68  # RFC 2132: the smallest legal interface MTU
ALL_ONES = b"\xff" * 4
RENEWAL_TIME = 58
REBINDING_TIME = 59


class _Addresses:
    """The port's configuration as the bytes and options a reply carries."""

    def __init__(self, port: PortConfig) -> None:
        iface = ipaddress.IPv4Interface(f"{port.ip}/{port.prefix_len}")
        self.mac = mac_from_str(port.mac)
        self.ip = iface.ip.packed
        self.server = ipaddress.IPv4Address(port.gateway).packed
        network = iface.network
        options = [
            (dhcp.SUBNET_MASK, network.netmask.packed),
            (dhcp.BROADCAST, network.broadcast_address.packed),
            (dhcp.ROUTER, self.server),
        ]
        if port.dns:
            options.append((dhcp.DNS, ipaddress.IPv4Address(port.dns).packed))
        if port.domain:
            options.append((dhcp.DOMAIN_NAME, port.domain.encode("ascii")))
        if port.hostname:
            options.append((dhcp.HOSTNAME, port.hostname.encode("ascii")))
        if port.mtu >= MIN_MTU:
            options.append((dhcp.MTU, min(port.mtu, 0xFFFF).to_bytes(2, "big")))
        self.network_options = options


def handle_dhcp(frame: bytes, port: PortConfig, now: float) -> Outcome:
    """Answer one DHCP message the VM on `port.vif` sent; see the module docstring."""
    del now  # leases are relative: nothing here depends on the clock
    try:
        request = parse_udp_frame(frame)
        if request.dport != dhcp.SERVER_PORT:
            raise Malformed("not_dhcp")
        message = dhcp.parse_dhcp(request.payload)
    except Malformed as e:
        return Outcome(f"dhcp_{e.reason}")
    try:
        me = _Addresses(port)
    except (ValueError, UnicodeEncodeError) as e:
        return Outcome("dhcp_bad_port_config", detail=str(e))
    return _answer(request.src_mac, message, port, me)


def _answer(src_mac: bytes, message: dhcp.Dhcp, port: PortConfig, me: _Addresses) -> Outcome:
    if message.op != dhcp.BOOTREQUEST:
        return Outcome("dhcp_not_a_request")
    if message.htype != 1 or message.hlen != 6:
        return Outcome("dhcp_not_ethernet")
    if src_mac != me.mac:
        return Outcome("dhcp_src_mac_mismatch")
    if message.chaddr != me.mac:  # asking on someone else's behalf: spoofing
        return Outcome("dhcp_chaddr_mismatch")
    if message.giaddr != dhcp.ZERO_IP:
        return Outcome("dhcp_relayed")
    kind = message.msg_type
    if kind == dhcp.DISCOVER:
        return _reply(port, me, message, dhcp.OFFER, "dhcp_offer")
    if kind == dhcp.REQUEST:
        return _request(port, me, message)
    if kind == dhcp.INFORM:
        return _reply(port, me, message, dhcp.ACK, "dhcp_inform_ack", lease=False)
    if kind == dhcp.RELEASE:
        return Outcome("dhcp_release_ignored")  # the address stays the port's
    if kind == dhcp.DECLINE:
        return Outcome("dhcp_decline_ignored")
    if kind is None:
        return Outcome("dhcp_bootp_unsupported")
    return Outcome("dhcp_unexpected_type")


def _request(port: PortConfig, me: _Addresses, message: dhcp.Dhcp) -> Outcome:
    server_id = message.options.get(dhcp.SERVER_ID)
    if server_id is not None and server_id != me.server:
        return Outcome("dhcp_other_server")  # the client chose another server's offer
    requested = message.options.get(dhcp.REQUESTED_IP)
    if requested is None and message.ciaddr != dhcp.ZERO_IP:
        requested = message.ciaddr  # renewing or rebinding
    if requested != me.ip:  # e.g. a lease from before the VM moved, or no address at all
        return _reply(port, me, message, dhcp.NAK, "dhcp_nak")
    return _reply(port, me, message, dhcp.ACK, "dhcp_ack")


def _reply(
    port: PortConfig,
    me: _Addresses,
    message: dhcp.Dhcp,
    kind: int,
    reason: str,
    lease: bool = True,
) -> Outcome:
    options = [(dhcp.MSG_TYPE, bytes((kind,))), (dhcp.SERVER_ID, me.server)]
    yiaddr = ciaddr = dhcp.ZERO_IP
    if kind != dhcp.NAK:
        if lease:
            yiaddr = me.ip
            options += [
                (dhcp.LEASE_TIME, LEASE_SECONDS.to_bytes(4, "big")),
                (RENEWAL_TIME, RENEW_SECONDS.to_bytes(4, "big")),
                (REBINDING_TIME, REBIND_SECONDS.to_bytes(4, "big")),
            ]
        options += me.network_options
        if kind == dhcp.ACK:
            ciaddr = message.ciaddr
    body = dhcp.build_dhcp(
        dhcp.BOOTREPLY,
        message.xid,
        me.mac,
        yiaddr=yiaddr,
        ciaddr=ciaddr,
        flags=message.flags & dhcp.FLAG_BROADCAST,
        options=options,
    )
    dst_mac, dst_ip = _destination(message, kind, yiaddr, me.mac)
    frame = build_udp_frame(
        dst_mac, VROUTER_MAC, me.server, dst_ip, dhcp.SERVER_PORT, dhcp.CLIENT_PORT, body
    )
    return Outcome(reason, injects=((port.vif, frame),))


def _destination(message: dhcp.Dhcp, kind: int, yiaddr: bytes, mac: bytes) -> tuple[bytes, bytes]:
    """Where a reply goes (RFC 2131 4.1, no relay): ciaddr, else broadcast if asked, else yiaddr."""
    if kind == dhcp.NAK:
        return BROADCAST, ALL_ONES
    if message.ciaddr != dhcp.ZERO_IP:
        return mac, message.ciaddr
    if message.flags & dhcp.FLAG_BROADCAST or yiaddr == dhcp.ZERO_IP:
        return BROADCAST, ALL_ONES
    return mac, yiaddr
