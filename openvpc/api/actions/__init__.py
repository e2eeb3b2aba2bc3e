"""The action handlers, one module per resource area; `load` registers them all."""

import functools


@functools.cache
def load() -> None:
    from openvpc.api.actions import regions, tags, vpcs  # noqa: F401 (registers by import)
