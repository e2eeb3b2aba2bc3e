"""Acks (with the VMs that are ready) and learned addresses go up to the controller from one
thread of their own, so a slow or absent controller never stalls reconciling or answering punts.

Every ack carries the whole VM report, so a restarted controller learns it with the next ack;
a report that changes between acks goes up with the last generation acked.

A learned address is kept (newest claim per address wins, also in the state file) until the
controller answers it, accepted or refused; only a transport error retries, with backoff.
"""

import logging
import threading
import time

from openvpc.agent.state_file import MAX_PENDING_LEARNS, AgentState
from openvpc.model.nodeconfig import VmReport
from openvpc.southbound.backoff import Backoff
from openvpc.southbound.client import SouthboundClient, SouthboundError

log = logging.getLogger("openvpc.agent")

LEARN_RETRY_FIRST = 0.2
LEARN_RETRY_LIMIT = 1.0  # a returning controller hears of a VIP move within about this
VM_REPORT_RETRY = 1.0  # a VM report that met a transport error is sent again after this


class Reporter:
    def __init__(
        self,
        client: SouthboundClient,
        node: str,
        stop: threading.Event,
        state: AgentState | None = None,
    ) -> None:
        self.client = client
        self.node = node
        self.stop = stop
        self.state = state
        self._cond = threading.Condition()
        self._ack: int | None = None  # only the newest generation matters
        self._generation: int | None = None  # the newest generation handed to `ack`
        self._vms: tuple[VmReport, ...] | None = None  # None: this agent makes no VMs
        self._vms_due = 0.0  # monotonic; 0: the report went up with the last ack
        # address -> interface, oldest claim first; loaded back after a restart
        self._learns: dict[str, str] = dict(state.learns) if state is not None else {}
        self._retry = Backoff(LEARN_RETRY_FIRST, LEARN_RETRY_LIMIT)
        self._retry_at = 0.0  # monotonic; learns wait until then after a transport error
        self.acked: int | None = None  # the last generation the controller took
        self.learn_retries = 0  # reports that met a transport error (kept, retried)

    def ack(self, generation: int) -> None:
        with self._cond:
            self._ack = self._generation = generation
            self._cond.notify_all()

    def report_vms(self, vms: tuple[VmReport, ...]) -> None:
        """The agent's VMs as they are now; sent with the next ack, or alone if it changed."""
        with self._cond:
            if vms != self._vms:
                self._vms = vms
                self._vms_due = time.monotonic()
                self._cond.notify_all()

    def learn(self, interface_id: str, ip: str) -> None:
        """Report that `interface_id` claims `ip`; replaces an older unreported claim of it."""
        with self._cond:
            self._learns.pop(ip, None)
            self._learns[ip] = interface_id
            while len(self._learns) > MAX_PENDING_LEARNS:
                dropped = next(iter(self._learns))
                log.warning("too many unreported addresses: dropped the claim of %s", dropped)
                del self._learns[dropped]
            self._retry_at = 0.0  # a new claim is worth trying at once
            self._persist()
            self._cond.notify_all()

    def pending(self) -> dict[str, str]:
        """The claims the controller has not answered yet (address -> interface)."""
        with self._cond:
            return dict(self._learns)

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def run(self) -> None:
        while not self.stop.is_set():
            with self._cond:
                self._cond.wait_for(self._due, self._until_retry())
                ack, self._ack = self._ack, None
                now = time.monotonic()
                if ack is None and self._vms_due and now >= self._vms_due:
                    ack = self._generation  # a changed VM report: with the last generation
                vms = self._vms
                if ack is not None:
                    self._vms_due = 0.0
                due = now >= self._retry_at
                learns = list(self._learns.items()) if due else []
            if ack is not None:
                self._send_ack(ack, vms)
            for ip, interface_id in learns:
                if self.stop.is_set() or not self._send_learn(interface_id, ip):
                    break

    def _due(self) -> bool:
        if self.stop.is_set() or self._ack is not None:
            return True
        now = time.monotonic()
        if self._vms_due and self._generation is not None and now >= self._vms_due:
            return True
        return bool(self._learns) and now >= self._retry_at

    def _until_retry(self) -> float:
        waits = [0.5]
        if self._learns:
            waits.append(self._retry_at - time.monotonic())
        if self._vms_due and self._generation is not None:
            waits.append(self._vms_due - time.monotonic())
        return max(0.0, min(waits))

    def _persist(self) -> None:
        if self.state is not None:
            self.state.save_learns(self._learns)

    def _send_ack(self, generation: int, vms: tuple[VmReport, ...] | None) -> None:
        try:
            self.client.ack(self.node, generation, vms)
        except SouthboundError as e:
            # the next subscription brings a config again, and with it a new ack
            log.debug("ack of generation %d not delivered: %s", generation, e)
            if vms is not None:
                with self._cond:  # a VM report is worth sending again meanwhile
                    if not self._vms_due:
                        self._vms_due = time.monotonic() + VM_REPORT_RETRY
            return
        self.acked = generation

    def _send_learn(self, interface_id: str, ip: str) -> bool:
        """One report; False on a transport error (kept, retried after a backoff)."""
        try:
            ok, error = self.client.learn(self.node, interface_id, ip)
        except SouthboundError as e:
            delay = self._retry.delay()
            log.warning("learned %s on %s not reported yet (retry in %.1f s): %s",
                        ip, interface_id, delay, e)  # fmt: skip
            with self._cond:
                self._retry_at = time.monotonic() + delay
                self.learn_retries += 1
            return False
        self._retry.reset()
        with self._cond:
            if self._learns.get(ip) == interface_id:  # a newer claim stays pending
                del self._learns[ip]
                self._persist()
        if ok:
            log.info("controller moved %s to %s", ip, interface_id)
        else:
            log.info(
                "controller refused %s on %s%s", ip, interface_id, f": {error}" if error else ""
            )
        return True
