"""Answers the agent's JSON requests (the ops of `control.py`) against a `Programmer`. Pure:
plugging a VM's TAP is delegated to a `PortAttacher` the shell provides."""

import ipaddress
from collections.abc import Callable
from typing import Any, Protocol

from openvpc.model.codec import to_dict
from openvpc.model.forwarding import FlowKey
from openvpc.model.nodeconfig import KIND_CLASS, PortConfig, decode_object, object_key, object_kind
from openvpc.vrouter.dump import dump_all, flow_records, stats
from openvpc.vrouter.flow import FlowAction
from openvpc.vrouter.pipeline import Emit, install_flow
from openvpc.vrouter.program import Programmer

Reply = dict[str, Any]


class PortAttacher(Protocol):
    """Plugs and unplugs the VM side of a vif (the daemon opens and closes TAPs)."""

    def attach(self, port: PortConfig, apply: Callable[[], None]) -> None:
        """Make `port`'s TAP ready, run `apply` (the table write), and keep the TAP if it worked."""

    def detach(self, vif: int) -> None: ...


class RequestError(ValueError):
    """A request the vRouter refuses; the message goes back to the agent."""


class ControlHandler:
    """One per vRouter process: `handle` turns a request into a reply and frames to send."""

    def __init__(
        self,
        programmer: Programmer,
        boot_id: str,
        ports: PortAttacher | None = None,
        datapath: str = "python",
        fast_stats: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self.programmer = programmer
        self.boot_id = boot_id
        self.ports = ports
        self.datapath = datapath  # told in the hello: the agent plugs VMs to suit it
        self.fast_stats = fast_stats  # the eBPF programs' counters, reported with ours

    def handle(self, request: Any, now: float) -> tuple[Reply, list[Emit]]:
        """The reply (with the request's id) and whatever released held packets to emit."""
        rid = request.get("id") if isinstance(request, dict) else None
        emits: list[Emit] = []
        try:
            if not isinstance(request, dict):
                raise RequestError("a request is a JSON object")
            op = request.get("op")
            if op == "hello":
                result: Any = {
                    "boot_id": self.boot_id,
                    "generation": self.programmer.generation,
                    "datapath": self.datapath,
                }
            elif op == "batch":
                result = self.batch(request.get("ops"), request.get("generation"))
            elif op == "dump":
                result = self.dump()
            elif op == "flow":
                emits = self.flow(request, now)
                result = {"released": len(emits)}
            elif op == "flows":
                result = self.flows(request, now)
            elif op == "show":
                result = {"text": dump_all(self.programmer.tables) + self._fast_text()}
            elif op == "stats":
                result = stats(self.programmer.tables)
                if self.fast_stats is not None:
                    result = {**result, "ebpf": self.fast_stats()}
            else:
                raise RequestError(f"unknown op {op!r}")
        except (RequestError, ValueError, TypeError, KeyError, OSError) as e:
            return {"id": rid, "ok": False, "error": str(e) or type(e).__name__}, []
        return {"id": rid, "ok": True, "result": result}, emits

    def _fast_text(self) -> str:
        if self.fast_stats is None:
            return ""
        lines = ["", "eBPF fast path"]
        for section, values in self.fast_stats().items():
            lines.append(f"  {section}: {values}")
        return "\n".join(lines) + "\n"

    # -- ops ---------------------------------------------------------------------------------
    def batch(self, ops: Any, generation: Any) -> dict[str, int]:
        """Apply ops in order, stopping at the first refusal; record the generation at the end."""
        if not isinstance(ops, list):
            raise RequestError("batch needs an 'ops' list")
        if generation is not None and (not isinstance(generation, int) or generation < 0):
            raise RequestError(f"bad generation {generation!r}")
        for n, op in enumerate(ops):
            try:
                self.apply(op)
            except (ValueError, TypeError, KeyError, OSError) as e:
                raise RequestError(f"op {n} ({_describe(op)}): {e}; {n} applied") from e
        if generation is not None:
            self.programmer.generation = generation
        return {"applied": len(ops)}

    def apply(self, op: Any) -> None:
        if not isinstance(op, dict):
            raise RequestError("an op is a JSON object")
        kind = op.get("kind")
        if kind not in KIND_CLASS:
            raise RequestError(f"unknown object kind {kind!r}")
        what = op.get("op")
        if what == "set":
            obj = decode_object(kind, op.get("obj"))
            if isinstance(obj, PortConfig) and self.ports is not None:
                self.ports.attach(obj, lambda: self.programmer.set("vif", obj))
            else:
                self.programmer.set(kind, obj)
        elif what == "delete":
            key = op.get("key")
            if not isinstance(key, str):
                raise RequestError("delete needs a string 'key'")
            if self.programmer.delete(kind, key) and kind == "vif" and self.ports is not None:
                self.ports.detach(int(key))
        else:
            raise RequestError(f"unknown batch op {what!r}")

    def dump(self) -> dict[str, Any]:
        objects = [
            {"kind": object_kind(obj), "obj": to_dict(obj)} for obj in self.programmer.dump()
        ]
        return {"generation": self.programmer.generation, "objects": objects}

    def flow(self, request: dict[str, Any], now: float) -> list[Emit]:
        key = _flow_key(request.get("key"))
        raw_reverse = request.get("reverse")
        reverse = None if raw_reverse is None else _flow_key(raw_reverse)
        try:
            action = FlowAction(str(request.get("action")))
        except ValueError as e:
            raise RequestError(f"bad flow action {request.get('action')!r}") from e
        if action not in (FlowAction.FORWARD, FlowAction.DROP):
            raise RequestError(f"flow action must be forward or drop, not {action}")
        return install_flow(self.programmer.tables, key, action, now, reverse)

    def flows(self, request: dict[str, Any], now: float) -> dict[str, Any]:
        vrf, limit = request.get("vrf"), request.get("limit", 1000)
        for name, value in (("vrf", vrf), ("limit", limit)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                raise RequestError(f"{name} must be an integer, not {value!r:.40}")
        return flow_records(self.programmer.tables, now, vrf, limit)


def _flow_key(raw: Any) -> FlowKey:
    """[vrf, proto, src, dst, sport, dport] with text addresses -> a FlowKey."""
    if not isinstance(raw, list) or len(raw) != 6:
        raise RequestError(f"a flow key is [vrf, proto, src, dst, sport, dport], not {raw!r}")
    vrf, proto, src, dst, sport, dport = raw
    numbers = (vrf, proto, sport, dport)
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in numbers):
        raise RequestError(f"bad numbers in flow key {raw!r}")
    if proto > 255 or sport > 0xFFFF or dport > 0xFFFF:
        raise RequestError(f"flow key out of range: {raw!r}")
    try:
        return (
            vrf,
            proto,
            ipaddress.IPv4Address(src).packed,
            ipaddress.IPv4Address(dst).packed,
            sport,
            dport,
        )
    except ValueError as e:
        raise RequestError(f"bad address in flow key {raw!r}") from e


def _describe(op: Any) -> str:
    if not isinstance(op, dict):
        return "not an object"
    kind = op.get("kind")
    if op.get("op") == "delete":
        return f"delete {kind} {op.get('key')!r}"
    try:
        return f"set {kind} {object_key(decode_object(kind, op.get('obj')))!r}"
    except ValueError:
        return f"{op.get('op')} {kind}"
