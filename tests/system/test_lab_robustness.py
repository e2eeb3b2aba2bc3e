"""A lab whose state file was cut short or deleted still goes away entirely with `down`; a
topology file with duplicate keys, more VMs than a subnet has addresses, or a fixed address
another VM holds is refused by `openvpc validate` (without root) and by `openvpc up`, naming
the field, and `up` creates nothing."""

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import TINY, LabFactory, unique_name

from openvpc.lab import netns, nsexec, real
from openvpc.lab.naming import RUN_ROOT, STATE_FILE, state_dir
from openvpc.lab.nsexec import ETC_NETNS
from openvpc.lab.processes import agent_state_file, openvpc_command

SMALL: dict[str, Any] = {**TINY, "underlay": "l2"}


def remains(name: str) -> list[str]:
    """Everything on the host that still carries the lab's names."""
    prefix = f"ov-{name}-"
    sdir = str(state_dir(name))
    found = [f"netns {ns}" for ns in netns.list_netns() if ns.startswith(prefix)]
    if ETC_NETNS.exists():
        found += [f"{ETC_NETNS}/{e}" for e in os.listdir(ETC_NETNS) if e.startswith(prefix)]
    if Path(sdir).exists():
        found.append(sdir)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if f"{sdir}/" in cmd or prefix in cmd:
            found.append(f"process {entry}: {cmd}")
    return found


def test_down_after_the_state_file_was_cut_mid_record(lab: LabFactory) -> None:
    h = lab(SMALL, dhcp=False)
    state = RUN_ROOT / h.name / STATE_FILE
    text = state.read_text()
    # cut inside the first process record: every process and whatever came later is
    # unrecorded, the namespaces before it are still whole records
    cut = text.index('"kind": "process"') + 30
    state.write_text(text[:cut])
    assert any(line.startswith("netns") for line in remains(h.name))
    said: list[str] = []
    assert real.down(h.name, report=said.append) is True
    assert remains(h.name) == []
    assert "not valid JSON" in said[0]
    # the node namespaces were recorded: the vRouters and agents in them stopped with them;
    # the controller (in the host's namespace) was found by its command line alone
    swept = [line for line in said if "removed process" in line]
    assert [line for line in swept if " controller --db " in line], said
    assert real.down(h.name) is False


