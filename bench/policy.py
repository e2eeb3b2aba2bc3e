"""Security-group policy benchmark (issue 10): new TCP connections/s through first-packet
policy and the TCP throughput of an established flow, with heavy groups and a network ACL
("<datapath>-groups") next to a group allowing everything ("<datapath>-open") and the kernel
bridge + VXLAN baseline ("kernel"), in one run, rounds interleaved. Labs: bench.policy_lab.

Run as root: `python -m bench.policy [--seconds N] [--samples N] [--paths a,b] [--record]`
(`make bench-policy`). Everything it makes is removed at the end, also on Ctrl-C or SIGTERM,
and a killed run's leftovers by the next run.
"""

import datetime
import os
import shlex
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench import cli
from bench import overlay_measure as m
from bench import policy_report as report_
from bench.overlay import put_section, sample, stop
from bench.overlay_paths import baselines, sweep
from bench.pipeline import machine
from bench.policy_lab import POLICIES, UNADMITTED, lab_name, policy_lab, probe
from openvpc.lab import real

DATAPATHS = ("python", "ebpf")
ALL_PATHS = (report_.KERNEL, *(f"{d}-{p}" for d in DATAPATHS for p in POLICIES))
RESULTS_MD = Path(__file__).with_name("RESULTS.md")
ANCHOR = "## End to end, the first harness"


def run(paths: Sequence[str], seconds: float, samples: int, pings: int) -> dict[str, Any]:
    started = datetime.datetime.now(datetime.UTC)
    load_before = os.getloadavg()
    steps = report_.STEPS if pings else tuple(s for s in report_.STEPS if s != "rtt_ms")
    raw: dict[str, dict[str, list[Any]]] = {p: {} for p in paths}
    for leftover in sweep(directories=True):  # of a killed run
        print(f"removed {leftover}, left by an earlier run", file=sys.stderr)
    for datapath in DATAPATHS:
        real.down(lab_name(datapath))  # likewise
    policy: dict[str, int] = {}
    enforced: dict[str, str] = {}
    with ExitStack() as stack:
        endpoints = dict(stack.enter_context(baselines(paths)))
        for datapath in DATAPATHS:
            if any(p.startswith(f"{datapath}-") for p in paths):
                print(f"lab {lab_name(datapath)}: {', '.join(POLICIES)}", file=sys.stderr)
                found, policy = stack.enter_context(policy_lab(datapath))
                endpoints.update(found)
        for path in paths:
            m.wait_reachable(endpoints[path])
            if path != report_.KERNEL:
                enforced[path] = _check_policy(endpoints[path])
            stack.callback(stop, m.start_conn_server(endpoints[path]))
        for n in range(samples):
            for path in paths:
                print(f"round {n + 1}/{samples}: {path}", file=sys.stderr)
                got: dict[str, Any] = {}
                sample(endpoints[path], seconds, pings, got, only=steps)
                report_.add_round(raw[path], report_.round_values(got))
    return {
        "date": started.isoformat(timespec="seconds"),
        "duration_s": round((datetime.datetime.now(datetime.UTC) - started).total_seconds()),
        "command": shlex.join(["python", "-m", "bench.policy", *sys.argv[1:]]),
        "machine": machine(),
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "seconds": seconds,
        "samples": samples,
        "pings": pings,
        "policy": policy,
        "policy_check": {"port": UNADMITTED, "paths": enforced},
        "note": report_.OPEN_NOTE,
        "paths": report_.summarize(raw),
        "raw": raw,
    }


def _check_policy(ep: m.Endpoints) -> str:
    """That the path's policy is in force before measuring it: a port the heavy groups do not
    admit is dropped on "groups" and reaches the server's kernel (refused) on "open"."""
    want = "timeout" if ep.name.endswith("-groups") else "refused"
    got = probe(ep)
    if got != want:
        raise m.MeasureError(f"{ep.name}: port {UNADMITTED} answered {got}, not {want}")
    return got


def record(report: dict[str, Any], json_path: Path, results_md: Path = RESULTS_MD) -> None:
    """Put this run's section into RESULTS.md, replacing an earlier run's."""
    put_section(results_md, report_.BEGIN, report_.END, report_.section(report, json_path), ANCHOR)


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser("python -m bench.policy", __doc__, ALL_PATHS, pings=200)
    args = parser.parse_args(argv)
    if args.samples < 1 or args.seconds <= 0 or args.pings < 0:
        parser.error("--samples and --seconds must be positive, --pings not negative")
    return cli.run_and_report(
        args,
        "policy",
        lambda: run(args.paths, args.seconds, args.samples, args.pings),
        table_with_note,
        record,
    )


def table_with_note(report: dict[str, Any]) -> str:
    return f"{report_.table(report)}\n\n{report_.OPEN_NOTE}"


if __name__ == "__main__":
    sys.exit(main())
