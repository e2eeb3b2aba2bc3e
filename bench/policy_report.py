"""The policy benchmark's numbers (pure): one round's values from a sample, medians per path,
per-round ratios to the same datapath's "open" path and to the kernel baseline, the markdown
table and the RESULTS.md section."""

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import overlay_measure as m
from bench.overlay import run_lines

METRICS = ("tcp1_gbps", "conns_per_s", "rtt_p50_ms")
STEPS = ("tcp1_gbps", "conns", "rtt_ms")  # bench.overlay.sample's steps for them
KERNEL = "kernel"
BEGIN, END = "<!-- bench-policy:begin -->", "<!-- bench-policy:end -->"
OPEN_NOTE = (
    '"open" is the comparison without policy: an instance is always in at least one security '
    "group, so there is no port without rules to compare with (and no product switch for one); "
    "open's one group allows everything in and out, the least policy an EC2 port can have, and "
    "its first packets are still evaluated."
)


def round_values(got: dict[str, Any]) -> dict[str, Any]:
    """One round of one path from what bench.overlay.sample put into an empty dict: each
    metric's value, None where its measurement failed."""
    rtts = got.get("rtt_ms")
    return {
        "tcp1_gbps": got["tcp1_gbps"][0] if got.get("tcp1_gbps") else None,
        "conns_per_s": got["conns_per_s"][0] if got.get("conns_per_s") else None,
        "conn_failures": got["conn_failures"][0] if got.get("conn_failures") else None,
        "rtt_p50_ms": m.percentile(rtts[0], 50) if rtts else None,
        "errors": list(got.get("errors", [])),
    }


def add_round(raw: dict[str, list[Any]], values: dict[str, Any]) -> None:
    """Append one round's values to a path's lists (one entry per round, None kept)."""
    for key, value in values.items():
        if key == "errors":
            raw.setdefault("errors", []).extend(value)
        else:
            raw.setdefault(key, []).append(value)


def references(path: str, paths: Sequence[str]) -> dict[str, str]:
    """What a path is compared with, among those measured: "open" (the same datapath's open
    path) and "kernel"; never itself."""
    refs = {"open": f"{path.split('-')[0]}-open", "kernel": KERNEL}
    return {k: ref for k, ref in refs.items() if ref != path and ref in paths}


def ratios(values: Sequence[float | None], refs: Sequence[float | None]) -> list[float]:
    """value / reference of each round where both were measured (and the reference is not 0)."""
    return [v / r for v, r in zip(values, refs, strict=True) if v is not None and r]


def summarize(raw: dict[str, dict[str, list[Any]]]) -> dict[str, Any]:
    """Per path: each metric's median (min, max, n) over the rounds it was measured in, and
    the median of its per-round ratios to each reference ("x_open", "x_kernel")."""
    out: dict[str, Any] = {}
    for path, lists in raw.items():
        s: dict[str, Any] = {}
        for metric in METRICS:
            got = [v for v in lists.get(metric, []) if v is not None]
            if not got:
                continue
            s[metric] = m.summary(got)
            for name, ref in references(path, list(raw)).items():
                per_round = ratios(lists[metric], raw[ref].get(metric, []))
                if per_round:
                    s[metric][f"x_{name}"] = statistics.median(per_round)
        failures = [f for f in lists.get("conn_failures", []) if f is not None]
        if failures:
            s["conn_failures"] = sum(failures)
        if lists.get("errors"):
            s["errors"] = list(lists["errors"])
        out[path] = s
    return out


def _cell(s: dict[str, Any], metric: str, fmt: str) -> list[str]:
    entry = s.get(metric)
    if entry is None:
        return ["-", "", ""]
    return [
        fmt.format(entry["median"]),
        *(f"{entry[k]:.2f}x" if k in entry else "" for k in ("x_open", "x_kernel")),
    ]


def table(report: dict[str, Any]) -> str:
    """Markdown: medians per path and the medians of per-round ratios to open and kernel."""
    lines = [
        "| path | TCP 1 Gbit/s | x open | x kernel | new TCP conn/s | x open | x kernel "
        "| failed conns | RTT p50 ms | x open | x kernel |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for path, s in report["paths"].items():
        cells = [path, *_cell(s, "tcp1_gbps", "{:.2f}"), *_cell(s, "conns_per_s", "{:.0f}")]
        cells.append(f"{s['conn_failures']:.0f}" if "conn_failures" in s else "-")
        cells.extend(_cell(s, "rtt_p50_ms", "{:.3f}"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _check_line(check: dict[str, Any] | None) -> list[str]:
    if not check or not check["paths"]:
        return []
    ends = ", ".join(f"{path} {end}" for path, end in check["paths"].items())
    return [f"- in force before measuring: a new connection to port {check['port']}: {ends}"]


def section(report: dict[str, Any], json_path: Path) -> str:
    """The run's RESULTS.md section, between its markers."""
    policy = report["policy"]
    errors = [f"- {p}: {e}" for p, s in report["paths"].items() for e in s.get("errors", [])]
    rules = (
        f"{policy['groups']} groups on each interface, {policy['ingress_rules']} ingress and"
        f" {policy['egress_rules']} egress rules in all, {policy['acl_entries']} network ACL"
        " entries (both directions) on the server's subnet"
        if policy
        else "no groups path measured"
    )
    return "\n".join(
        [
            BEGIN,
            "### Issue 10 policy run (`bench/policy.py`, written by `--record`)",
            "",
            *run_lines(report),
            f"- {report['samples']} interleaved rounds of {report['seconds']} s per metric"
            f" (medians; ratios are medians of per-round ratios); RTT p50 of {report['pings']}"
            f" pings per round; JSON: `{json_path.as_posix()}`",
            f"- groups path: {rules}",
            *_check_line(report.get("policy_check")),
            f"- {OPEN_NOTE}",
            "",
            table(report),
            "",
            *(["Failed measurements:", "", *errors, ""] if errors else []),
            END,
        ]
    )
