"""What the end-to-end benchmarks' command lines share: their options, signals that unwind
through every cleanup, and writing the JSON report (and RESULTS.md's section with --record)."""

import argparse
import json
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

RESULTS_DIR = Path(__file__).with_name("results")


def terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")  # unwinds through every cleanup


def paths_option(known: Sequence[str]) -> Callable[[str], list[str]]:
    """Parses "a,b": known paths only, in `known`'s order (references first), each once."""

    def parse(text: str) -> list[str]:
        paths = [p.strip() for p in text.split(",") if p.strip()]
        unknown = [p for p in paths if p not in known]
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown paths {unknown}; known: {', '.join(known)}")
        return [p for p in known if p in paths]

    return parse


def parser(prog: str, doc: str | None, paths: Sequence[str], pings: int) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=doc)
    p.add_argument("--seconds", type=float, default=5, help="per throughput and conn test")
    p.add_argument("--samples", type=int, default=5, help="interleaved rounds")
    p.add_argument("--pings", type=int, default=pings, help="pings per round, 2 ms apart")
    p.add_argument("--paths", type=paths_option(paths), default=list(paths), help=",".join(paths))
    p.add_argument("--json", type=Path, help="default bench/results/<bench>-<date>.json")
    p.add_argument("--record", action="store_true", help="write the table into RESULTS.md")
    return p


def run_and_report(
    args: argparse.Namespace,
    name: str,
    run: Callable[[], dict[str, Any]],
    table: Callable[[dict[str, Any]], str],
    record: Callable[[dict[str, Any], Path], None],
) -> int:
    """Run with SIGTERM and SIGHUP unwinding like Ctrl-C; write the JSON, print the table,
    record when asked. The exit status."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, terminate)
    try:
        report = run()
    except KeyboardInterrupt as exc:
        print(f"interrupted ({exc or 'Ctrl-C'}); everything made was removed", file=sys.stderr)
        return 130
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    json_path: Path = args.json or RESULTS_DIR / f"{name}-{stamp}.json"
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    print(table(report))
    print(f"JSON: {json_path}")
    if args.record:
        cwd = Path.cwd()
        record(report, json_path.relative_to(cwd) if json_path.is_relative_to(cwd) else json_path)
    return 0
