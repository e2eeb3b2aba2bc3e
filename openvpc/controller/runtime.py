"""What the controller knows of the nodes at run time, for the API: which store revision each
node applied, and which interfaces' VMs it reports ready (from the agents' acks)."""

from openvpc.southbound.hub import ConfigHub


class HubRuntime:
    """The API's Runtime (api.context) in a controller process: read from its southbound hub.
    `acked` is the generation a node last acked, which is the store revision it was compiled
    at; `vm_ready` whether the node reports that interface's VM made and plugged."""

    def __init__(self, hub: ConfigHub) -> None:
        self._hub = hub

    def acked(self, node: str) -> int | None:
        return self._hub.acked(node)

    def vm_ready(self, node: str, interface_id: str) -> bool:
        return self._hub.vm(node, interface_id) is not None
