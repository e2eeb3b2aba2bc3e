"""The action handlers, one module per resource area; `load` registers them all."""

import functools


@functools.cache
def load() -> None:
    from openvpc.api.actions import (  # noqa: F401 (registers by import)
        acls,
        addresses,
        gateways,
        instances,
        interfaces,
        peering,
        regions,
        routes,
        security,
        tags,
        vpcs,
    )
