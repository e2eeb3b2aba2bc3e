"""The `openvpc` command line."""

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from openvpc.vrouter import limits

app = typer.Typer(help="openvpc: a self-hosted, multi-tenant VPC.", no_args_is_help=True)


def _version(show: bool) -> None:
    if show:
        from importlib.metadata import version

        Console().print(f"openvpc {version('openvpc')}", markup=False, highlight=False)
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="print the version and exit"
        ),
    ] = False,
) -> None:
    """openvpc: a self-hosted, multi-tenant VPC."""


@app.command()
def demo(
    file: str | None = typer.Argument(
        None,
        help="a topology file to bring up instead (default: an empty lab whose two tenants "
        "build their VPCs with the AWS CLI, examples/two-tenants.sh)",
    ),
    sim: bool = typer.Option(False, "--sim", help="the in-memory fabric instead (no root)"),
) -> None:
    """Bring a lab up and print who reaches whom, expected against observed."""
    if not sim:
        import subprocess

        from openvpc.tools.showcase import run_cli_demo, run_showcase

        _need_root()
        console = Console()

        def progress(message: str) -> None:
            console.print(f"[dim]{message}[/]")

        try:
            if file is None:
                code = run_cli_demo(console, progress, example)
            else:
                code = run_showcase(example(file), console, progress)
        except (*_lab_errors(), subprocess.SubprocessError) as exc:  # type: ignore[misc]
            Console(stderr=True).print(str(exc), style="red", markup=False, highlight=False)
            raise typer.Exit(1) from None
        raise typer.Exit(code)
    from openvpc.tools.demo import figure13_walk, run_demo

    console = Console()
    rows = run_demo()
    for scheme in dict.fromkeys(r.scheme for r in rows):
        table = Table(title=f"ping from each tenant's web VM over {scheme}")
        for col in ("from", "to", "expected", "observed", "carried by (both ways)", ""):
            table.add_column(col)
        for r in (r for r in rows if r.scheme == scheme):
            mark = "[green]ok[/]" if r.ok else "[red]MISMATCH[/]"
            table.add_row(r.source, r.target, r.expected, r.observed, r.carried_by, mark)
        console.print(table)
    console.rule("the seed's Figure 13 walk: vm-1a -> vm-2a, MPLS over GRE, L3 underlay")
    console.print(figure13_walk(), highlight=False, markup=False)
    bad = [r for r in rows if not r.ok]
    console.print(
        f"{len(rows) - len(bad)} of {len(rows)} probes as expected; "
        "the two tenants share addresses and MACs and never reach each other."
    )
    if bad:
        raise typer.Exit(1)


def example(path: str) -> str:
    """A file as given when it exists; else the same relative path under the checkout's
    examples (so `openvpc up examples/two-tenants.yaml` works from any directory)."""
    from pathlib import Path

    given = Path(path)
    if given.exists() or given.is_absolute():
        return path
    root = Path(__file__).resolve().parent.parent
    for candidate in (root / given, root / "examples" / given):
        if candidate.is_file():
            return str(candidate)
    return path


def _lab_errors() -> tuple[type[Exception], ...]:
    from openvpc.lab.netns import NetnsError
    from openvpc.lab.nsexec import NsExecError
    from openvpc.lab.real import LabError
    from openvpc.lab.state import StateError

    return (LabError, NetnsError, NsExecError, StateError, ValueError, OSError)


def _need_root() -> None:
    import os

    if os.geteuid() != 0:
        Console(stderr=True).print("[red]the namespace lab needs root[/]")
        raise typer.Exit(1)


