"""The flow table: HOLD entries, limits, installation with reverse flows, TCP-aware aging."""

from collections import Counter

from openvpc.model.forwarding import FlowKey
from openvpc.packet.l4 import TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN
from openvpc.vrouter.drops import Drop
from openvpc.vrouter.flow import Flow, FlowAction, FlowTable, FlowTimeouts

A = bytes([10, 0, 1, 3])
B = bytes([10, 0, 1, 4])
T = FlowTimeouts()


def key(vrf: int = 1, proto: int = 17, sport: int = 40000, dport: int = 53) -> FlowKey:
    return (vrf, proto, A, B, sport, dport)


def rev(k: FlowKey) -> FlowKey:
    vrf, proto, src, dst, sport, dport = k
    return (vrf, proto, dst, src, dport, sport)


def held(flow: Flow | Drop) -> Flow:
    assert isinstance(flow, Flow), flow
    return flow


# -- HOLD and limits --------------------------------------------------------------------
def test_hold_creates_an_entry() -> None:
    ft = FlowTable()
    flow = held(ft.hold(key(), 7.0))
    assert flow.action is FlowAction.HOLD
    assert (flow.created, flow.last_used) == (7.0, 7.0)
    assert flow.reverse is None and flow.held == []
    assert ft.lookup(key()) is flow
    assert ft.per_vrf == {1: 1}
    assert ft.created == 1


def test_capacity_makes_the_table_full() -> None:
    ft = FlowTable(capacity=2)
    held(ft.hold(key(sport=1), 0))
    held(ft.hold(key(vrf=2, sport=2), 0))
    assert ft.hold(key(vrf=3, sport=3), 0) is Drop.FLOW_TABLE_FULL
    assert Drop("flow_table_full") is Drop.FLOW_TABLE_FULL
    assert len(ft.flows) == 2


def test_per_vrf_quota() -> None:
    ft = FlowTable(capacity=100, vrf_quota=2)
    held(ft.hold(key(sport=1), 0))
    held(ft.hold(key(sport=2), 0))
    assert ft.hold(key(sport=3), 0) is Drop.FLOW_QUOTA
    assert Drop("flow_vrf_quota_exceeded") is Drop.FLOW_QUOTA
    held(ft.hold(key(vrf=2, sport=3), 0))  # another VRF has its own quota
    ft.remove(key(sport=1))
    held(ft.hold(key(sport=3), 0))  # a freed slot can be used again


# -- install ----------------------------------------------------------------------------
def test_install_creates_both_directions_with_reverse_pointers() -> None:
    ft = FlowTable()
    k = key()
    released = ft.install(k, FlowAction.FORWARD, 3.0, reverse=rev(k))
    assert released == []
    fwd, back = ft.lookup(k), ft.lookup(rev(k))
    assert fwd is not None and back is not None
    assert fwd.action is FlowAction.FORWARD and back.action is FlowAction.FORWARD
    assert fwd.reverse == rev(k) and back.reverse == k
    assert ft.per_vrf == {1: 2}


def test_install_returns_held_packets_of_both_directions() -> None:
    ft = FlowTable()
    k = key()
    held(ft.hold(k, 0)).held.extend([(b"first", 3), (b"second", 3)])
    held(ft.hold(rev(k), 0)).held.append((b"reply", 4))
    released = ft.install(k, FlowAction.FORWARD, 1.0, reverse=rev(k))
    assert released == [(b"first", 3), (b"second", 3), (b"reply", 4)]
    assert all(not f.held for f in ft.flows.values())
    assert len(ft.flows) == 2 and ft.created == 2  # the HOLD entries became the flows


def test_install_with_nat_keeps_both_rewrites() -> None:
    ft = FlowTable()
    k = key()
    nat = (bytes([192, 0, 2, 1]), B, 1024, 53)
    rnat = (B, A, 53, 40000)
    ft.install(k, FlowAction.NAT, 0, reverse=rev(k), nat=nat, reverse_nat=rnat)
    fwd, back = ft.lookup(k), ft.lookup(rev(k))
    assert fwd is not None and fwd.nat == nat
    assert back is not None and back.nat == rnat


def test_install_without_reverse() -> None:
    ft = FlowTable()
    ft.install(key(), FlowAction.DROP, 0)
    flow = ft.lookup(key())
    assert flow is not None and flow.action is FlowAction.DROP and flow.reverse is None
    assert len(ft.flows) == 1


def test_install_into_a_full_table_changes_nothing() -> None:
    ft = FlowTable(capacity=1)
    k = key()
    held(ft.hold(k, 0)).held.append((b"first", 3))
    assert ft.install(k, FlowAction.FORWARD, 0, reverse=rev(k)) is Drop.FLOW_TABLE_FULL
    flow = ft.lookup(k)
    # the held packet is not lost: the agent may retry once there is room
    assert flow is not None and flow.action is FlowAction.HOLD and flow.held == [(b"first", 3)]
    assert ft.lookup(rev(k)) is None


