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
            if self.service.in_batch():
                # asked mid-transaction: no node can have applied what is not committed, so
                # answer from the last committed revision compiled (reads here would see the
                # batch's own changes, which may yet roll back)
                return min(revision, self._revision) if self._revision >= 0 else revision
            if revision != self._revision:
                self._ready = self._compile()
                self._revision = revision
            return revision

    def _compile(self) -> set[tuple[str, str]]:
        configs = compile_all(self.service.snapshot())
        return {(n, p.interface_id) for n, c in configs.items() for p in c.ports}

    def acked(self, node: str) -> int | None:
        return self._refresh()

    def vm_ready(self, node: str, interface_id: str) -> bool:
        self._refresh()
        return (node, interface_id) in self._ready