@app.command()
def up(
    file: str = typer.Argument(..., help="topology file (YAML, see docs/topology.md)"),
    dhcp: bool = typer.Option(True, "--dhcp/--no-dhcp", help="run a DHCP client in each VM"),
) -> None:
    """Bring up a lab: namespaces, underlay, controller, and a vRouter + agent per node."""
    from openvpc.lab import real
    from openvpc.lab.report import print_status

    _need_root()
    console = Console()
    try:
        st = real.up(example(file), dhcp=dhcp, progress=lambda m: console.print(f"[dim]{m}[/]"))
    except _lab_errors() as exc:
        # unwrapped, as `validate` prints it: a field's path and message stay on one line
        Console(stderr=True, soft_wrap=True).print(
            str(exc), style="red", markup=False, highlight=False
        )
        raise typer.Exit(1) from None
    print_status(console, st)
    vm = st.vms[0].name if st.vms else "VM"
    console.print(f"run in a VM: openvpc exec --lab {st.name} {vm} -- ip addr", highlight=False)
    console.print(f"tear down:   openvpc down {st.name}", highlight=False)


@app.command("apply")
def apply_(
    file: str = typer.Argument(..., help="topology file of a lab that is up"),
) -> None:
    """Bring a running lab to what its topology file says, through the EC2 API: only the
    differences are made (resources are matched by their Name tags)."""
    from openvpc.lab import real

    _need_root()
    console = Console()
    try:
        done = real.apply_file(example(file), progress=lambda m: console.print(f"[dim]{m}[/]"))
    except _lab_errors() as exc:
        Console(stderr=True, soft_wrap=True).print(
            str(exc), style="red", markup=False, highlight=False
        )
        raise typer.Exit(1) from None
    console.print(f"{len(done)} change(s)" if done else "nothing to change", highlight=False)


@app.command()
def validate(
    file: str = typer.Argument(..., help="topology file (YAML, see docs/topology.md)"),
) -> None:
    """Check a topology file as `up` would, creating nothing (no root needed)."""
    from openvpc.lab.preflight import check_topology
    from openvpc.lab.topology import TopologyError

    try:
        topo, _ = check_topology(example(file))
    except TopologyError as exc:
        # unwrapped: the field's path and the message stay on one line for scripts
        Console(stderr=True, soft_wrap=True).print(
            str(exc), style="red", markup=False, highlight=False
        )
        raise typer.Exit(1) from None
    vms = sum(1 for _ in topo.vms())
    Console(soft_wrap=True).print(
        f"{file}: lab {topo.name} is valid ({len(topo.nodes)} nodes, "
        f"{len(topo.tenants)} tenants, {vms} VMs)",
        markup=False,
        highlight=False,
    )


@app.command()
def status(lab: str | None = typer.Argument(None, help="lab name (default: the only one)")) -> None:
    """Nodes, processes, agents' connection and applied generation, and VMs of a lab."""
    from openvpc.lab import real
    from openvpc.lab.report import print_status

    _need_root()
    try:
        st = real.status(lab)
    except _lab_errors() as exc:
        Console(stderr=True).print(str(exc), style="red", markup=False, highlight=False)
        raise typer.Exit(1) from None
    print_status(Console(), st)


@app.command(
    "exec",
    context_settings={"allow_interspersed_args": False, "ignore_unknown_options": True},
)
def exec_(
    vm: Annotated[str, typer.Argument(help="VM name, instance id or instance name")],
    command: Annotated[list[str], typer.Argument(help="command to run inside the VM (after --)")],
    lab: Annotated[
        str | None, typer.Option("--lab", help="lab name (default: the only one)")
    ] = None,
) -> None:
    """Run a command inside a VM's namespace; exits with the command's exit code."""
    from openvpc.lab import nsexec, real

    _need_root()
    try:
        ns = real.vm_namespace(vm, lab)
        # options after VM are not parsed, so click hands the "--" separator through
        nsexec.exec_in(ns, command[1:] if command[:1] == ["--"] else command)
    except _lab_errors() as exc:
        Console(stderr=True).print(str(exc), style="red", markup=False, highlight=False)
        raise typer.Exit(125) from None