def test_install_over_quota_changes_nothing() -> None:
    ft = FlowTable(vrf_quota=1)
    k = key()
    held(ft.hold(k, 0)).held.append((b"first", 3))
    assert ft.install(k, FlowAction.FORWARD, 0, reverse=rev(k)) is Drop.FLOW_QUOTA
    flow = ft.lookup(k)
    assert flow is not None and flow.action is FlowAction.HOLD and len(flow.held) == 1


# -- remove -----------------------------------------------------------------------------
def test_remove_takes_the_reverse_too() -> None:
    ft = FlowTable()
    k = key()
    ft.install(k, FlowAction.FORWARD, 0, reverse=rev(k))
    assert ft.remove(rev(k))
    assert ft.flows == {}
    assert ft.per_vrf == {}  # an emptied VRF holds no memory
    assert ft.deleted == 2
    assert not ft.remove(k)


def test_touch_counts() -> None:
    ft = FlowTable()
    flow = held(ft.hold(key(proto=6), 0))
    ft.touch(flow, 2.0, 60, TCP_SYN)
    ft.touch(flow, 3.0, 52, TCP_ACK)
    assert (flow.packets, flow.octets, flow.last_used) == (2, 112, 3.0)
    assert flow.tcp_flags == TCP_SYN | TCP_ACK


# -- aging ------------------------------------------------------------------------------
def tcp_pair(ft: FlowTable, fwd_flags: int, back_flags: int) -> FlowKey:
    k = key(proto=6, dport=80)
    ft.install(k, FlowAction.FORWARD, 0, reverse=rev(k))
    fwd, back = ft.lookup(k), ft.lookup(rev(k))
    assert fwd is not None and back is not None
    if fwd_flags:
        ft.touch(fwd, 0, 40, fwd_flags)
    if back_flags:
        ft.touch(back, 0, 40, back_flags)
    return k


def survives(ft: FlowTable, k: FlowKey, idle: float) -> bool:
    """Whether the pair is still there after `idle` seconds without packets."""
    ft.age(idle)
    return ft.lookup(k) is not None


def test_embryonic_tcp_ages_fast() -> None:
    ft = FlowTable()
    k = tcp_pair(ft, TCP_SYN, 0)
    assert survives(ft, k, T.tcp_embryonic - 0.5)
    expired = ft.age(T.tcp_embryonic)
    assert set(expired) == {k, rev(k)}
    assert ft.flows == {}


def test_established_tcp_lives_long() -> None:
    ft = FlowTable()
    k = tcp_pair(ft, TCP_SYN | TCP_ACK, TCP_SYN | TCP_ACK)
    assert survives(ft, k, T.tcp_embryonic + 1)
    assert survives(ft, k, T.tcp_established - 0.5)
    assert not survives(ft, k, T.tcp_established)


def test_rst_closes() -> None:
    ft = FlowTable()
    k = tcp_pair(ft, TCP_ACK, TCP_ACK | TCP_RST)
    assert survives(ft, k, T.tcp_closed - 0.5)
    assert not survives(ft, k, T.tcp_closed)


def test_fin_one_way_is_still_established() -> None:
    ft = FlowTable()
    k = tcp_pair(ft, TCP_ACK | TCP_FIN, TCP_ACK)
    assert survives(ft, k, T.tcp_closed + 1)
    assert survives(ft, k, T.tcp_established - 0.5)


def test_fin_both_ways_closes() -> None:
    ft = FlowTable()
    k = tcp_pair(ft, TCP_ACK | TCP_FIN, TCP_ACK | TCP_PSH | TCP_FIN)
    assert survives(ft, k, T.tcp_closed - 0.5)
    assert not survives(ft, k, T.tcp_closed)


def test_udp_uses_the_other_timeout() -> None:
    ft = FlowTable(timeouts=FlowTimeouts(other=60))
    k = key()
    ft.install(k, FlowAction.FORWARD, 0, reverse=rev(k))
    assert survives(ft, k, 59)
    assert not survives(ft, k, 60)


def test_hold_timeout() -> None:
    ft = FlowTable()
    held(ft.hold(key(), 0))
    assert ft.age(T.hold - 0.5) == []
    assert ft.age(T.hold) == [key()]
    assert ft.flows == {}


def test_packets_held_on_an_undecided_flow_are_counted_when_it_ages_out() -> None:
    drops: Counter[str] = Counter()
    ft = FlowTable(drops=drops)
    flow = held(ft.hold(key(), 0))
    flow.held.extend([(b"first", 2), (b"second", 2)])
    ft.age(T.hold)
    assert drops == {Drop.HOLD_EXPIRED: 2}


def test_a_pair_lives_while_either_side_is_used() -> None:
    ft = FlowTable(timeouts=FlowTimeouts(other=60))
    k = key()
    ft.install(k, FlowAction.FORWARD, 0, reverse=rev(k))
    back = ft.lookup(rev(k))
    assert back is not None
    ft.touch(back, 50, 100, 0)  # only replies flow
    assert survives(ft, k, 100)
    assert not survives(ft, k, 110)
