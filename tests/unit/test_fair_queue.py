"""The agent's punt queue: round-robin by source, a share per source, a bound on the whole,
never blocking the producer; and the punt worker charges each punt to its vif and VRF."""

import threading
from typing import TypeVar

import pytest

from openvpc.agent.desired import Desired
from openvpc.agent.fair_queue import FairQueue, Refused
from openvpc.agent.punt_worker import PuntWorker
from openvpc.agent.reporter import Reporter
from openvpc.southbound.client import SouthboundClient
from openvpc.vrouter.punt import Punt, build_punt

T = TypeVar("T")


def drain(q: FairQueue[T]) -> list[T]:
    out = []
    while (item := q.get(0)) is not None:
        out.append(item)
    return out


def test_a_flooding_source_waits_behind_itself() -> None:
    q: FairQueue[str] = FairQueue(capacity=100, per_source=50)
    for i in range(40):
        assert q.put("flood", f"f{i}") is None
    assert q.put("calm", "c0") is None
    assert q.put("calm", "c1") is None
    served = drain(q)
    assert served[:4] == ["f0", "c0", "f1", "c1"]  # in turn, whatever the backlog
    assert served[4:] == [f"f{i}" for i in range(2, 40)]
    assert len(q) == 0


def test_shares_and_the_whole_are_bounded() -> None:
    q: FairQueue[int] = FairQueue(capacity=5, per_source=3)
    assert [q.put("a", i) for i in range(4)] == [None, None, None, Refused.SHARE]
    assert [q.put("b", i) for i in range(3)] == [None, None, Refused.FULL]
    assert len(q) == 5
    assert drain(q) == [0, 0, 1, 1, 2]
    assert q.put("a", 9) is None  # room again once served


def test_get_waits_for_a_producer_and_times_out_alone() -> None:
    q: FairQueue[str] = FairQueue(capacity=4, per_source=4)
    assert q.get(0.01) is None
    got: list[str | None] = []
    consumer = threading.Thread(target=lambda: got.append(q.get(10.0)))
    consumer.start()
    q.put("a", "x")
    consumer.join(10.0)
    assert got == ["x"]


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError):
        FairQueue(0, 1)
    with pytest.raises(ValueError):
        FairQueue(1, 0)


def test_the_worker_charges_punts_to_their_vif_and_vrf() -> None:
    client = SouthboundClient("unix:/nonexistent/openvpc-test.sock", timeout=0.1)
    try:
        worker = PuntWorker(Desired(), Reporter(client, "n", threading.Event()), threading.Event(),
                            capacity=100, share=3)  # fmt: skip
        flood, calm = build_punt(Punt.FLOW_MISS, 7, 1, b"a"), build_punt(Punt.FLOW_MISS, 8, 1, b"b")
        other_vrf = build_punt(Punt.FLOW_MISS, 7, 2, b"c")
        for _ in range(5):
            worker.offer(flood)
        worker.offer(calm)
        worker.offer(other_vrf)
        assert worker.snapshot() == {"punt_source_share_full": 2}
        assert drain(worker.queue) == [flood, calm, other_vrf, flood, flood]
    finally:
        client.close()