def test_down_after_the_state_file_was_deleted(lab: LabFactory) -> None:
    h = lab(SMALL, dhcp=False)
    vm_namespaces = [h.vm_netns(vm) for vm in ("v1", "v2")]
    # a command left running inside a VM: no record and no state dir in its command line
    stray = nsexec.popen(h.vm_netns("v1"), ["sleep", "600"], stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while stray.pid not in netns.pids_in_netns(h.vm_netns("v1")):
            assert stray.poll() is None and time.monotonic() < deadline, "sleep never ran"
            time.sleep(0.02)
        # the lab's records and the agents' (which list the VMs they made) are all lost
        (RUN_ROOT / h.name / STATE_FILE).unlink()
        for node in ("a", "b"):
            agent_state_file(RUN_ROOT / h.name, node).unlink()
        said: list[str] = []
        assert real.down(h.name, report=said.append) is True
        assert stray.wait(timeout=30) is not None  # stopped by the sweep (by namespace)
    finally:
        if stray.poll() is None:
            stray.kill()
            stray.wait()
    assert remains(h.name) == []
    text = "\n".join(said)
    assert "no lab state" in text
    for ns in ("u-sw", "n-a", "n-b"):
        assert f"removed namespace ov-{h.name}-{ns}," in text
    for vm in vm_namespaces:
        assert f"removed namespace {vm}," in text
    assert f"removed directory {ETC_NETNS}/{vm_namespaces[0]}," in text
    assert f"removed state directory {RUN_ROOT / h.name}," in text
    assert [line for line in said if f"removed process {stray.pid}: sleep 600" in line], said


def test_down_of_the_real_cli_says_what_it_swept(lab: LabFactory) -> None:
    h = lab(SMALL, dhcp=False)
    (RUN_ROOT / h.name / STATE_FILE).write_bytes(b"\x00\xff garbage")
    r = subprocess.run(
        [*openvpc_command(), "down", h.name], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
    assert "lab removed" in r.stdout
    assert f"removed namespace ov-{h.name}-n-a" in r.stderr.replace("\n", " ")
    assert remains(h.name) == []


DUPLICATE = """\
name: {name}
nodes: [a]
tenants:
  - name: red
    vpcs:
      - name: prod
        cidr: 10.0.0.0/16
        subnets: [{{name: web, cidr: 10.0.1.0/24}}]
        vms:
          - {{name: v1, subnet: web, node: a}}
          - {{name: v2, subnet: web, node: a, name: v3}}
"""


def _document(name: str, vms: list[dict[str, Any]], cidr: str) -> str:
    doc = {
        "name": name,
        "nodes": ["a"],
        "tenants": [
            {
                "name": "red",
                "vpcs": [
                    {
                        "name": "prod",
                        "cidr": "10.0.0.0/16",
                        "subnets": [{"name": "web", "cidr": cidr}],
                        "vms": vms,
                    }
                ],
            }
        ],
    }
    return yaml.safe_dump(doc, sort_keys=False)


def invalid_file(case: str, name: str) -> tuple[str, str]:
    """(file text, the start of the error it must give)."""
    if case == "duplicate key":
        return DUPLICATE.format(name=name), "tenants[0].vpcs[0].vms[1].name: key 'name' given twice"
    if case == "addresses exhausted":
        vms = [{"name": f"v{i}", "subnet": "web", "node": "a"} for i in range(12)]
        return _document(name, vms, "10.0.1.0/28"), (
            "tenants[0].vpcs[0].vms[11]: InsufficientFreeAddressesInSubnet"
        )
    vms = [{"name": f"v{i}", "subnet": "web", "node": "a"} for i in range(3)]
    vms.append({"name": "v3", "subnet": "web", "node": "a", "ip": "10.0.1.5"})
    return _document(name, vms, "10.0.1.0/24"), (
        "tenants[0].vpcs[0].vms[3].ip: InvalidIPAddress.InUse: Address 10.0.1.5 is in use."
    )


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory an unprivileged user can read (pytest's tmp_path is root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="ov-robust-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path)


CASES = ["duplicate key", "addresses exhausted", "fixed ip taken"]


@pytest.mark.parametrize("case", CASES)
def test_an_invalid_file_is_refused_with_its_path_and_up_creates_nothing(
    case: str, shared_dir: Path
) -> None:
    name = unique_name()
    text, error = invalid_file(case, name)
    path = shared_dir / f"{name}.yaml"
    path.write_text(text)
    path.chmod(0o644)
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    checks = [[*openvpc_command(), "validate", str(path)]]
    if shutil.which("setpriv"):
        checks.append([*nobody, *openvpc_command(), "validate", str(path)])
    for argv in checks:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert r.returncode == 1, (argv, r.stdout, r.stderr)
        assert r.stderr.startswith(error), r.stderr
    r = subprocess.run(
        [*openvpc_command(), "up", str(path)], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert r.stderr.startswith(error), r.stderr
    assert remains(name) == []
    assert not (RUN_ROOT / name).exists()


def test_the_valid_version_passes_validate_without_root(shared_dir: Path) -> None:
    path = shared_dir / "ok.yaml"
    vms = [{"name": f"v{i}", "subnet": "web", "node": "a"} for i in range(11)]
    path.write_text(_document(unique_name(), vms, "10.0.1.0/28"))
    path.chmod(0o644)
    argv = [*openvpc_command(), "validate", str(path)]
    if shutil.which("setpriv"):
        argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *argv]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "is valid (1 nodes, 1 tenants, 11 VMs)" in r.stdout
