"""Nodes that apply every revision the moment it is compiled: the runtime of a scratch API
(`openvpc validate`, which applies a file through the API to a store in memory) and of the
in-memory test tier. A VM exists for every interface the compiler puts on a node."""

from __future__ import annotations

import threading

from openvpc.compiler.compile import compile_all
from openvpc.service import Service


class InstantRuntime:
    def __init__(self, service: Service) -> None:
        self.service = service
        self._lock = threading.Lock()
        self._revision = -1
        self._ready: set[tuple[str, str]] = set()

    def _refresh(self) -> int:
        with self._lock:
            revision = self.service.revision()
            if revision != self._revision:
                configs = compile_all(self.service.snapshot())
                self._ready = {(n, p.interface_id) for n, c in configs.items() for p in c.ports}
                self._revision = revision
            return revision

    def acked(self, node: str) -> int | None:
        return self._refresh()

    def vm_ready(self, node: str, interface_id: str) -> bool:
        self._refresh()
        return (node, interface_id) in self._ready
