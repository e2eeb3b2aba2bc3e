"""Punted frames: queued by the control channel's reader thread, answered on a worker thread.

The reader must never block (it also carries request replies), so `offer` only enqueues, into
a bounded queue whose overflow is counted. The worker runs the pure `handle_punt` and carries
out its outcome: frames injected, flows installed, learned addresses reported.
"""

import logging
import queue
import threading
import time
from collections import Counter

from openvpc.agent.desired import Desired
from openvpc.agent.punts import PuntState, handle_punt
from openvpc.agent.reporter import Reporter
from openvpc.agent.vrouter_link import VrouterLink
from openvpc.vrouter.control import ControlError

log = logging.getLogger("openvpc.agent")

QUEUE_SIZE = 1024


class PuntWorker:
    def __init__(
        self,
        desired: Desired,
        reporter: Reporter,
        stop: threading.Event,
        capacity: int = QUEUE_SIZE,
    ) -> None:
        self.desired = desired
        self.reporter = reporter
        self.stop = stop
        self.link: VrouterLink | None = None  # set once the link exists (it needs `offer`)
        self.state = PuntState()
        self.queue: queue.Queue[bytes] = queue.Queue(maxsize=capacity)
        self._lock = threading.Lock()
        self.counters: Counter[str] = Counter()

    def offer(self, data: bytes) -> None:
        """Called on the channel's reader thread: enqueue or count, never block."""
        try:
            self.queue.put_nowait(data)
        except queue.Full:
            self.count("punt_queue_overflow")

    def count(self, reason: str) -> None:
        with self._lock:
            self.counters[reason] += 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counters)

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                data = self.queue.get(timeout=0.2)
            except queue.Empty:
                continue
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
