"""The action handlers, one module per resource area; `load` registers them all."""

import functools


@functools.cache
def load() -> None:
    from openvpc.api.actions import instances, interfaces, regions, tags, vpcs  # noqa: F401
