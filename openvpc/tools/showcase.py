"""The main job: bring a topology up on namespaces and print its connectivity matrix, expected
(from the store's desired state) against observed (real ping and TCP from inside each VM)."""

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table

from openvpc.lab import nsexec, real
from openvpc.lab.real import LabStatus
from openvpc.tools.matrix import Result, expected_probes, run_probes

PROBE_TIMEOUT = 15.0


class Responders:
    """A naming TCP responder in every VM, stopped on exit (no process is left behind)."""

    def __init__(self, st: LabStatus) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.vms = {vm.name: vm for vm in st.vms}

    def __enter__(self) -> "Responders":
        for name, vm in self.vms.items():
            argv = [sys.executable, "-m", "openvpc.tools.probe", "serve", name]
            self.procs.append(nsexec.popen(vm.netns, argv, stdout=subprocess.DEVNULL))
        self._wait_listening()
        return self

    def _wait_listening(self, timeout: float = 10.0) -> None:
        """Each responder answers its own VM on loopback before probing starts."""
        deadline = time.monotonic() + timeout
        pending = set(self.vms)
        while pending and time.monotonic() < deadline:
            for name in sorted(pending):
                out = nsexec.run(
                    self.vms[name].netns,
                    [sys.executable, "-m", "openvpc.tools.probe", "connect", "127.0.0.1"],
                    timeout=PROBE_TIMEOUT,
                )
                if out.stdout.strip() == name:
                    pending.discard(name)
            if pending:
                time.sleep(0.2)

    def __exit__(self, *exc: object) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def probe_lab(st: LabStatus) -> list[Result]:
    netns = {vm.name: vm.netns for vm in st.vms}

    def run(vm: str, argv: list[str]) -> tuple[int, str]:
        out = nsexec.run(netns[vm], argv, timeout=PROBE_TIMEOUT)
        return out.returncode, out.stdout

    with Responders(st):
        return run_probes(expected_probes(real.api_snapshot(st.name)), run, sys.executable)


def render_matrix(results: list[Result]) -> Table:
    """Rows probe; a column is a VM's address, probed from every other VM of every tenant."""
    sources = sorted({r.probe.src for r in results})
    address = {r.probe.target: r.probe.dst_ip for r in results}
    cell = {(r.probe.src, r.probe.target): r for r in results}
    table = Table(title="who answers ping + TCP at each VM's address, seen from each VM")
    table.add_column("from \\ to")
    for t in sorted(address):
        table.add_column(t, justify="center")
    for s in sources:
        row = []
        for t in sorted(address):
            r = cell.get((s, t))
            if r is None:
                row.append("[dim]-[/]")
                continue
            seen = r.tcp or ("ping" if r.ping else ".")
            style = "green" if r.ok else "bold red"
            row.append(f"[{style}]{seen}[/]" + ("" if r.ok else f" ({r.probe.expect or '.'})"))
        table.add_row(s, *row)
    return table


def run_showcase(path: str, console: Console, progress: Callable[[str], None]) -> int:
    """A topology file's lab (its tenants applied through the API), then the matrix."""
    return show_matrix(real.up(path, progress=progress), console)


# (tenant, the script's arguments): red on VXLAN, its db blackholing web; blue on MPLS over
# GRE, its db blackholing app -- as examples/two-tenants.yaml says it
CLI_TENANTS = (("red", ("r", "vxlan", "10.0.1.0/24")), ("blue", ("b", "mplsogre", "10.0.2.0/24")))
CLI_LAB = "examples/empty.yaml"
CLI_SCRIPT = "examples/two-tenants.sh"


def run_cli_demo(
    console: Console, progress: Callable[[str], None], find: Callable[[str], str]
) -> int:
    """The main job: an empty lab, two tenants, and each tenant's VPC built with the AWS CLI
    (examples/two-tenants.sh) against the lab's endpoint; then the matrix. `find` locates the
    example files from any directory."""
    from openvpc.lab import tenants
    from openvpc.lab.topology import load_topology

    name = load_topology(find(CLI_LAB)).name
    if name in real.labs():
        progress(f"lab {name}: taking down the previous run's lab")
        real.down(name)
    st = real.up(find(CLI_LAB), progress=progress)
    url, region = real.api_endpoint(st.name)
    bin_dir = str(Path(sys.executable).parent)  # aws and openvpc of this environment
    for tenant, args in CLI_TENANTS:
        tenants.create_for_lab(Path(st.state_dir), tenant)
        key, secret = real.tenant_key(st.name, tenant)
        env = dict(os.environ)
        env.update(
            PATH=f"{bin_dir}:{env.get('PATH', '')}",
            AWS_ACCESS_KEY_ID=key,
            AWS_SECRET_ACCESS_KEY=secret,
            AWS_DEFAULT_REGION=region,
            AWS_ENDPOINT_URL=url,
            AWS_PAGER="",
        )
        env.pop("AWS_PROFILE", None)
        console.rule(f"tenant {tenant}: {CLI_SCRIPT} {' '.join(args)} (AWS CLI)")
        subprocess.run(["bash", find(CLI_SCRIPT), *args], env=env, check=True, timeout=300)
    st = real.wait_vms(st.name, expect=8)
    return show_matrix(st, console)


def show_matrix(st: LabStatus, console: Console) -> int:
    results = probe_lab(st)
    console.print(render_matrix(results))
    targets = sorted({(r.probe.target, r.probe.dst_ip) for r in results})
    console.print("addresses: " + ", ".join(f"{t} {ip}" for t, ip in targets), highlight=False)
    console.print(
        "A cell names the VM that answered at that address: its holder in the prober's own VPC."
        " '.' nobody answered (an address the prober's VPC does not use, or a route table that"
        " blackholes the path); '-' the prober's own address; red: not as expected (expected"
        " in brackets).",
        highlight=False,
    )
    bad = [r for r in results if not r.ok]
    for r in bad:
        console.print(
            f"[red]MISMATCH[/] {r.probe.src} -> {r.probe.target} ({r.probe.dst_ip}): expected"
            f" {r.probe.expect or 'no answer'}, ping {'answered' if r.ping else 'silent'},"
            f" TCP {r.tcp or 'silent'}"
        )
    console.print(f"{len(results) - len(bad)}/{len(results)} probes as expected.")
    first = st.vms[0].name if st.vms else "VM"
    console.print(
        f"The lab stays up. Try: openvpc exec {first} -- ip addr;"
        f" openvpc status; tear down: openvpc down {st.name}",
        highlight=False,
    )
    return 1 if bad else 0
