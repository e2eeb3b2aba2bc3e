"""The lab's command lines: every vRouter runs the topology's datapath."""

from pathlib import Path

from openvpc.lab.processes import vrouter_spec


def test_the_vrouter_runs_the_datapath_it_is_given() -> None:
    default = vrouter_spec(Path("/run/x"), ("openvpc",), "a", "ov-x-a")
    assert default.argv[-2:] == ("--datapath", "python")
    ebpf = vrouter_spec(Path("/run/x"), ("openvpc",), "a", "ov-x-a", "ebpf")
    assert ebpf.argv[-2:] == ("--datapath", "ebpf")
