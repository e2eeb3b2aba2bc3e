"""The agent's VMs: made before the vRouter is given a config naming their TAPs (`prepare`, on
the vRouter link's thread), reported ready once the vRouter holds their ports (`applied`),
then configured by DHCP and, when their ports leave the config, removed, both on a thread of
their own so that neither ever blocks reconciling.

Only namespaces under the agent's prefix are ever made, and only the VMs the state file says
this agent made are ever removed (each with the token its plug returned: a namespace someone
made again under the same name is not ours). A restarted agent adopts its VMs as they are;
stopping the agent leaves them running.
"""

import logging
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from openvpc.agent import vms as shell
from openvpc.agent.reporter import Reporter
from openvpc.agent.state_file import AgentState
from openvpc.agent.vm_plan import (
    Tap,
    VmSpec,
    after_apply,
    attached,
    before_apply,
    merge,
    report,
    wanted_vms,
)
from openvpc.model.nodeconfig import NodeConfig, VmReport
from openvpc.model.vifnames import DEFAULT_DATAPATH, Datapath

log = logging.getLogger("openvpc.agent")

DHCP_TIMEOUT = 30.0  # one DHCP client run; then it is stopped and tried again
DHCP_RETRY = 5.0  # after a run that got no lease
POLL = 0.2  # how often running DHCP clients are looked at
IDLE = 1.0  # the longest wait with nothing to do (the stop flag is seen within this)

TapKey = tuple[str, str]  # (netns, ifname)


@dataclass
class _Client:
    vm: VmSpec
    tap: Tap
    proc: "subprocess.Popen[bytes]"
    deadline: float


