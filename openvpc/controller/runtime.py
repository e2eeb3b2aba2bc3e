"""What the controller knows of the nodes at run time, for the API: which store revision each
node applied, and which interfaces' VMs it reports ready (from the agents' acks)."""

from typing import Protocol

from openvpc.southbound.hub import ConfigHub


class Runtime(Protocol):
    def acked(self, node: str) -> int | None:
        """The highest store revision the node applied (None: it has acked nothing yet)."""
        ...

    def vm_ready(self, node: str, interface_id: str) -> bool:
        """Whether the node reports the VM of `interface_id` made and its port attached."""
        ...


class HubRuntime:
    """The Runtime of a controller process: read from its southbound hub."""

    def __init__(self, hub: ConfigHub) -> None:
        self._hub = hub

    def acked(self, node: str) -> int | None:
        return self._hub.acked(node)

    def vm_ready(self, node: str, interface_id: str) -> bool:
        return self._hub.vm(node, interface_id) is not None