@app.command()
def flows(
    node: Annotated[str, typer.Argument(help="compute node name")],
    lab: Annotated[
        str | None, typer.Option("--lab", help="lab name (default: the only one)")
    ] = None,
    vrf: Annotated[int | None, typer.Option("--vrf", help="only this VRF id")] = None,
    limit: Annotated[int, typer.Option("--limit", help="at most this many flows")] = 1000,
    as_json: Annotated[bool, typer.Option("--json", help="print the records as JSON")] = False,
) -> None:
    """A node's flows: tuple, action, the rule that allowed or denied it (security group rule,
    or network ACL entry), packets, bytes and idle seconds."""
    import json

    from openvpc.lab import real
    from openvpc.lab.report import flow_table

    _need_root()
    try:
        found = real.observe(node, "flows", lab, vrf=vrf, limit=limit)
    except _lab_errors() as exc:
        Console(stderr=True).print(str(exc), style="red", markup=False, highlight=False)
        raise typer.Exit(1) from None
    if as_json:
        print(json.dumps(found, indent=1))
    else:
        Console().print(flow_table(node, found))


@app.command()
def down(lab: str | None = typer.Argument(None, help="lab name (default: the only one)")) -> None:
    """Stop a lab's processes and remove everything it created."""
    from openvpc.lab import real

    _need_root()
    warn = Console(stderr=True)
    try:
        done = real.down(lab, report=lambda m: warn.print(m, style="yellow", markup=False))
    except _lab_errors() as exc:
        Console(stderr=True).print(str(exc), style="red", markup=False, highlight=False)
        raise typer.Exit(1) from None
    Console().print("lab removed" if done else "no such lab: nothing to do")


@app.command()
def vrouter(
    control: str = typer.Option(..., "--control", help="unix socket path for the agent"),
    fabric: str = typer.Option(..., "--fabric", help="the underlay interface"),
    secret_file: str = typer.Option(
        ..., "--secret-file", help="the node's secret (0600): its agent must prove it"
    ),
    netns: str | None = typer.Option(None, "--netns", help="network namespace to run in"),
    flow_capacity: int | None = typer.Option(
        None,
        "--flow-capacity",
        help="flow entries on this node (default: sized from its memory, "
        f"{limits.MIN_FLOW_CAPACITY}-{limits.MAX_FLOW_CAPACITY})",
    ),
    vrf_flow_quota: int | None = typer.Option(
        None,
        "--vrf-flow-quota",
        help=f"flow entries one VRF may hold (default: 1/{limits.VRF_SHARE} of the capacity)",
    ),
    vif_hold_limit: int = typer.Option(
        limits.DEFAULT_VIF_HOLD_LIMIT,
        "--vif-hold-limit",
        help="flows awaiting the agent per vif (per VRF on the fabric)",
    ),
    vif_punt_rate: float = typer.Option(
        limits.DEFAULT_VIF_PUNT_RATE,
        "--vif-punt-rate",
        help="packets per second one vif may send the agent (first packets, ARP, DHCP, DNS)",
    ),
    vif_punt_burst: int = typer.Option(
        limits.DEFAULT_VIF_PUNT_BURST, "--vif-punt-burst", help="burst above --vif-punt-rate"
    ),
    datapath: str = typer.Option(
        "python",
        "--datapath",
        help="ebpf: tc programs forward, this process is their slow path (VMs on veths); "
        "python: this process forwards everything (VMs on TAPs)",
    ),
) -> None:
    """Run a compute node's forwarding plane (vRouter) until SIGTERM or SIGINT."""
    import logging

    from openvpc.model.vifnames import check_datapath
    from openvpc.vrouter.daemon import serve

    try:
        node_limits = limits.NodeLimits(
            limits.flow_capacity_for(_memory_bytes()) if flow_capacity is None else flow_capacity,
            vrf_flow_quota,
            vif_hold_limit,
            vif_punt_rate,
            vif_punt_burst,
        )
        chosen = check_datapath(datapath)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    raise typer.Exit(serve(control, fabric, secret_file, netns, node_limits, chosen))