class VmManager:
    def __init__(
        self,
        prefix: str,
        plug: shell.Plug,
        reporter: Reporter,
        stop: threading.Event,
        state: AgentState,
        dhcp: bool = True,
        log_dir: Path | None = None,
    ) -> None:
        self.prefix = prefix
        self.plug = plug
        self.reporter = reporter
        self.stop = stop
        self.state = state
        self.dhcp = dhcp
        self.log_dir = log_dir
        self._ops = threading.Lock()  # plug and unplug one at a time, `made` with them
        self._cond = threading.Condition()  # the rest, shared with the VM thread
        self._made: dict[str, tuple[VmSpec, int]] = {}
        self._prepared: dict[str, VmSpec] = {}  # what the vRouter is being given
        self._applied: dict[str, VmSpec] = {}  # what the vRouter holds (its last config)
        self._removable = False  # whether the last applied config came from the controller
        self._on_vrouter: dict[tuple[str, str, str], tuple[str, str]] = {}
        self._leases: dict[str, str] = {}  # interface id -> "a.b.c.d/len"
        self._clients: dict[TapKey, _Client] = {}
        self._retry_at: dict[TapKey, float] = {}
        self._work = False
        self._refused: list[str] = []
        # what the vRouter's hello said it runs: TAPs for python, veths for ebpf
        self.datapath: Datapath = DEFAULT_DATAPATH
        self._adopt()

    # -- start ---------------------------------------------------------------------------
    def _adopt(self) -> None:
        """Take over the VMs the state file records that are still ours and still there."""
        for ns, (vm, token) in sorted(self.state.vms.items()):
            if not ns.startswith(self.prefix) or not self.plug.exists(vm, token):
                log.warning("VM %s: recorded but gone or not ours any more; forgotten", ns)
                continue
            self._made[ns] = (vm, token)
            for tap in vm.taps:
                ip = shell.address(vm, tap)
                if ip is not None:
                    self._leases[tap.interface_id] = ip
        if self._made or self.state.vms:
            log.info("adopted %d VMs: %s", len(self._made), ", ".join(sorted(self._made)) or "-")
            self.state.save_vms(self._made)

    def made(self) -> dict[str, VmSpec]:
        with self._cond:
            return {ns: vm for ns, (vm, _) in self._made.items()}

    # -- the vRouter link's side --------------------------------------------------------
    def prepare(self, config: NodeConfig) -> None:
        """Make or grow the VMs `config` names, before the vRouter is asked to attach them;
        one that cannot be made is logged (the vRouter then refuses its port, and the link
        retries the whole config later, calling this again)."""
        wanted, refused = wanted_vms(config, self.prefix, self.datapath)
        if refused != self._refused:
            for why in refused:
                log.error("no VM made: %s", why)
            self._refused = refused
        with self._ops:
            with self._cond:
                self._prepared = wanted
            for target, have in before_apply(wanted, self.made()):
                self._plug(target, have)

    def applied(self, config: NodeConfig, from_controller: bool) -> None:
        """The vRouter now holds `config`: report its VMs ready (before the link's ack goes
        up with them), and wake the VM thread for DHCP and for removals (only what the
        controller dropped is removed; a config from the state file removes nothing)."""
        wanted, _ = wanted_vms(config, self.prefix, self.datapath)
        with self._cond:
            self._applied = wanted
            self._removable = from_controller
            self._on_vrouter = attached(config)
            self._work = True
            self._publish()
            self._cond.notify_all()

    # -- the VM thread ---------------------------------------------------------------------
    def run(self) -> None:
        try:
            while not self.stop.is_set():
                with self._cond:
                    timeout = POLL if self._clients or self._retry_at else IDLE
                    self._cond.wait_for(lambda: self._work or self.stop.is_set(), timeout)
                    self._work = False
                if self.stop.is_set():
                    break
                try:
                    self.step()
                except Exception:  # a bug or an odd kernel answer must not end the thread
                    log.exception("VM thread: retrying in %.0f s", IDLE)
                    self.stop.wait(IDLE)
        finally:
            self._stop_clients()

    def step(self) -> None:
        """One round of the VM thread: removals the applied config allows, then DHCP."""
        self._settle()
        self._poll_dhcp()
        self._start_dhcp()

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _settle(self) -> None:
        """Remove what the vRouter no longer holds and the link is not about to give it."""
        with self._ops:
            with self._cond:
                if not self._removable:
                    return
                wanted = merge(self._applied, self._prepared)
            shrink, remove = after_apply(wanted, self.made())
            for target, have in shrink:
                self._plug(target, have)
            for vm in remove:
                self._unplug(vm)

    def _plug(self, target: VmSpec, have: VmSpec | None) -> None:
        """With `_ops` held. Recorded before it is made: a crash in between leaves a record
        `down` finds nothing for, never a VM nobody records."""
        ns = target.netns
        with self._cond:
            previous = self._made.get(ns)
            # every TAP it may hold meanwhile; a VM yet to be made has no token (-1 never
            # matches: if we crash before it is written, a restarted agent leaves it alone)
            record = target if have is None else merge({ns: have}, {ns: target})[ns]
            self._made[ns] = (record, previous[1] if previous is not None else -1)
            self.state.save_vms(self._made)
        try:
            token = self.plug.plug(target, have)
        except Exception as e:  # PlugError, or a surprise: either way the link goes on
            if isinstance(e, shell.PlugError):
                log.error("VM %s: %s", ns, e)
            else:
                log.exception("VM %s: plug failed", ns)
            with self._cond:
                if previous is None:
                    del self._made[ns]
                else:
                    self._made[ns] = previous
                self.state.save_vms(self._made)
            return
        with self._cond:
            self._made[ns] = (target, token)
            self._forget(have, target)
            self.state.save_vms(self._made)
            self._publish()
        log.info("VM %s: %s (%s)", ns, "made" if have is None else "changed", _taps(target))

    def _unplug(self, vm: VmSpec) -> None:
        """With `_ops` held; the record goes only once the VM is gone."""
        self._drop_clients(vm.netns)
        self.plug.unplug(vm)
        with self._cond:
            self._made.pop(vm.netns, None)
            self._forget(vm, None)
            self.state.save_vms(self._made)
            self._publish()
        for tap in vm.taps:
            shell.remove_log(self._log(vm, tap))
        log.info("VM %s: removed", vm.netns)

    def _forget(self, old: VmSpec | None, new: VmSpec | None) -> None:
        """With `_cond` held: leases and retries of TAPs that `new` no longer has."""
        if old is None:
            return
        for tap in old.taps:
            if new is None or tap not in new.taps:
                self._leases.pop(tap.interface_id, None)
                self._retry_at.pop((old.netns, tap.ifname), None)

    def _publish(self) -> None:
        """With `_cond` held: what the controller hears of our VMs (full state each time)."""
        made = [vm for vm, _ in self._made.values()]
        self.reporter.report_vms(report(made, self._on_vrouter, self._leases))

    def reports(self) -> tuple[VmReport, ...]:
        with self._cond:
            return report([vm for vm, _ in self._made.values()], self._on_vrouter, self._leases)

    # -- DHCP --------------------------------------------------------------------------------
    def _log(self, vm: VmSpec, tap: Tap) -> Path | None:
        if self.log_dir is None:
            return None
        return self.log_dir / f"dhclient-{vm.netns}-{tap.ifname}.log"

    def _start_dhcp(self) -> None:
        if not self.dhcp:
            return
        now = time.monotonic()
        with self._cond:
            # one client at a time per VM: stopping one's daemon must not stop another's
            busy = {ns for ns, _ in self._clients}
            due: dict[str, tuple[VmSpec, Tap]] = {}
            for vm, _ in self._made.values():
                for tap in vm.taps:
                    if (
                        vm.netns not in busy
                        and vm.netns not in due
                        and (vm.netns, tap.ifname, tap.interface_id) in self._on_vrouter
                        and tap.interface_id not in self._leases
                        and self._retry_at.get((vm.netns, tap.ifname), 0.0) <= now
                    ):
                        due[vm.netns] = (vm, tap)
        for vm, tap in due.values():
            if self.stop.is_set():
                return
            shell.stop_dhclient(vm)  # one a killed agent left behind
            try:
                proc = shell.start_dhclient(vm, tap, self._log(vm, tap))
            except OSError as e:
                log.error("VM %s: cannot start its DHCP client: %s", vm.netns, e)
                with self._cond:
                    self._retry_at[(vm.netns, tap.ifname)] = now + DHCP_RETRY
                continue
            with self._cond:
                self._clients[(vm.netns, tap.ifname)] = _Client(
                    vm, tap, proc, time.monotonic() + DHCP_TIMEOUT
                )

    def _poll_dhcp(self) -> None:
        with self._cond:
            clients = list(self._clients.items())
        for key, client in clients:
            rc = client.proc.poll()
            timed_out = rc is None and time.monotonic() > client.deadline
            if rc is None and not timed_out:
                continue
            if timed_out:
                client.proc.kill()
                client.proc.wait(5.0)
            shell.stop_dhclient(client.vm)  # the daemon it left: nothing stays running
            ip = shell.address(client.vm, client.tap)
            with self._cond:
                if self._clients.get(key) is not client:
                    continue
                del self._clients[key]
                if ip is None:
                    why = "no lease in time" if timed_out else f"exit {rc}"
                    log.warning("VM %s: DHCP on %s failed (%s)", key[0], key[1], why)
                    self._retry_at[key] = time.monotonic() + DHCP_RETRY
                    continue
                self._retry_at.pop(key, None)
                self._leases[client.tap.interface_id] = ip
                self._publish()
            log.info("VM %s: %s bound %s", key[0], key[1], ip)

    def _drop_clients(self, ns: str) -> None:
        with self._cond:
            gone = [(k, c) for k, c in self._clients.items() if k[0] == ns]
            for k, _ in gone:
                del self._clients[k]
        for _, client in gone:
            _end(client)

    def _stop_clients(self) -> None:
        """On stop: DHCP clients still running end; the VMs themselves stay."""
        with self._cond:
            clients = list(self._clients.values())
            self._clients.clear()
        for client in clients:
            _end(client)
            shell.stop_dhclient(client.vm)


def _end(client: _Client) -> None:
    if client.proc.poll() is None:
        client.proc.kill()
    try:
        client.proc.wait(5.0)
    except subprocess.TimeoutExpired:
        log.warning("VM %s: its DHCP client did not end", client.vm.netns)


def _taps(vm: VmSpec) -> str:
    return ", ".join(f"{t.ifname} {t.mac} for {t.interface_id}" for t in vm.taps)
