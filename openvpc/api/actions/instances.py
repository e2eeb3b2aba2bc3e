"""Instance actions that change instances: run, stop, start, terminate and reboot.

Two openvpc extensions: Placement.HostId names the compute node (chosen, least loaded of the
subnet's zone, when absent), and the instance tag openvpc:allowed-addresses lists movable
addresses (VIPs) it may claim by gratuitous ARP.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from openvpc.api.actions.instance_view import (
    group_names,
    instance_out,
    instance_records,
    reported_state,
    state_out,
)
from openvpc.api.actions.vpcs import default_zone
from openvpc.api.context import Call, missing, tag_pairs
from openvpc.api.errors import ApiError, shown
from openvpc.api.registry import action
from openvpc.model.resources import Instance
from openvpc.service import catalogue
from openvpc.service.instances import Launch

# an openvpc extension: the movable addresses (VIPs) an instance may claim, comma-separated
ALLOWED_TAG = "openvpc:allowed-addresses"
_TAGGABLE = ("instance", "network-interface", "volume")  # volumes: accepted, nothing to tag


# -- run ------------------------------------------------------------------------------------


def _launch_tags(call: Call) -> dict[str, list[tuple[str, str]]]:
    """TagSpecifications of RunInstances, by resource type (instance, network-interface)."""
    found: dict[str, list[tuple[str, str]]] = {}
    specs = call.param("TagSpecifications")
    for spec in specs if isinstance(specs, list) else []:
        kind = spec.get("ResourceType") if isinstance(spec, dict) else None
        if kind not in _TAGGABLE:
            raise ApiError(
                "InvalidParameterValue",
                f"'{shown(str(kind))}' is not a valid taggable resource type for this operation.",
            )
        assert isinstance(spec, dict)
        tags = spec.get("Tags")
        if not isinstance(tags, list) or not tags:
            raise ApiError("InvalidParameterValue", "Tag specification must have at least one tag")
        found.setdefault(str(kind), []).extend(tag_pairs(tags))
    return found


def _int(call: Call, name: str) -> int:
    value = call.required(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiError(
            "InvalidParameterValue", f"Value ({shown(str(value))}) for parameter {name} is invalid."
        )
    return value


def _launch(call: Call) -> Launch:
    """The request's one interface: instance-level parameters or NetworkInterfaces[0]."""
    subnet = call.text("SubnetId")
    ip = call.param("PrivateIpAddress")
    groups = call.ids("SecurityGroupIds")
    description, secondary, delete = "", 0, True
    if call.ids("SecurityGroups"):
        raise ApiError(
            "InvalidParameterCombination",
            "The parameter groupName cannot be used with the parameter subnet",
        )
    specs = call.param("NetworkInterfaces")
    if isinstance(specs, list) and specs:
        if subnet:
            raise ApiError(
                "InvalidParameterCombination",
                "Network interfaces and an instance-level subnet ID may not be specified on "
                "the same request",
            )
        if groups:
            raise ApiError(
                "InvalidParameterCombination",
                "Network interfaces and an instance-level security groups may not be "
                "specified on the same request",
            )
        if ip is not None:
            raise ApiError(
                "InvalidParameterCombination",
                "Network interfaces and an instance-level private IP address may not be "
                "specified on the same request",
            )
        if len(specs) > 1:
            raise ApiError(
                "UnsupportedOperation",
                "Launching with more than one network interface is not supported; attach "
                "more with AttachNetworkInterface.",
            )
        spec = specs[0]
        assert isinstance(spec, dict)
        if spec.get("DeviceIndex", 0) != 0:
            raise ApiError(
                "InvalidParameterValue", "The primary network interface must have device index 0."
            )
        if spec.get("NetworkInterfaceId"):
            raise ApiError(
                "UnsupportedOperation",
                "Launching with an existing network interface is not supported.",
            )
        subnet = str(spec.get("SubnetId") or "")
        ip = spec.get("PrivateIpAddress")
        listed = spec.get("Groups")
        groups = [str(g) for g in listed] if isinstance(listed, list) else []
        description = str(spec.get("Description") or "")
        count = spec.get("SecondaryPrivateIpAddressCount", 0)
        secondary = count if isinstance(count, int) and not isinstance(count, bool) else -1
        delete = spec.get("DeleteOnTermination", True) is not False
    if not subnet:
        raise ApiError("VPCIdNotSpecified", "No default VPC for this user")
    placement = call.param("Placement")
    node = placement.get("HostId") if isinstance(placement, dict) else None
    return Launch(
        subnet,
        image=str(call.required("ImageId")),
        instance_type=call.text("InstanceType", catalogue.DEFAULT_TYPE),
        min_count=_int(call, "MinCount"),
        max_count=_int(call, "MaxCount"),
        ip=None if ip is None else str(ip),
        groups=tuple(groups),
        first_zone=default_zone(call),
        description=description,
        secondary_count=secondary,
        delete_on_termination=delete,
        node=str(node or ""),
    )


