"""The command lines of the lab's processes: one controller, and per compute node a vRouter and
an agent inside the node's namespace, each with its socket, log, supervisor status file and
secret in the lab's state dir (the node's secret for its vRouter and agent, the operator's for
the controller)."""

import sys
from dataclasses import dataclass
from pathlib import Path

from openvpc.lab.naming import FABRIC_IF

CONTROLLER = "controller"
VROUTER = "vrouter"
AGENT = "agent"
ROLES = (CONTROLLER, VROUTER, AGENT)


@dataclass(frozen=True, slots=True)
class ProcessSpec:
    role: str
    node: str  # "" for the controller
    argv: tuple[str, ...]
    log: str
    socket: str | None  # a unix socket it creates: ready once it exists
    status: str = ""  # its supervisor's status file (pid, restarts)


def openvpc_command() -> tuple[str, ...]:
    """How to run `openvpc` with the interpreter we run under (a venv's console script)."""
    script = Path(sys.executable).parent / "openvpc"
    if script.exists():
        return (str(script),)
    return (sys.executable, "-c", "import sys; from openvpc.cli import main; main()")


def status_file(state_dir: Path, role: str, node: str) -> str:
    return str(state_dir / (f"{role}-{node}.proc.json" if node else f"{role}.proc.json"))


def controller_target(state_dir: Path) -> str:
    return f"unix:{state_dir / 'sb.sock'}"


def vrouter_socket(state_dir: Path, node: str) -> Path:
    return state_dir / f"vr-{node}.sock"


def node_secret_file(state_dir: Path, node: str) -> Path:
    return state_dir / f"node-{node}.secret"


def agent_state_file(state_dir: Path, node: str) -> Path:
    return state_dir / f"agent-{node}.json"


def operator_secret_file(state_dir: Path) -> Path:
    return state_dir / "operator.secret"


def controller_spec(
    state_dir: Path, openvpc: tuple[str, ...], api_listen: str, default_encap: str
) -> ProcessSpec:
    argv = (
        *openvpc,
        "controller",
        "--db",
        str(state_dir / "openvpc.db"),
        "--listen",
        controller_target(state_dir),
        "--operator-secret-file",
        str(operator_secret_file(state_dir)),
        "--api-listen",
        api_listen,
        "--default-encap",
        default_encap,
    )
    return ProcessSpec(
        CONTROLLER,
        "",
        argv,
        str(state_dir / "controller.log"),
        str(state_dir / "sb.sock"),
        status_file(state_dir, CONTROLLER, ""),
    )


def vrouter_spec(
    state_dir: Path, openvpc: tuple[str, ...], node: str, ns: str, datapath: str = "python"
) -> ProcessSpec:
    sock = vrouter_socket(state_dir, node)
    argv = (
        *openvpc,
        "vrouter",
        "--control",
        str(sock),
        "--fabric",
        FABRIC_IF,
        "--secret-file",
        str(node_secret_file(state_dir, node)),
        "--netns",
        ns,
        "--datapath",
        datapath,
    )
    log = str(state_dir / f"vrouter-{node}.log")
    return ProcessSpec(VROUTER, node, argv, log, str(sock), status_file(state_dir, VROUTER, node))


def agent_spec(
    state_dir: Path,
    openvpc: tuple[str, ...],
    node: str,
    ns: str,
    vm_prefix: str | None = None,
    dhcp: bool = True,
) -> ProcessSpec:
    """With `vm_prefix` the agent makes the node's VMs (and runs DHCP in them if `dhcp`)."""
    vms = ("--vm-netns-prefix", vm_prefix) if vm_prefix is not None else ()
    argv = (
        *openvpc,
        "agent",
        "--node",
        node,
        "--controller",
        controller_target(state_dir),
        "--vrouter",
        str(vrouter_socket(state_dir, node)),
        "--secret-file",
        str(node_secret_file(state_dir, node)),
        "--netns",
        ns,
        "--state",
        str(agent_state_file(state_dir, node)),
        *vms,
        *(() if dhcp else ("--no-vm-dhcp",)),
    )
    log = str(state_dir / f"agent-{node}.log")
    return ProcessSpec(AGENT, node, argv, log, None, status_file(state_dir, AGENT, node))
