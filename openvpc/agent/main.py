"""The agent process: four threads around the pure parts, five when it makes VMs.

southbound (follow the controller, reconnect forever), vrouter (the control channel and
reconcile), punts (answer what the vRouter sends up), reporter (acks, ready VMs and learned
addresses), and with `vm_prefix` vms (DHCP in new VMs, removal of those the config dropped).
While the controller is unreachable nothing is flushed: forwarding goes on with the last state,
which the state file keeps across restarts (config and unreported learned addresses).
"""

import logging
import os
import threading
from pathlib import Path

from pyroute2 import netns as pyroute2_netns

from openvpc.agent.desired import Desired
from openvpc.agent.punt_worker import PuntWorker
from openvpc.agent.reporter import Reporter
from openvpc.agent.state_file import AgentState
from openvpc.agent.vm_manager import VmManager
from openvpc.agent.vm_plan import check_prefix
from openvpc.agent.vms import NetnsPlug
from openvpc.agent.vrouter_link import VrouterLink
from openvpc.credentials import Credential, read_secret_file
from openvpc.model.nodeconfig import NodeConfig
from openvpc.process import private_umask, setup_logging, stop_on_signals
from openvpc.southbound.client import Follower, SouthboundClient

log = logging.getLogger("openvpc.agent")

JOIN = 3.0  # seconds each thread gets to finish on stop


class Agent:
    """`secret` is the node's: it proves who we are to the controller and to the vRouter."""

    def __init__(
        self,
        node: str,
        controller: str,
        vrouter: str,
        secret: bytes,
        state: Path | None = None,
        tls_ca: bytes | None = None,
        vm_prefix: str | None = None,
        vm_dhcp: bool = True,
    ) -> None:
        """With `vm_prefix` the agent makes (and removes) the VMs of its config, in namespaces
        named with that prefix only; `vm_dhcp` runs a DHCP client in each new one."""
        self.node = node
        self.stop = threading.Event()
        self.state = AgentState(state)
        self.desired = Desired(self.state)
        credential = Credential("node", secret, node)
        self.client = SouthboundClient(controller, credential=credential, tls_ca=tls_ca)
        self.reporter = Reporter(self.client, node, self.stop, self.state)
        self.vms: VmManager | None = None
        if vm_prefix is not None:
            self.vms = VmManager(
                check_prefix(vm_prefix),
                NetnsPlug(),
                self.reporter,
                self.stop,
                self.state,
                vm_dhcp,
                state.parent if state is not None else None,
            )
        self.punts = PuntWorker(self.desired, self.reporter, self.stop)
        self.link = VrouterLink(
            node,
            vrouter,
            self.desired,
            self.reporter,
            self.punts.offer,
            self.stop,
            secret,
            self.vms,
        )
        self.punts.link = self.link
        self.follower = Follower(self.client, node, self._on_config)
        self._threads = [
            threading.Thread(target=self.follower.run, name="southbound", daemon=True),
            threading.Thread(target=self.link.run, name="vrouter", daemon=True),
            threading.Thread(target=self.punts.run, name="punts", daemon=True),
            threading.Thread(target=self.reporter.run, name="reporter", daemon=True),
        ]
        if self.vms is not None:
            self._threads.append(threading.Thread(target=self.vms.run, name="vms", daemon=True))

    def _on_config(self, config: NodeConfig) -> None:
        if config.node != self.node:
            log.error("controller sent the config of %s to %s: ignored", config.node, self.node)
            return
        log.info("config generation %d from the controller", config.generation)
        self.desired.offer(config)

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def shutdown(self) -> None:
        """Stop every thread; the vRouter keeps its state (it forwards without us), and the VMs
        stay as they are."""
        self.stop.set()
        self.follower.stop()
        self.link.close()
        self.reporter.wake()
        if self.vms is not None:
            self.vms.wake()
        for t in self._threads:
            t.join(JOIN)
            if t.is_alive():
                log.warning("thread %s did not stop in %.0f s", t.name, JOIN)
        self.client.close()
        log.info(
            "punts handled: %s",
            ", ".join(f"{k} {v}" for k, v in sorted(self.punts.snapshot().items())) or "none",
        )


def enter_netns(name: str) -> None:
    """Move this process (before it starts threads) into network namespace `name`."""
    if not os.path.exists(os.path.join("/var/run/netns", name)):
        raise OSError(f"network namespace {name!r} does not exist")
    pyroute2_netns.setns(name, flags=0)


def run_agent(
    node: str,
    controller: str,
    vrouter: str,
    secret_file: str,
    netns: str | None = None,
    verbose: bool = False,
    state: str | None = None,
    tls_ca: str | None = None,
    vm_prefix: str | None = None,
    vm_dhcp: bool = True,
) -> int:
    """The `openvpc agent` command: 0 after SIGTERM/SIGINT, 1 when it cannot start."""
    setup_logging(verbose)
    private_umask()
    try:
        secret = read_secret_file(secret_file)
        ca = Path(tls_ca).read_bytes() if tls_ca else None
        if netns is not None:
            enter_netns(netns)
        agent = Agent(
            node,
            controller,
            vrouter,
            secret,
            Path(state) if state else None,
            ca,
            vm_prefix,
            vm_dhcp,
        )
    except (OSError, ValueError) as e:
        log.error("agent: %s", e)
        return 1
    stop = threading.Event()
    stop_on_signals(stop)
    agent.start()
    log.info("agent for %s: controller %s, vrouter %s", node, controller, vrouter)
    while not stop.wait(0.5):
        pass
    agent.shutdown()
    log.info("agent stopped")
    return 0
