"""Names of what the real lab creates: namespaces "ov-<lab>-<role letter>-<name>", state paths.

The role letter (n: compute node, v: VM, u: underlay device) keeps a node, a VM and a router
from ever sharing a namespace name whatever the topology calls them.
"""

import re
from pathlib import Path

RUN_ROOT = Path("/run/openvpc")
NETNS_DIR = "/run/netns"  # where iproute2 and pyroute2 pin named namespaces
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,23}$")
FABRIC_IF = "fabric0"  # a compute node's underlay interface, given to its vRouter as --fabric
STATE_FILE = "state.json"


def check_name(what: str, name: str) -> str:
    """Names end up in namespace names and paths: short, lower case, no separators."""
    if not NAME_RE.match(name):
        raise ValueError(
            f"{what} name {name!r} must be 1-24 characters of a-z, 0-9, '-' or '_', "
            "starting with a letter or digit"
        )
    return name


def node_netns(lab: str, node: str) -> str:
    return f"ov-{lab}-n-{node}"


def vm_prefix(lab: str) -> str:
    """Every VM namespace of the lab starts with it: its agents make no other."""
    return f"ov-{lab}-v-"


def vm_netns(lab: str, vm: str) -> str:
    return f"{vm_prefix(lab)}{vm}"


def underlay_netns(lab: str, role: str) -> str:
    return f"ov-{lab}-u-{role}"


def state_dir(lab: str, root: Path = RUN_ROOT) -> Path:
    return root / lab