def _memory_bytes() -> int | None:
    """The node's memory (MemTotal), None where /proc/meminfo does not say."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


@app.command()
def controller(
    db: str = typer.Option(..., "--db", help="the store's SQLite file"),
    listen: str = typer.Option(..., "--listen", help="unix:/PATH or tcp:HOST:PORT"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="debug logging"),
    operator_secret_file: str | None = typer.Option(
        None, "--operator-secret-file", help="secret (0600) that Status callers must prove"
    ),
    tls_cert: str | None = typer.Option(
        None, "--tls-cert", help="PEM certificate chain (required off loopback)"
    ),
    tls_key: str | None = typer.Option(None, "--tls-key", help="PEM private key"),
    api_listen: str = typer.Option(
        "127.0.0.1:8787", "--api-listen", help="host:port of the EC2 API, or 'off'"
    ),
    region: str = typer.Option("us-east-1", "--region", help="the API's region"),
    default_encap: str = typer.Option(
        "vxlan", "--default-encap", help="a new VPC's encapsulation unless its tags choose"
    ),
    api_any_key: str | None = typer.Option(
        None,
        "--api-any-key",
        help="LOCAL DEVELOPMENT ONLY: take requests signed with any unknown key as this "
        "tenant's (created if missing)",
    ),
) -> None:
    """Run the controller (store, service, compiler, southbound, EC2 API) until SIGTERM or
    SIGINT."""
    from openvpc.controller.main import ApiOptions, run_controller

    api = (
        None if api_listen == "off" else ApiOptions(api_listen, region, api_any_key, default_encap)
    )
    raise typer.Exit(
        run_controller(db, listen, verbose, operator_secret_file, tls_cert, tls_key, api)
    )


@app.command()
def agent(
    node: str = typer.Option(..., "--node", help="this compute node's name"),
    controller: str = typer.Option(..., "--controller", help="unix:/PATH or tcp:HOST:PORT"),
    vrouter: str = typer.Option(..., "--vrouter", help="the vRouter's control socket path"),
    secret_file: str = typer.Option(
        ..., "--secret-file", help="this node's secret (0600), issued at registration"
    ),
    netns: str | None = typer.Option(None, "--netns", help="network namespace to run in"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="debug logging"),
    state: str | None = typer.Option(
        None, "--state", help="file keeping the last config (served while headless)"
    ),
    tls_ca: str | None = typer.Option(
        None, "--tls-ca", help="PEM CA of the controller's certificate (required off loopback)"
    ),
    vm_netns_prefix: str | None = typer.Option(
        None,
        "--vm-netns-prefix",
        help="make the config's VMs (namespace + TAP), only in namespaces named with this prefix",
    ),
    vm_dhcp: bool = typer.Option(
        True, "--vm-dhcp/--no-vm-dhcp", help="run a DHCP client once in every VM it makes"
    ),
) -> None:
    """Run a compute node's agent until SIGTERM or SIGINT."""
    from openvpc.agent.main import run_agent

    raise typer.Exit(
        run_agent(
            node,
            controller,
            vrouter,
            secret_file,
            netns,
            verbose,
            state,
            tls_ca,
            vm_netns_prefix,
            vm_dhcp,
        )
    )


node_app = typer.Typer(help="Compute nodes: operator commands on the controller host.")
app.add_typer(node_app, name="node")


def _service_errors() -> tuple[type[Exception], ...]:
    from openvpc.service import ServiceError
    from openvpc.store import StoreError

    return (ServiceError, StoreError, OSError)


@node_app.command("register")
def node_register(
    name: str = typer.Argument(..., help="the node's name (its agent runs with --node NAME)"),
    fabric_ip: str = typer.Argument(..., help="the node's underlay address"),
    db: str = typer.Option(..., "--db", help="the controller's store (SQLite file)"),
    secret_file: str = typer.Option(
        ..., "--secret-file", help="where to write the node's secret (0600), for its daemons"
    ),
) -> None:
    """Register a compute node and issue its southbound secret (give the file to its agent
    and vRouter as --secret-file)."""
    _issue(db, name, secret_file, fabric_ip)


@node_app.command("reissue")
def node_reissue(
    name: str = typer.Argument(..., help="a registered node's name"),
    db: str = typer.Option(..., "--db", help="the controller's store (SQLite file)"),
    secret_file: str = typer.Option(..., "--secret-file", help="where to write the new secret"),
) -> None:
    """Issue a node a new secret: the old one stops working at once (its streams end)."""
    _issue(db, name, secret_file, None)


