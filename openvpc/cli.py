"""The `openvpc` command line."""

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="openvpc: a self-hosted, multi-tenant VPC.", no_args_is_help=True)


@app.callback()
def _root() -> None:
    """openvpc: a self-hosted, multi-tenant VPC."""


@app.command()
def demo(
    sim: bool = typer.Option(True, "--sim/--no-sim", help="run on the in-memory fabric"),
) -> None:
    """Two tenants with the same 10.0.0.0/16 on two compute nodes: who reaches whom."""
    from openvpc.tools.demo import figure13_walk, run_demo

    if not sim:
        raise typer.BadParameter("the namespace lab comes with the next issue; use --sim")
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


def main() -> None:
    app()
