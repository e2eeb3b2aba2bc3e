"""One API request as an action handler sees it: who calls, the typed parameters, the service
and the controller's view of the nodes (what they applied, which VMs exist)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from openvpc.api.errors import ApiError, shown
from openvpc.api.query import Params, Value
from openvpc.service import Service

MAX_TAGS = 50  # AWS's quota of tags per resource
_TAG_KEY_MAX = 128
_TAG_VALUE_MAX = 256


class Runtime(Protocol):
    """What the controller knows of the nodes right now (nothing of it is stored)."""

    def acked(self, node: str) -> int | None:
        """The highest store revision the node's agent applied, None if never heard of."""
        ...

    def vm_ready(self, node: str, interface_id: str) -> bool:
        """Whether the node reported the VM of this interface as existing and plugged."""
        ...


@dataclass(frozen=True, slots=True)
class Caller:
    """The signer of a request, from its verified SigV4 scope."""

    tenant: str
    account: str
    access_key: str
    region: str


@dataclass(frozen=True, slots=True)
class Call:
    action: str
    params: Params
    service: Service
    caller: Caller
    runtime: Runtime
    now: float
    request_id: str
    default_encap: str = "vxlan"  # a new VPC's encapsulation unless its tags choose

    @property
    def tenant(self) -> str:
        return self.caller.tenant

    @property
    def account(self) -> str:
        return self.caller.account

    @property
    def region(self) -> str:
        return self.caller.region

    def param(self, name: str, default: Value | None = None) -> Value | None:
        return self.params.get(name, default)

    def required(self, name: str) -> Value:
        value = self.params.get(name)
        if value is None or value == "" or value == []:
            raise missing(name)
        return value

    def text(self, name: str, default: str = "") -> str:
        """A string parameter ("" or `default` when absent)."""
        value = self.params.get(name)
        return default if value is None else str(value)

    def ids(self, name: str) -> list[str]:
        """A list-of-strings parameter (ResourceId, VpcIds, ...), [] when absent."""
        value = self.params.get(name)
        return [str(v) for v in value] if isinstance(value, list) else []

    def tags_for(self, resource_type: str) -> list[tuple[str, str]]:
        """The tags TagSpecifications asks for on a new resource of `resource_type`; a
        specification of any other type is refused, as EC2 does."""
        found: list[tuple[str, str]] = []
        specs = self.params.get("TagSpecifications")
        for spec in specs if isinstance(specs, list) else []:
            assert isinstance(spec, dict)
            kind = spec.get("ResourceType")
            if kind != resource_type:
                raise ApiError(
                    "InvalidParameterValue",
                    f"'{shown(str(kind))}' is not a valid taggable resource type "
                    "for this operation.",
                )
            tags = spec.get("Tags")
            if not isinstance(tags, list) or not tags:
                raise ApiError(
                    "InvalidParameterValue", "Tag specification must have at least one tag"
                )
            found.extend(tag_pairs(tags))
        return found


def tag_pairs(tags: Sequence[Value]) -> list[tuple[str, str]]:
    """(key, value) of [{"Key": .., "Value": ..}] as a request gives them, checked as EC2 does."""
    pairs: list[tuple[str, str]] = []
    for tag in tags:
        if not isinstance(tag, dict):
            continue
        key, value = tag.get("Key"), tag.get("Value", "")
        if not isinstance(key, str) or not key:
            raise missing("Tag.Key")
        if key.lower().startswith("aws:"):
            raise ApiError(
                "InvalidParameterValue",
                "Tag keys starting with 'aws:' are reserved for internal use",
            )
        if len(key) > _TAG_KEY_MAX:
            raise ApiError(
                "InvalidParameterValue",
                f"Tag key exceeds the maximum length of {_TAG_KEY_MAX} characters",
            )
        text = "" if value is None else str(value)
        if len(text) > _TAG_VALUE_MAX:
            raise ApiError(
                "InvalidParameterValue",
                f"Tag value exceeds the maximum length of {_TAG_VALUE_MAX} characters",
            )
        pairs.append((key, text))
    return pairs


def missing(name: str) -> ApiError:
    return ApiError("MissingParameter", f"The request must contain the parameter {name}")