def _issue(db: str, name: str, secret_file: str, fabric_ip: str | None) -> None:
    from pathlib import Path

    from openvpc.credentials import write_secret_file
    from openvpc.service import Service
    from openvpc.store import Store

    try:
        store = Store(Path(db))
        try:
            service = Service(store)
            if fabric_ip is not None:
                service.register_node(name, fabric_ip)
            write_secret_file(Path(secret_file), service.issue_node_secret(name))
        finally:
            store.close()
    except _service_errors() as exc:
        Console(stderr=True).print(f"node {name}: {exc}", style="red", markup=False)
        raise typer.Exit(1) from None
    Console().print(f"node {name}: secret written to {secret_file}", markup=False)


@app.command("secret")
def secret(
    file: str = typer.Argument(..., help="where to write a new random secret (0600)"),
) -> None:
    """Write a new random secret, e.g. the operator's for `openvpc controller
    --operator-secret-file`."""
    from pathlib import Path

    from openvpc.credentials import new_secret, write_secret_file

    write_secret_file(Path(file), new_secret())


tenant_app = typer.Typer(
    help="Tenants and their API access keys: operator commands on the controller host."
)
app.add_typer(tenant_app, name="tenant")
DbOption = Annotated[str | None, typer.Option("--db", help="the controller's store (SQLite file)")]
LabOption = Annotated[
    str | None, typer.Option("--lab", help="a lab's controller (default: the only lab up)")
]


def _store_path(db: str | None, lab: str | None) -> str:
    """The store named by --db, else the store of the lab's controller."""
    if db is not None:
        return db
    from openvpc.lab import real
    from openvpc.lab.naming import state_dir

    try:
        return str(state_dir(real.resolve_name(lab)) / "openvpc.db")
    except _lab_errors() as exc:
        Console(stderr=True).print(str(exc), style="red", markup=False)
        raise typer.Exit(1) from None


@tenant_app.command("create")
def tenant_create(
    name: str = typer.Argument(..., help="the tenant's name"),
    db: DbOption = None,
    lab: LabOption = None,
) -> None:
    """Create a tenant if it does not exist and issue it a new access key; prints the key id
    and its secret as lines of an AWS credentials file (the secret is shown only this once)."""
    from pathlib import Path

    from openvpc.service import Service
    from openvpc.store import Store

    try:
        store = Store(Path(_store_path(db, lab)))
        try:
            service = Service(store)
            with service.batch():
                if name not in {t.name for t in service.describe_tenants()}:
                    service.create_tenant(name)
                key_id, secret = service.create_tenant_key(name)
        finally:
            store.close()
    except _service_errors() as exc:
        Console(stderr=True).print(f"tenant {name}: {exc}", style="red", markup=False)
        raise typer.Exit(1) from None
    # plain print: the lines are for ~/.aws/credentials or `aws configure set`, unstyled
    print(f"[{name}]")
    print(f"aws_access_key_id = {key_id}")
    print(f"aws_secret_access_key = {secret}")


@tenant_app.command("list")
def tenant_list(
    name: str | None = typer.Argument(None, help="only this tenant"),
    db: DbOption = None,
    lab: LabOption = None,
) -> None:
    """Tenants and the ids of their access keys (never the secrets)."""
    from pathlib import Path

    from openvpc.service import Service
    from openvpc.store import Store

    try:
        store = Store(Path(_store_path(db, lab)))
        try:
            service = Service(store)
            names = [t.name for t in service.describe_tenants() if name in (None, t.name)]
            if name is not None and not names:
                service.tenant_keys(name)  # raises: the tenant is not known
            rows = [(n, service.tenant_keys(n)) for n in names]
        finally:
            store.close()
    except _service_errors() as exc:
        Console(stderr=True).print(f"tenant {name}: {exc}", style="red", markup=False)
        raise typer.Exit(1) from None
    for tenant, key_ids in rows:
        print(f"{tenant}\t{','.join(key_ids) or '-'}")


