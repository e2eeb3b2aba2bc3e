"""How `openvpc up`, `openvpc status` and `openvpc flows` show a real lab: rich tables of
nodes, processes (with their restart counts), agents' generations, VMs, and a node's flows."""

from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from openvpc.lab.real import AgentStatus, LabStatus, ProcessStatus


def _applied(a: AgentStatus | None) -> str:
    """The generation the node's agent has acked, against the one compiled for it."""
    if a is None:
        return "[red]unknown[/]"
    if not a.connected:
        return f"[red]disconnected[/] ({a.generation_acked})"
    if a.generation is not None and a.generation_acked == a.generation:
        return f"[green]gen {a.generation}[/]"
    return f"[yellow]{a.generation_acked} of {a.generation}[/]"


def _process(p: ProcessStatus) -> str:
    """pid and state, and how often its supervisor restarted it."""
    if p.alive:
        text = f"[green]{p.pid}[/]"
    elif not p.supervised:
        text = "[red]dead, unsupervised[/]"
    else:
        text = "[red]held down[/]" if p.held else "[yellow]restarting[/]"
    return f"{text} restarts {p.restarts}" if p.restarts else text


def print_status(console: Console, st: LabStatus) -> None:
    procs = {(p.role, p.node): p for p in st.processes}
    agents = {a.node: a for a in st.agents}
    controller = procs.get(("controller", ""))
    head = f"lab [bold]{st.name}[/]: {st.underlay} underlay, state in {st.state_dir}"
    if not st.ready:
        head += " [yellow](not fully up)[/]"
    console.print(head)
    if controller is not None:
        where = f"revision {st.revision}" if st.error_free() else f"[red]{st.controller_error}[/]"
        console.print(f"controller pid {_process(controller)}, {where}")
    nodes = Table(title="compute nodes")
    for col in ("node", "namespace", "fabric ip", "vrouter", "agent", "applied"):
        nodes.add_column(col)
    for n in st.nodes:
        cells = []
        for role in ("vrouter", "agent"):
            p = procs.get((role, n.name))
            cells.append("-" if p is None else _process(p))
        nodes.add_row(n.name, n.netns, n.fabric_ip, *cells, _applied(agents.get(n.name)))
    console.print(nodes)
    if st.vms:
        vms = Table(title="VMs (as their agents report them)")
        for col in ("vm", "node", "namespace", "interface", "ready", "address (DHCP)"):
            vms.add_column(col)
        for v in st.vms:
            ready = "yes" if v.ready else "[red]no[/]"
            vms.add_row(v.name, v.node, v.netns, v.interface, ready, v.ip or "[red]none[/]")
        console.print(vms)


def flow_table(node: str, found: dict[str, Any]) -> Table:
    """`openvpc flows NODE`: one row per flow, what decided it included. Values come from the
    vRouter (hostile tenants' addresses and rule names): printed as text, never as markup."""
    shown = len(found.get("flows", []))
    table = Table(
        title=f"flows on {node}: {shown} shown of {found.get('matched')} matching,"
        f" {found.get('entries')} in the table"
    )
    for column in ("VRF", "Proto", "Source", "Destination", "Action", "By", "Pkts", "Bytes",
                   "TCP", "Idle s"):  # fmt: skip
        table.add_column(column)
    for f in found.get("flows", []):
        table.add_row(
            *(
                Text(str(cell))
                for cell in (
                    f"{f['vrf']} {f['vrf_name']}",
                    f["proto"],
                    f"{f['src']}:{f['sport']}",
                    f"{f['dst']}:{f['dport']}",
                    f["action"] + ("" if f["nat"] is None else f" {f['nat']}"),
                    f["by"] or "-",
                    f["packets"],
                    f["bytes"],
                    f["tcp_flags"],
                    f["idle"],
                )
            )
        )
    return table
