"""The lab's internet (docs/internet.md): the gateway node's agent makes its namespace like
a VM's; the lab runs a small web server there whose access log names each client."""

import subprocess
import sys
import time
from pathlib import Path

from openvpc.lab import netns, nsexec
from openvpc.lab.naming import vm_prefix
from openvpc.model.internet import INTERNET_NETNS_SUFFIX

LOG_FILE = "internet-http.log"
WEB_PORT = 80
APPEAR_TIMEOUT = 30.0


def internet_netns(lab: str) -> str:
    return vm_prefix(lab) + INTERNET_NETNS_SUFFIX


def log_path(sdir: Path) -> Path:
    return sdir / LOG_FILE


def start_web_server(sdir: Path, lab: str) -> None:
    """The web server (`openvpc.lab.web`) in the internet namespace once the agent made it,
    its access log in the lab's state directory. `down` stops it with the VMs."""
    ns = internet_netns(lab)
    deadline = time.monotonic() + APPEAR_TIMEOUT
    while not netns.netns_exists(ns):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the internet namespace {ns} did not appear")
        time.sleep(0.2)
    argv = [sys.executable, "-u", "-m", "openvpc.lab.web", str(WEB_PORT)]
    with open(log_path(sdir), "ab") as log:
        subprocess.Popen(
            nsexec.command(ns, argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
