"""A NAT gateway's port allocation (openvpc/vrouter/natgw.py): ports in 1024-65535, one per
flow and destination, the same port free for other destinations, ports freed by idling out
and reused, a destination's exhaustion refused and counted without touching the others."""

from hypothesis import given, settings
from hypothesis import strategies as st

from openvpc.packet.ipv4 import PROTO_ICMP, PROTO_TCP, PROTO_UDP
from openvpc.packet.l4 import TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN
from openvpc.vrouter.natgw import PORTS, NatGateways, NatGatewayState, Private

WEB, DNS = b"\xc6\x33\x64\xfe", b"\xc6\x33\x64\x05"
VM = b"\x0a\x00\x02\x04"


def flow(sport: int, dst: bytes = WEB, dport: int = 80, proto: int = PROTO_TCP) -> Private:
    return (2, proto, VM, sport, dst, dport)


def test_a_flow_keeps_its_port_and_gets_one_in_range() -> None:
    g = NatGatewayState()
    first = g.outbound(flow(40000), 1.0, TCP_SYN)
    assert first is not None and PORTS[0] <= first.port <= PORTS[1]
    again = g.outbound(flow(40000), 2.0, TCP_ACK)
    assert again is first and again.last_used == 2.0
    other = g.outbound(flow(40001), 2.0)
    assert other is not None and other.port != first.port


def test_replies_find_their_flow_and_nothing_else() -> None:
    g = NatGatewayState()
    b = g.outbound(flow(40000), 1.0)
    assert b is not None
    assert g.inbound((PROTO_TCP, WEB, 80, b.port), 2.0, TCP_SYN | TCP_ACK) is b
    assert b.in_flags == TCP_SYN | TCP_ACK
    assert g.inbound((PROTO_TCP, WEB, 81, b.port), 2.0) is None  # another remote port
    assert g.inbound((PROTO_UDP, WEB, 80, b.port), 2.0) is None
    assert g.inbound((PROTO_TCP, DNS, 80, b.port), 2.0) is None


def test_ports_are_per_destination() -> None:
    g = NatGatewayState(ports=(2000, 2000))  # one port
    web = g.outbound(flow(40000), 1.0)
    dns = g.outbound(flow(40000, DNS, 53, PROTO_UDP), 1.0)
    other_port = g.outbound(flow(40001, WEB, 443), 1.0)
    assert web is not None and dns is not None and other_port is not None
    assert web.port == dns.port == other_port.port == 2000
    assert g.outbound(flow(40002), 1.0) is None  # the same destination: none left
    assert g.error_port_allocation == 1


def test_exhaustion_is_counted_and_a_freed_port_is_reused() -> None:
    g = NatGatewayState(ports=(1024, 1027))
    got = [g.outbound(flow(40000 + n), float(n)) for n in range(4)]
    assert sorted(b.port for b in got if b is not None) == [1024, 1025, 1026, 1027]
    assert g.outbound(flow(50000), 10.0) is None
    assert g.outbound(flow(50001), 10.0) is None
    assert g.error_port_allocation == 2
    # the last two stay busy; the first two idle past the handshake timeout (no answer)
    for n in (2, 3):
        assert g.outbound(flow(40000 + n), 65.0, TCP_SYN) is got[n]
    assert g.age(65.0) == 2
    freed = {b.port for b in got[:2] if b is not None}
    again = g.outbound(flow(50000), 66.0)
    assert again is not None and again.port in freed
    assert g.outbound(flow(40000), 66.0) is not None  # the old flow comes back: a new port
    assert g.outbound(flow(50001), 66.0) is None


def test_idle_timeouts_follow_aws() -> None:
    t = NatGatewayState().timeouts
    assert t.tcp_established == 350.0 and t.udp == 350.0
    g = NatGatewayState()
    est = g.outbound(flow(1), 0.0, TCP_SYN)
    assert est is not None
    g.inbound((PROTO_TCP, WEB, 80, est.port), 0.0, TCP_SYN | TCP_ACK)
    closed = g.outbound(flow(2), 0.0, TCP_SYN | TCP_ACK)
    assert closed is not None
    g.inbound((PROTO_TCP, WEB, 80, closed.port), 0.0, TCP_RST)
    fin = g.outbound(flow(3), 0.0, TCP_FIN | TCP_ACK)
    assert fin is not None
    g.inbound((PROTO_TCP, WEB, 80, fin.port), 0.0, TCP_FIN | TCP_ACK)
    udp = g.outbound(flow(4, DNS, 53, PROTO_UDP), 0.0)
    ping = g.outbound(flow(5, DNS, 0, PROTO_ICMP), 0.0)
    assert udp is not None and ping is not None
    assert g.age(9.9) == 0
    assert g.age(10.0) == 2  # RST, FIN both ways
    assert g.age(59.9) == 0
    assert g.age(60.0) == 1  # ICMP
    assert g.age(349.9) == 0
    assert g.age(350.0) == 2  # established TCP, UDP
    assert not g.out and not g.back and not g.used


def test_the_node_forgets_idle_gateways_but_keeps_their_errors() -> None:
    gws = NatGateways(ports=(1024, 1024))
    a, b = gws.get("nat-a"), gws.get("nat-b")
    assert a.outbound(flow(1), 0.0) is not None
    assert b.outbound(flow(1), 0.0) is not None
    assert b.outbound(flow(2), 0.0) is None
    assert gws.age(400.0) == 2
    assert set(gws.stats()) == {"nat-b"}
    assert gws.stats()["nat-b"]["error_port_allocation"] == 1


OPS = st.lists(
    st.tuples(
        st.sampled_from(["open", "age"]),
        st.integers(0, 5),  # which private port
        st.sampled_from([(PROTO_TCP, WEB, 80), (PROTO_TCP, WEB, 443), (PROTO_UDP, DNS, 53)]),
        st.floats(0.0, 40.0),  # seconds since the previous step
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(OPS, st.integers(1, 4))
def test_no_two_live_flows_share_a_public_port_toward_a_destination(
    ops: list[tuple[str, int, tuple[int, bytes, int], float]], size: int
) -> None:
    g = NatGatewayState(ports=(3000, 3000 + size - 1))
    now, refused = 0.0, 0
    for op, sport, (proto, dst, dport), dt in ops:
        now += dt
        if op == "age":
            g.age(now)
            continue
        key = flow(sport, dst, dport, proto)
        live_to_dest = sum(1 for b in g.out.values() if b.destination == (proto, dst, dport))
        known = key in g.out
        got = g.outbound(key, now)
        if got is None:
            refused += 1
            assert not known and live_to_dest == size  # refused only when all are taken
        else:
            assert 3000 <= got.port < 3000 + size
    assert g.error_port_allocation == refused
    seen = set()
    for b in g.out.values():
        assert (b.destination, b.port) not in seen
        seen.add((b.destination, b.port))
        assert g.back[b.public] is b
        assert b.port in g.used[b.destination]
    assert len(g.back) == len(g.out) == sum(len(p) for p in g.used.values())
