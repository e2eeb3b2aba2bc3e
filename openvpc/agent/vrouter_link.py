"""The agent's side of the vRouter control channel: connect, reconcile, repeat.

On every (re)connect it says hello and diffs the desired config against the vRouter's dump, so
a restarted agent adopts what is installed (it writes only differences, never flushes) and a
restarted vRouter (a new boot id, an empty dump) is programmed in full. Before the controller
has spoken, the desired config is the one the state file kept.
"""

import logging
import threading
import time
from collections.abc import Callable

from openvpc.agent.desired import Desired
from openvpc.agent.reconcile import config_from_dump, parse_dump, reconcile
from openvpc.agent.reporter import Reporter
from openvpc.agent.vm_manager import VmManager
from openvpc.model.nodeconfig import NodeConfig
from openvpc.model.vifnames import DEFAULT_DATAPATH, check_datapath
from openvpc.southbound.backoff import Backoff
from openvpc.vrouter.control import ControlClient, ControlError

log = logging.getLogger("openvpc.agent")

POLL = 0.1  # how often a connected link notices that the vRouter went away


class VrouterLink:
    def __init__(
        self,
        node: str,
        path: str,
        desired: Desired,
        reporter: Reporter,
        on_packet: Callable[[bytes], None],
        stop: threading.Event,
        secret: bytes,
        vms: VmManager | None = None,
    ) -> None:
        self.node = node
        self.vms = vms  # makes the VMs a config names before their ports are set
        self.secret = secret
        self.path = path
        self.desired = desired
        self.reporter = reporter
        self.on_packet = on_packet
        self.stop = stop
        self.client: ControlClient | None = None  # set while connected; for the punt worker
        self.boot_id: str | None = None
        self._connect_backoff = Backoff(0.02, 0.25)  # a refused unix connect is cheap
        self._retry_backoff = Backoff(0.2, 5.0)

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                vr = ControlClient(self.path, self.on_packet)
            except OSError as e:
                log.debug("vrouter %s: %s", self.path, e)
                self.stop.wait(self._connect_backoff.delay())
                continue
            self._connect_backoff.reset()
            try:
                self._serve(vr)
                if not self.stop.is_set():
                    log.warning("vrouter channel closed; reconnecting")
            except ControlError as e:
                if not self.stop.is_set():
                    log.warning("vrouter channel: %s; reconnecting", e)
            finally:
                self.client = None
                vr.close()

    def close(self) -> None:
        client = self.client
        if client is not None:
            client.close()

    def _serve(self, vr: ControlClient) -> None:
        hello = vr.hello(self.secret)
        if not isinstance(hello, dict):
            raise ControlError(f"bad hello reply {hello!r:.80}")
        boot_id = str(hello.get("boot_id"))
        if boot_id != self.boot_id:
            state = "a new vRouter" if self.boot_id is not None else "vRouter"
            log.info("%s boot %s at generation %s", state, boot_id, hello.get("generation"))
        self.boot_id = boot_id
        if self.vms is not None:
            try:
                self.vms.datapath = check_datapath(str(hello.get("datapath", DEFAULT_DATAPATH)))
            except ValueError as e:
                raise ControlError(f"vrouter hello: {e}") from e
        self.client = vr
        seen = -1  # reconcile at once on every connect
        retry_at: float | None = None
        while not self.stop.is_set() and not vr.closed.is_set():
            version, config = self.desired.latest()
            due = retry_at is not None and time.monotonic() >= retry_at
            if version != seen or due:
                seen = version
                if self.sync(vr, config):
                    retry_at = None
                    self._retry_backoff.reset()
                else:
                    retry_at = time.monotonic() + self._retry_backoff.delay()
            self.desired.wait_past(seen, POLL)

    def sync(self, vr: ControlClient, config: NodeConfig | None) -> bool:
        """One dump-diff-write round towards `config`; False when the vRouter refused an op
        (retried later). Raises ControlError when the channel breaks."""
        installed = parse_dump(vr.request("dump"))
        for error in installed.errors:
            log.warning("vrouter dump: %s", error)
        saved = False
        if config is None:
            config = self.desired.saved()
            if config is not None and (installed.generation or 0) > config.generation:
                config = None  # the vRouter holds more than the file: never roll it back
            saved = config is not None
        if config is None:
            # headless since start with no state file: keep what is there, for the proxies
            self.desired.adopt(config_from_dump(self.node, installed))
            log.info(
                "no config from the controller yet: adopted %d objects as they are",
                len(installed.objects),
            )
            return True
        if saved:
            log.info(
                "no config from the controller yet: rebuilding generation %d from the state file",
                config.generation,
            )
        if self.vms is not None:
            self.vms.prepare(config)
        ops = reconcile(config, installed.objects)
        if ops or installed.generation != config.generation:
            try:
                vr.request("batch", ops=ops, generation=config.generation)
            except ControlError as e:
                if vr.closed.is_set():
                    raise
                log.error("vrouter refused generation %d: %s", config.generation, e)
                return False
            deletes = sum(op["op"] == "delete" for op in ops)
            log.info(
                "generation %d applied: %d sets, %d deletes",
                config.generation,
                len(ops) - deletes,
                deletes,
            )
        else:
            log.info("generation %d already in place", config.generation)
        if self.vms is not None:
            self.vms.applied(config, from_controller=not saved)
        if not saved:  # the controller hears only of what it sent us
            self.reporter.ack(config.generation)
        return True
