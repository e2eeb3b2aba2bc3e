"""The connectivity matrix: what each VM should reach (from desired state) and what it did.

Every VM probes the address of every other VM of every tenant. The expected answer is the VM
of the *prober's own* VPC holding that address (overlapping CIDRs: the same address may exist in
another tenant, which must never answer), and only when the route tables of both ends send the
traffic to the local route.
"""

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from openvpc.compiler.compile import best_route, subnet_tables
from openvpc.model.resources import Interface, Snapshot


@dataclass(frozen=True, slots=True)
class Probe:
    src: str  # the probing VM's name
    dst_ip: str
    target: str  # the VM whose address is probed (maybe in another tenant)
    expect: str  # the VM that should answer, "" for none


@dataclass(frozen=True, slots=True)
class Result:
    probe: Probe
    ping: bool
    tcp: str  # the responder's name, "" when nothing answered

    @property
    def ok(self) -> bool:
        return self.ping == bool(self.probe.expect) and self.tcp == self.probe.expect


def expected_probes(snapshot: Snapshot) -> list[Probe]:
    subnets = {s.id: s for s in snapshot.subnets}
    tables = {t.id: t for t in snapshot.route_tables}
    table_of = subnet_tables(snapshot)
    names = {i.id: i.name for i in snapshot.instances}

    def vpc(iface: Interface) -> str:
        return subnets[iface.subnet].vpc

    def local(src: Interface, ip: str) -> bool:
        route = best_route(tables[table_of[src.subnet]], ip)
        return route is not None and route.target == "local"

    ifaces = sorted(snapshot.interfaces, key=lambda i: names.get(i.instance, i.id))
    probes = []
    for a in ifaces:
        for b in ifaces:
            if b.ip == a.ip:  # its own address (or a twin in another tenant) answers locally
                continue
            owner = next((i for i in ifaces if vpc(i) == vpc(a) and i.ip == b.ip), None)
            reachable = owner is not None and local(a, b.ip) and local(owner, a.ip)
            expect = names.get(owner.instance, "") if reachable and owner is not None else ""
            probes.append(Probe(names[a.instance], b.ip, names[b.instance], expect))
    return probes


Runner = Callable[[str, list[str]], tuple[int, str]]  # (vm, argv) -> (exit code, stdout)


def run_probes(probes: Iterable[Probe], run: Runner, python: str, workers: int = 8) -> list[Result]:
    """Ping and TCP-connect each probe from inside its VM; `python` runs openvpc.tools.probe."""

    def one(p: Probe) -> Result:
        code, _ = run(p.src, ["ping", "-c", "1", "-W", "1", p.dst_ip])
        _, out = run(p.src, [python, "-m", "openvpc.tools.probe", "connect", p.dst_ip])
        return Result(p, code == 0, out.strip())

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, probes))
