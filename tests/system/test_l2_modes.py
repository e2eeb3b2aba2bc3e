"""The switching modes in the real lab: an l2 VPC and an l2_l3 VPC, same addresses."""

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from conftest import LabFactory, LabHandle

from openvpc.lab import real
from openvpc.tools.matrix import expected_probes, run_probes
from openvpc.tools.showcase import Responders

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "l2-modes.yaml"


@pytest.fixture
def l2lab(lab: LabFactory) -> Iterator[LabHandle]:
    yield lab(yaml.safe_load(EXAMPLE.read_text()))


def test_switched_vpcs_reach_within_and_never_across_tenants(l2lab: LabHandle) -> None:
    status = l2lab.status()

    def run(vm: str, argv: list[str]) -> tuple[int, str]:
        out = l2lab.exec(vm, argv, timeout=15)
        return out.returncode, out.stdout

    with Responders(status):
        results = run_probes(expected_probes(real.api_snapshot(status.name)), run, sys.executable)
    assert results and all(r.ok for r in results), [r for r in results if not r.ok]
    # an emulated switch floods broadcast: the subnet peer on the other node answers it
    l2lab.exec("s2", ["sysctl", "-qw", "net.ipv4.icmp_echo_ignore_broadcasts=0"])
    out = l2lab.exec("s1", ["ping", "-n", "-b", "-c", "3", "-i", "0.3", "-W", "1", "10.0.1.255"])
    assert f"from {l2lab.ip('s2')}" in out.stdout, out.stdout
