"""End-to-end overlay benchmark (issue 9): VM to VM across two nodes on the same kind of
underlay (veths to one bridge, MTU 1500), in one run, for the baselines (Linux bridge + kernel
VXLAN, the same bridges without a tunnel, Open vSwitch userspace VXLAN) and openvpc's python and
ebpf datapaths for every encapsulation: iperf3 TCP with 1 and 4 streams, 64-byte UDP
packets/s at the receiver, ping RTT p50/p99 and new TCP connections/s through first-packet
policy. Samples are interleaved: each round measures every path once.

Run as root: `python -m bench.overlay [--seconds N] [--samples N] [--paths a,b] [--record]`
(`make bench-overlay`). Everything it makes is removed at the end, also on Ctrl-C or SIGTERM.
"""

import datetime
import os
import shlex
import subprocess
import sys
from collections.abc import Callable, Collection, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench import cli
from bench import overlay_measure as m
from bench.overlay_ovs import ensure_installed
from bench.overlay_paths import BASELINES, ENCAPS, baselines, lab_name, openvpc_lab, sweep
from bench.pipeline import machine
from openvpc.lab import real

DATAPATHS = ("python", "ebpf")
ALL_PATHS = (*BASELINES, *(f"{d}-{e}" for d in DATAPATHS for e in ENCAPS))
METRICS = ("tcp1_gbps", "tcp4_gbps", "udp64_pps", "conns_per_s")
RESULTS_MD = Path(__file__).with_name("RESULTS.md")
BEGIN, END = "<!-- bench-overlay:begin -->", "<!-- bench-overlay:end -->"


def reference(path: str) -> str:
    """The baseline a path is compared with: the bridges without VXLAN for VLAN."""
    return "kernel-vlan" if path.endswith("-vlan") else "kernel"


STEPS = ("tcp1_gbps", "tcp4_gbps", "udp64_pps", "rtt_ms", "conns")


def sample(
    ep: m.Endpoints,
    seconds: float,
    pings: int,
    into: dict[str, Any],
    only: Collection[str] = STEPS,
) -> None:
    """One round of every metric (of the STEPS in `only`) on one path; a failed measurement is
    recorded, not fatal."""
    steps: list[tuple[str, Callable[[], Any]]] = [
        ("tcp1_gbps", lambda: m.tcp_gbps(ep, seconds, 1)),
        ("tcp4_gbps", lambda: m.tcp_gbps(ep, seconds, 4)),
        ("udp64_pps", lambda: m.udp_pps(ep, seconds)),
        ("rtt_ms", lambda: m.ping_rtts(ep, pings)),
        ("conns", lambda: m.conns_per_s(ep, seconds)),
    ]
    for key, step in steps:
        if key not in only:
            continue
        try:
            value = step()
        except (m.MeasureError, OSError, ValueError, KeyError, subprocess.SubprocessError) as exc:
            into.setdefault("errors", []).append(f"{key}: {exc}")
            print(f"  {ep.name} {key}: FAILED {exc}", file=sys.stderr)
            continue
        if key == "rtt_ms":
            into.setdefault("rtt_ms", []).append(value)  # one list per sample
        elif key == "conns":
            into.setdefault("conns_per_s", []).append(value["conns_per_s"])
            into.setdefault("conn_failures", []).append(value["failures"])
        else:
            into.setdefault(key, []).append(value)


def summarize(raw: dict[str, Any], pings: int) -> dict[str, Any]:
    """Per path: the median (min, max, n) of each metric and the RTT p50/p99 of all pings."""
    out: dict[str, Any] = {}
    for metric in METRICS:
        if raw.get(metric):
            out[metric] = m.summary(raw[metric])
    if raw.get("rtt_ms"):
        rtts = [rtt for sample in raw["rtt_ms"] for rtt in sample]
        out["rtt_ms"] = {
            "p50": m.percentile(rtts, 50),
            "p99": m.percentile(rtts, 99),
            "n": float(len(rtts)),
            "lost": float(pings * len(raw["rtt_ms"]) - len(rtts)),
        }
    if raw.get("conn_failures"):
        out["conn_failures"] = sum(raw["conn_failures"])
    if raw.get("errors"):
        out["errors"] = raw["errors"]
    return out


def run(paths: Sequence[str], seconds: float, samples: int, pings: int) -> dict[str, Any]:
    started = datetime.datetime.now(datetime.UTC)
    load_before = os.getloadavg()
    raw: dict[str, dict[str, Any]] = {p: {} for p in paths}
    for leftover in sweep(directories=True):  # of a killed run
        print(f"removed {leftover}, left by an earlier run", file=sys.stderr)
    for datapath in DATAPATHS:
        real.down(lab_name(datapath))  # likewise: a killed run's lab
    with ExitStack() as stack:
        if "ovs" in paths:
            ensure_installed()
        endpoints = dict(stack.enter_context(baselines(paths)))
        for datapath in DATAPATHS:
            encaps = [e for e in ENCAPS if f"{datapath}-{e}" in paths]
            if encaps:
                print(f"lab for datapath {datapath}: {', '.join(encaps)}", file=sys.stderr)
                endpoints.update(stack.enter_context(openvpc_lab(datapath, encaps)))
        for path in paths:
            ep = endpoints[path]
            m.wait_reachable(ep)
            server = m.start_conn_server(ep)
            stack.callback(stop, server)
        for n in range(samples):
            for path in paths:
                print(f"sample {n + 1}/{samples}: {path}", file=sys.stderr)
                sample(endpoints[path], seconds, pings, raw[path])
    return {
        "date": started.isoformat(timespec="seconds"),
        "duration_s": round((datetime.datetime.now(datetime.UTC) - started).total_seconds()),
        "command": shlex.join(["python", "-m", "bench.overlay", *sys.argv[1:]]),
        "machine": machine(),
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "seconds": seconds,
        "samples": samples,
        "pings": pings,
        "paths": {p: summarize(raw[p], pings) for p in paths},
        "raw": {p: compact(raw[p]) for p in paths},
    }


