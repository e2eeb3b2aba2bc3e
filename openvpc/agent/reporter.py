"""Acks and learned addresses go up to the controller from one thread of their own, so a slow
or absent controller never stalls reconciling or answering punts."""

import logging
import threading
from collections import deque

from openvpc.southbound.client import SouthboundClient, SouthboundError

log = logging.getLogger("openvpc.agent")

MAX_PENDING_LEARNS = 256


class Reporter:
    def __init__(self, client: SouthboundClient, node: str, stop: threading.Event) -> None:
        self.client = client
        self.node = node
        self.stop = stop
        self._cond = threading.Condition()
        self._ack: int | None = None  # only the newest generation matters
        self._learns: deque[tuple[str, str]] = deque(maxlen=MAX_PENDING_LEARNS)
        self.acked: int | None = None  # the last generation the controller took

    def ack(self, generation: int) -> None:
        with self._cond:
            self._ack = generation
            self._cond.notify_all()

    def learn(self, interface_id: str, ip: str) -> None:
        with self._cond:
            self._learns.append((interface_id, ip))
            self._cond.notify_all()

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def run(self) -> None:
        while not self.stop.is_set():
            with self._cond:
                self._cond.wait_for(
                    lambda: self.stop.is_set() or self._ack is not None or bool(self._learns),
                    0.5,
                )
                ack, self._ack = self._ack, None
                learns = list(self._learns)
                self._learns.clear()
            if ack is not None:
                self._send_ack(ack)
            for interface_id, ip in learns:
                self._send_learn(interface_id, ip)

    def _send_ack(self, generation: int) -> None:
        try:
            self.client.ack(self.node, generation)
        except SouthboundError as e:
            # the next subscription brings a config again, and with it a new ack
            log.debug("ack of generation %d not delivered: %s", generation, e)
            return
        self.acked = generation

    def _send_learn(self, interface_id: str, ip: str) -> None:
        try:
            ok, error = self.client.learn(self.node, interface_id, ip)
        except SouthboundError as e:
            log.warning("learned %s on %s not reported: %s", ip, interface_id, e)
            return
        if ok:
            log.info("controller moved %s to %s", ip, interface_id)
        else:
            log.info(
                "controller refused %s on %s%s", ip, interface_id, f": {error}" if error else ""
            )
