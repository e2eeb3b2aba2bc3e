"""The actions the API answers: each EC2 action name maps to one handler, registered by the
modules of `api.actions` with the `action` decorator."""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from openvpc.api.context import Call

Output = Mapping[str, Any] | None
Handler = Callable[[Call], Output]


@dataclass(frozen=True, slots=True)
class Action:
    name: str
    handler: Handler
    mutating: bool  # runs in one store transaction with its tags and ClientToken record


ACTIONS: dict[str, Action] = {}


def action(name: str, *, mutating: bool = True) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        if name in ACTIONS:
            raise RuntimeError(f"{name} is registered twice")
        ACTIONS[name] = Action(name, handler, mutating)
        return handler

    return register