def compact(raw: dict[str, Any]) -> dict[str, Any]:
    """The samples for the JSON file, with each sample's pings as its p50 and p99 only."""
    out = {k: v for k, v in raw.items() if k != "rtt_ms"}
    if raw.get("rtt_ms"):
        out["rtt_p50_ms"] = [m.percentile(sample, 50) for sample in raw["rtt_ms"]]
        out["rtt_p99_ms"] = [m.percentile(sample, 99) for sample in raw["rtt_ms"]]
    return out


def stop(proc: Any) -> None:
    proc.kill()
    proc.wait()


# -- the report ------------------------------------------------------------------------------
def _ratio(value: float | None, ref: float | None) -> str:
    return "" if value is None or not ref else f"{value / ref:.2f}x"


def _get(summary: dict[str, Any], metric: str, field: str = "median") -> float | None:
    entry = summary.get(metric)
    return None if entry is None else float(entry[field])


def table(report: dict[str, Any]) -> str:
    """Markdown: medians per path, ratios against the reference baseline (and added RTT)."""
    paths: dict[str, Any] = report["paths"]
    lines = [
        "| path | vs | TCP 1 Gbit/s | x | TCP 4 Gbit/s | x | UDP 64 B kpps | x "
        "| RTT p50 ms | +us | RTT p99 ms | conn/s | x |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for path, s in paths.items():
        ref_name = reference(path) if path not in BASELINES else "kernel"
        ref = paths.get(ref_name, {})
        own = path == ref_name
        cells = [path, "" if own else ref_name]
        for metric, scale, fmt in (
            ("tcp1_gbps", 1.0, "{:.2f}"),
            ("tcp4_gbps", 1.0, "{:.2f}"),
            ("udp64_pps", 1e-3, "{:.1f}"),
        ):
            value = _get(s, metric)
            cells.append("-" if value is None else fmt.format(value * scale))
            cells.append("" if own else _ratio(value, _get(ref, metric)))
        p50, ref50 = _get(s, "rtt_ms", "p50"), _get(ref, "rtt_ms", "p50")
        p99 = _get(s, "rtt_ms", "p99")
        cells.append("-" if p50 is None else f"{p50:.3f}")
        cells.append("" if own or p50 is None or ref50 is None else f"{(p50 - ref50) * 1e3:+.0f}")
        cells.append("-" if p99 is None else f"{p99:.3f}")
        conns = _get(s, "conns_per_s")
        cells.append("-" if conns is None else f"{conns:.0f}")
        cells.append("" if own else _ratio(conns, _get(ref, "conns_per_s")))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _loads(loads: Sequence[float]) -> str:
    return "/".join(f"{x:.2f}" for x in loads)


def run_lines(report: dict[str, Any]) -> list[str]:
    """The bullets saying when, how and where a run was made (date, load, command, machine)."""
    mach = report["machine"]
    return [
        f"- date: {report['date']} ({report['duration_s']} s); load average (1, 5, 15 min)"
        f" {_loads(report['load_average']['before'])} before,"
        f" {_loads(report['load_average']['after'])} after",
        f"- command: `{report['command']}`",
        f"- machine: `{mach['uname']}`, CPU `{mach['cpu']}`, {mach['nproc']} cores,"
        f" {mach['python']}",
    ]


def section(report: dict[str, Any], json_path: Path) -> str:
    errors = [f"- {p}: {e}" for p, s in report["paths"].items() for e in s.get("errors", [])]
    return "\n".join(
        [
            BEGIN,
            "### Issue 9 overlay run (`bench/overlay.py`, written by `--record`)",
            "",
            *run_lines(report),
            f"- {report['samples']} interleaved samples of {report['seconds']} s per metric"
            f" (medians); RTT over {report['pings']} pings 2 ms apart per sample; JSON:"
            f" `{json_path.as_posix()}`",
            "",
            table(report),
            "",
            *(["Failed measurements:", "", *errors, ""] if errors else []),
            END,
        ]
    )


def record(report: dict[str, Any], json_path: Path, results_md: Path = RESULTS_MD) -> None:
    """Put this run's section into RESULTS.md, replacing an earlier run's."""
    anchor = "## End to end: VM to VM across two compute nodes"
    put_section(results_md, BEGIN, END, section(report, json_path), anchor)


def put_section(results_md: Path, begin: str, end: str, new: str, anchor: str) -> None:
    """Replace what is between the markers `begin` and `end` (both included in `new`) with
    `new`; without them, put `new` before the line `anchor`, or at the end without it."""
    text = results_md.read_text()
    if begin in text and end in text:
        head, _, rest = text.partition(begin)
        _, _, tail = rest.partition(end)
        text = head + new + tail
    else:
        head, found, tail = text.partition(anchor)
        text = head + new + "\n\n" + found + tail if found else text + "\n" + new + "\n"
    results_md.write_text(text)


def main(argv: list[str] | None = None) -> int:
    args = cli.parser("python -m bench.overlay", __doc__, ALL_PATHS, pings=1000).parse_args(argv)
    return cli.run_and_report(
        args,
        "overlay",
        lambda: run(args.paths, args.seconds, args.samples, args.pings),
        table,
        record,
    )


if __name__ == "__main__":
    sys.exit(main())
