"""The overlay benchmark's pure parts: statistics, the table's ratios, the RESULTS.md section
and the lab topologies it writes (nothing here runs a network)."""

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from bench import cli, overlay
from bench.overlay_measure import percentile, summary
from bench.overlay_paths import supports_datapath_key, topology
from openvpc.lab.topology import parse_topology


def test_percentile_interpolates_between_ranks() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 99) == pytest.approx(99.01)
    assert percentile([3.0], 99) == 3.0
    with pytest.raises(ValueError):
        percentile([], 50)


def test_summary_is_the_median_of_samples() -> None:
    assert summary([5.0, 1.0, 3.0]) == {"median": 3.0, "min": 1.0, "max": 5.0, "n": 3.0}


def _report() -> dict[str, Any]:
    def path(tcp: float, rtt50: float, conns: float) -> dict[str, Any]:
        return {
            "tcp1_gbps": summary([tcp]),
            "tcp4_gbps": summary([tcp]),
            "udp64_pps": summary([tcp * 1000]),
            "rtt_ms": {"p50": rtt50, "p99": rtt50 * 2, "n": 1.0},
            "conns_per_s": summary([conns]),
        }

    return {
        "date": "2026-11-30T15:00:00+00:00",
        "duration_s": 60,
        "load_average": {"before": [0.5, 0.4, 0.3], "after": [1.0, 0.6, 0.4]},
        "command": "python -m bench.overlay",
        "machine": {"uname": "Linux", "cpu": "cpu", "nproc": "2", "python": "CPython"},
        "seconds": 1.0,
        "samples": 1,
        "pings": 10,
        "paths": {
            "kernel": path(10.0, 0.050, 1000.0),
            "kernel-vlan": path(20.0, 0.040, 2000.0),
            "python-vxlan": path(1.0, 0.650, 100.0),
            "ebpf-vlan": path(18.0, 0.045, 1500.0),
        },
    }


def test_table_compares_vlan_with_the_plain_bridges_and_the_rest_with_kernel_vxlan() -> None:
    text = overlay.table(_report())
    rows = {r.split(" | ")[0][2:]: r.split(" | ") for r in text.splitlines()[2:]}
    assert rows["python-vxlan"][1] == "kernel"
    assert rows["python-vxlan"][3] == "0.10x"  # TCP 1 stream against kernel's 10
    assert rows["python-vxlan"][9] == "+600"  # us of RTT p50 added
    assert rows["ebpf-vlan"][1] == "kernel-vlan"
    assert rows["ebpf-vlan"][3] == "0.90x"
    assert rows["ebpf-vlan"][12] == "0.75x |"  # conn/s against kernel-vlan's 2000
    assert rows["kernel"][1] == ""


def test_record_replaces_an_earlier_section(tmp_path: Path) -> None:
    md = tmp_path / "RESULTS.md"
    md.write_text("# Results\n\n## End to end: VM to VM across two compute nodes\nold\n")
    overlay.record(_report(), Path("bench/results/a.json"), md)
    first = md.read_text()
    assert first.count(overlay.BEGIN) == 1
    assert first.index(overlay.BEGIN) < first.index("## End to end: VM to VM")
    overlay.record(_report(), Path("bench/results/b.json"), md)
    second = md.read_text()
    assert second.count(overlay.BEGIN) == 1
    assert "b.json" in second and "a.json" not in second
    assert "0.50/0.40/0.30 before" in second
    assert second.endswith("old\n")


def test_paths_are_checked() -> None:
    assert cli.paths_option(overlay.ALL_PATHS)("kernel, python-vxlan") == ["kernel", "python-vxlan"]
    with pytest.raises(Exception, match="unknown paths"):
        cli.paths_option(overlay.ALL_PATHS)("kernel,python-geneve")


def test_lab_topologies_are_valid() -> None:
    topo = parse_topology(topology("python", ["vxlan", "vlan"]))
    assert topo.underlay == "l2" and topo.fabric_mtu == 1500
    assert [vpc.encap for _, vpc, _ in topo.vms()] == ["vxlan", "vxlan", "vlan", "vlan"]
    if supports_datapath_key():
        ebpf = parse_topology(topology("ebpf", ["vxlan"]))
        assert dataclasses.asdict(ebpf)["datapath"] == "ebpf"


def test_rtt_percentiles_pool_every_sample_and_count_lost_pings() -> None:
    raw: dict[str, Any] = {"tcp1_gbps": [1.0, 3.0, 2.0], "rtt_ms": [[0.1, 0.2], [0.3]]}
    s = overlay.summarize(raw, pings=2)
    assert s["tcp1_gbps"]["median"] == 2.0
    assert s["rtt_ms"]["p50"] == pytest.approx(0.2)
    assert s["rtt_ms"]["lost"] == 1.0
    compact = overlay.compact(raw)
    assert "rtt_ms" not in compact
    assert compact["rtt_p50_ms"] == [pytest.approx(0.15), 0.3]
