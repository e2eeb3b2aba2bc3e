"""The agent stage: frames the agent injects through its vif, sent out of the vif named in
their agent header."""

from __future__ import annotations

from typing import TYPE_CHECKING

from openvpc.packet.ethernet import ETH_LEN
from openvpc.vrouter.drops import Drop
from openvpc.vrouter.punt import Punt, parse_punt
from openvpc.vrouter.tables import VifKind
from openvpc.vrouter.trace import Stage

if TYPE_CHECKING:
    from openvpc.vrouter.pipeline import Pass


def from_agent(run: Pass, data: bytes) -> None:
    header, frame = parse_punt(data)
    target = run.t.vifs.get(header.vif)
    # everything on the agent vif carries an agent header, so nothing is injected back to it
    if (
        header.reason != Punt.INJECT
        or target is None
        or target.kind is VifKind.AGENT
        or len(frame) < ETH_LEN
    ):
        return run.drop(Drop.FROM_AGENT_INVALID)
    if run.rec is not None:
        run.rec(Stage.AGENT, f"inject to vif {header.vif}")
    return run.emit(header.vif, frame)