@tenant_app.command("delete")
def tenant_delete(
    name: str = typer.Argument(..., help="the tenant's name"),
    db: DbOption = None,
    lab: LabOption = None,
    key: str | None = typer.Option(
        None, "--key", help="revoke only this access key id; the tenant stays"
    ),
) -> None:
    """Delete a tenant that owns no resources any more, with its access keys (or, with
    --key, revoke one key)."""
    from pathlib import Path

    from openvpc.service import Service
    from openvpc.store import Store

    try:
        store = Store(Path(_store_path(db, lab)))
        try:
            service = Service(store)
            if key is None:
                service.delete_tenant(name)
            else:
                service.delete_tenant_key(name, key)
        finally:
            store.close()
    except _service_errors() as exc:
        Console(stderr=True).print(f"tenant {name}: {exc}", style="red", markup=False)
        raise typer.Exit(1) from None
    Console().print(
        f"tenant {name}: " + ("deleted" if key is None else f"key {key} revoked"), markup=False
    )


@tenant_app.command("env")
def tenant_env(
    name: str = typer.Argument(..., help="the tenant's name"),
    lab: LabOption = None,
) -> None:
    """Shell lines exporting the tenant's first access key, the lab's API endpoint and region,
    for the AWS CLI, boto3 and terraform: eval "$(openvpc tenant env NAME --lab LAB)"."""
    import shlex
    from pathlib import Path

    from openvpc.lab import real
    from openvpc.service import Service
    from openvpc.store import Store

    try:
        lab_name = real.resolve_name(lab)
        endpoint, region = real.api_endpoint(lab_name)
        store = Store(Path(_store_path(None, lab_name)))
        try:
            service = Service(store)
            key_ids = service.tenant_keys(name)
            found = service.access_key(key_ids[0]) if key_ids else None
        finally:
            store.close()
    except (*_service_errors(), *_lab_errors()) as exc:
        Console(stderr=True).print(f"tenant {name}: {exc}", style="red", markup=False)
        raise typer.Exit(1) from None
    if found is None:
        Console(stderr=True).print(f"tenant {name} has no access key", style="red", markup=False)
        raise typer.Exit(1)
    values = {
        "AWS_ACCESS_KEY_ID": key_ids[0],
        "AWS_SECRET_ACCESS_KEY": found[0],
        "AWS_DEFAULT_REGION": region,
        "AWS_ENDPOINT_URL": endpoint,
    }
    for key, value in values.items():
        print(f"export {key}={shlex.quote(value)}")


@app.command("public-pool")
def public_pool(
    cidr: str | None = typer.Argument(None, help="the new pool, e.g. 203.0.113.0/24"),
    db: DbOption = None,
    lab: LabOption = None,
) -> None:
    """Show, or set, the block of public addresses Elastic IPs are allocated from (default
    198.51.100.0/24); addresses already allocated keep theirs."""
    from pathlib import Path

    from openvpc.service import Service
    from openvpc.store import Store

    try:
        store = Store(Path(_store_path(db, lab)))
        try:
            service = Service(store)
            if cidr is not None:
                service.set_public_pool(cidr)
            pool = service.public_pool()
        finally:
            store.close()
    except _service_errors() as exc:
        Console(stderr=True).print(f"public pool: {exc}", style="red", markup=False)
        raise typer.Exit(1) from None
    print(pool)


@app.command("internet-node")
def internet_node(
    node: str | None = typer.Argument(None, help='the gateway node ("" for none)'),
    db: DbOption = None,
    lab: LabOption = None,
) -> None:
    """Show, or set, the gateway node: its vRouter holds the port into the internet, through
    which instances with Elastic IPs go out and are reached (docs/internet.md)."""
    from pathlib import Path

    from openvpc.service import Service
    from openvpc.store import Store

    try:
        store = Store(Path(_store_path(db, lab)))
        try:
            service = Service(store)
            if node is not None:
                service.set_internet_node(node)
            shown = service.internet_node()
        finally:
            store.close()
    except _service_errors() as exc:
        Console(stderr=True).print(f"internet node: {exc}", style="red", markup=False)
        raise typer.Exit(1) from None
    print(shown or "(none)")


def main() -> None:
    app()