@action("RunInstances")
def run_instances(call: Call) -> dict[str, Any]:
    tags = _launch_tags(call)
    launch = _launch(call)
    chosen = dict(tags.get("instance", []))
    allowed = [a.strip() for a in chosen.get(ALLOWED_TAG, "").split(",") if a.strip()]
    launch = replace(launch, name=chosen.get("Name", ""), allowed_addresses=tuple(allowed))
    made = call.service.run_instances(call.tenant, launch, call.now)
    for kind, index in (("instance", 0), ("network-interface", 1)):
        if tags.get(kind):
            ids = [pair[index].id for pair in made]
            call.service.create_tags(call.tenant, ids, tags[kind])
    ids = [i.id for i, _ in made]
    records = sorted(instance_records(call, ids), key=lambda r: r.instance.launch_index)
    instance_tags = tags.get("instance", [])
    names = group_names(call)
    return {
        "ReservationId": made[0][0].reservation,
        "OwnerId": call.account,
        "Groups": [],
        "Instances": [instance_out(call, r, instance_tags, names) for r in records],
    }


# -- stop, start, terminate -------------------------------------------------------------------


Change = Callable[[str, list[str], float], list[tuple[Instance, Instance]]]


def _changes(call: Call, member: str, change: Change) -> dict[str, Any]:
    """Each instance's state before and after `change`, as EC2 reports a transition."""
    ids = call.ids("InstanceIds")
    if not ids:
        raise missing("InstanceIds")
    before = {r.instance.id: r for r in instance_records(call, ids)}
    pairs = change(call.tenant, ids, call.now)
    after = {r.instance.id: r for r in instance_records(call, ids)}
    out = []
    for old, new in pairs:
        prior = before.get(old.id)
        now = after.get(new.id)
        old_state = reported_state(call, old, prior.vpc_nodes if prior else ())
        new_state = reported_state(call, new, now.vpc_nodes if now else ())
        out.append(
            {
                "InstanceId": new.id,
                "PreviousState": state_out(old_state),
                "CurrentState": state_out(new_state),
            }
        )
    return {member: out}


@action("StopInstances")
def stop_instances(call: Call) -> dict[str, Any]:
    return _changes(call, "StoppingInstances", call.service.stop_instances)


@action("StartInstances")
def start_instances(call: Call) -> dict[str, Any]:
    return _changes(call, "StartingInstances", call.service.start_instances)


@action("TerminateInstances")
def terminate_instances(call: Call) -> dict[str, Any]:
    return _changes(call, "TerminatingInstances", call.service.terminate_instances)


@action("RebootInstances")
def reboot_instances(call: Call) -> None:
    ids = call.ids("InstanceIds")
    if not ids:
        raise missing("InstanceIds")
    call.service.reboot_instances(call.tenant, ids, call.now)
