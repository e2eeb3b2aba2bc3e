"""Punted frames: queued by the control channel's reader thread, answered on a worker thread.

The reader must never block (it also carries request replies), so `offer` only enqueues, into
a bounded queue served round-robin by source (the punt's vif and VRF) whose overflow is
counted. The worker runs the pure `handle_punt` and carries out its outcome: frames injected,
flows installed, learned addresses reported.
"""

import logging
import threading
import time
from collections import Counter

from openvpc.agent.desired import Desired
from openvpc.agent.fair_queue import FairQueue, Refused
from openvpc.agent.punts import PuntState, handle_punt
from openvpc.agent.reporter import Reporter
from openvpc.agent.vrouter_link import VrouterLink
from openvpc.vrouter.control import ControlError
from openvpc.vrouter.punt import punt_source

log = logging.getLogger("openvpc.agent")

QUEUE_SIZE = 1024
SOURCE_SHARE = 64  # punts of one source waiting at once (the vRouter holds 32 first packets)
_OVERFLOW = {Refused.FULL: "punt_queue_overflow", Refused.SHARE: "punt_source_share_full"}


class PuntWorker:
    def __init__(
        self,
        desired: Desired,
        reporter: Reporter,
        stop: threading.Event,
        capacity: int = QUEUE_SIZE,
        share: int = SOURCE_SHARE,
    ) -> None:
        self.desired = desired
        self.reporter = reporter
        self.stop = stop
        self.link: VrouterLink | None = None  # set once the link exists (it needs `offer`)
        self.state = PuntState()
        self.queue: FairQueue[bytes] = FairQueue(capacity, min(share, capacity))
        self._lock = threading.Lock()
        self.counters: Counter[str] = Counter()

    def offer(self, data: bytes) -> None:
        """Called on the channel's reader thread: enqueue or count, never block."""
        # a short frame is a source of its own: handled, and counted as malformed, like any other
        refused = self.queue.put(punt_source(data), data)
        if refused is not None:
            self.count(_OVERFLOW[refused])

    def count(self, reason: str) -> None:
        with self._lock:
            self.counters[reason] += 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counters)

    def run(self) -> None:
        while not self.stop.is_set():
            data = self.queue.get(timeout=0.2)
            if data is not None:
                self.handle(data)

    def handle(self, data: bytes) -> None:
        config = self.desired.for_proxies()
        if config is None:
            self.count("punt_no_config")
            return
        outcome = handle_punt(data, config, self.state, time.monotonic())
        self.count(outcome.reason)
        if outcome.detail:
            log.debug("punt %s: %s", outcome.reason, outcome.detail)
        vr = self.link.client if self.link is not None else None
        if outcome.injects or outcome.flows:
            if vr is None:
                self.count("punt_vrouter_down")
            else:
                try:
                    for packet in outcome.inject_packets():
                        vr.send_packet(packet)
                    for flow in outcome.flows:
                        vr.request("flow", **flow.fields())
                except ControlError as e:
                    self.count("punt_vrouter_error")
                    log.debug("punt %s not carried out: %s", outcome.reason, e)
        for learned in outcome.learned:
            self.reporter.learn(learned.interface_id, learned.ip)
