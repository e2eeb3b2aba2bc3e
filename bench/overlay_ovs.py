"""A private Open vSwitch for one baseline node: its own ovsdb-server and ovs-vswitchd (userspace
datapath) with run, db and log files in a directory of ours, run inside the node's namespace
(so a sweep of our namespaces finds them), never the system service.
"""

import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

SCHEMA = Path("/usr/share/openvswitch/vswitch.ovsschema")
PACKAGES = ("openvswitch-switch", "ethtool")
START_TIMEOUT = 20.0


class OvsError(RuntimeError):
    """Open vSwitch could not be installed, started or configured."""


def ensure_installed() -> None:
    """apt-get install openvswitch-switch (and ethtool) when missing; the packaged service is
    not used (Debian's policy-rc.d may keep it from starting; we stop nothing of the system)."""
    if all(shutil.which(t) for t in ("ovs-vswitchd", "ovsdb-server", "ovs-vsctl", "ethtool")):
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for argv in (["apt-get", "update"], ["apt-get", "install", "-y", *PACKAGES]):
        done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
        if done.returncode != 0:
            raise OvsError(f"{' '.join(argv)}: {done.stderr[-500:]}")


class PrivateOvs:
    """ovsdb-server + ovs-vswitchd for namespace `ns`, files under `directory`; stop() kills
    both (by the pids we started) and is safe to call twice."""

    def __init__(self, ns: str, directory: Path) -> None:
        self.ns = ns
        self.dir = directory
        self.env = dict(
            os.environ,
            OVS_RUNDIR=str(directory),
            OVS_DBDIR=str(directory),
            OVS_LOGDIR=str(directory),
            OVS_SYSCONFDIR=str(directory),
        )
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        db = self.dir / "conf.db"
        sock = self.dir / "db.sock"
        self._run(["ovsdb-tool", "create", str(db), str(SCHEMA)])
        self._daemon(
            [
                "ovsdb-server",
                str(db),
                f"--remote=punix:{sock}",
                f"--unixctl={self.dir / 'ovsdb-server.ctl'}",
                f"--pidfile={self.dir / 'ovsdb-server.pid'}",
                f"--log-file={self.dir / 'ovsdb-server.log'}",
            ]
        )
        self._wait_for(sock)
        self.vsctl("--no-wait", "init")
        # TSO off: OVS 3.1's userspace TSO stalls TCP across VXLAN (platform notes)
        self.vsctl(
            "--no-wait", "set", "Open_vSwitch", ".", "other_config:userspace-tso-enable=false"
        )
        self._daemon(
            [
                "ovs-vswitchd",
                f"unix:{sock}",
                f"--unixctl={self.dir / 'ovs-vswitchd.ctl'}",
                f"--pidfile={self.dir / 'ovs-vswitchd.pid'}",
                f"--log-file={self.dir / 'ovs-vswitchd.log'}",
            ]
        )
        self._wait_for(self.dir / "ovs-vswitchd.ctl")

    def vsctl(self, *args: str) -> str:
        return self._run(["ovs-vsctl", "--timeout=30", *args])

    def appctl(self, *args: str) -> str:
        return self._run(["ovs-appctl", "-t", str(self.dir / "ovs-vswitchd.ctl"), *args])

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        self.procs.clear()

    def _daemon(self, argv: Sequence[str]) -> None:
        log = open(self.dir / f"{argv[0]}.out", "wb")  # noqa: SIM115 - the daemon keeps it
        try:
            self.procs.append(
                subprocess.Popen(
                    ["ip", "netns", "exec", self.ns, *argv],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=self.env,
                )
            )
        finally:
            log.close()

    def _wait_for(self, path: Path) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while not path.exists():
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.procs):
                tail = "".join(p.read_text()[-400:] for p in self.dir.glob("*.out"))
                raise OvsError(f"Open vSwitch in {self.ns}: {path.name} never appeared: {tail}")
            time.sleep(0.05)

    def _run(self, argv: Sequence[str]) -> str:
        done = subprocess.run(
            ["ip", "netns", "exec", self.ns, *argv],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=60,
            check=False,
        )
        if done.returncode != 0:
            raise OvsError(f"{' '.join(argv)} in {self.ns}: {done.stderr.strip()}")
        return done.stdout
