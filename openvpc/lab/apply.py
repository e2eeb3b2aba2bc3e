"""Apply a topology file's tenants through the EC2 API, as a client would: create what is
missing, change what differs, and remove what the file no longer has (resources are matched by
their Name tags). `openvpc up` and `openvpc apply` both use it.

Two openvpc extensions carry what EC2 cannot say: Placement.HostId names the compute node of
an instance, and a route to GatewayId "blackhole" drops what it matches.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from openvpc.api.actions.vpcs import ENCAP_TAG, MODE_TAG
from openvpc.lab import apiview
from openvpc.lab.topology import (
    MAIN,
    VM_TARGET,
    TenantSpec,
    Topology,
    TopologyError,
    VpcSpec,
    vm_field,
)

IMAGE = "ami-0abcdef1234567890"  # the catalogue's default image: recorded, not interpreted
INSTANCE_TYPE = "t3.micro"
ALLOWED_TAG = "openvpc:allowed-addresses"
WAIT_S = 120  # for instances to run or terminate


@dataclass(frozen=True, slots=True)
class Endpoint:
    url: str
    region: str
    keys: Mapping[str, tuple[str, str]]  # tenant -> (access key id, secret)

    def ec2(self, tenant: str) -> Any:
        if tenant not in self.keys:
            raise TopologyError(f"tenant {tenant} has no access key in this lab")
        key, secret = self.keys[tenant]
        return _session().create_client(
            "ec2",
            region_name=self.region,
            endpoint_url=self.url,
            aws_access_key_id=key,
            aws_secret_access_key=secret,
            config=Config(retries={"max_attempts": 3, "mode": "standard"}),
        )


Progress = Callable[[str], None]


@functools.cache
def _session() -> botocore.session.Session:
    """One botocore session: it loads the EC2 model once for every client made from it."""
    return botocore.session.get_session()


def apply(topo: Topology, endpoint: Endpoint, progress: Progress = lambda _: None) -> list[str]:
    """Bring every tenant of the file to what it says; returns what was done, one line each."""
    done: list[str] = []
    for i, tenant in enumerate(topo.tenants):
        try:
            _apply_tenant(tenant, endpoint.ec2(tenant.name), f"tenants[{i}]", done, progress)
        except ClientError as e:
            err = e.response.get("Error", {})
            raise TopologyError(
                f"tenants[{i}] ({tenant.name}): {err.get('Code')}: {err.get('Message')}"
            ) from e
        except BotoCoreError as e:
            raise TopologyError(f"tenants[{i}] ({tenant.name}): {e}") from e
    return done


def _apply_tenant(
    tenant: TenantSpec, ec2: Any, path: str, done: list[str], progress: Progress
) -> None:
    def did(what: str) -> None:
        done.append(f"{tenant.name}: {what}")
        progress(done[-1])

    view = apiview.read(ec2, tenant.name)
    wanted = {v.name for v in tenant.vpcs}
    for vpc in view.vpcs:
        if vpc.name and vpc.name not in wanted:
            _remove_vpc(ec2, view, vpc.id, did)
            did(f"deleted VPC {vpc.name}")
    for j, spec in enumerate(tenant.vpcs):
        _apply_vpc(ec2, tenant.name, spec, f"{path}.vpcs[{j}]", did)


def _one(items: list[Any], name: str, path: str) -> Any:
    found = [x for x in items if x.name == name]
    if len(found) > 1:
        raise TopologyError(f"{path}: {len(found)} resources are named {name!r}; cannot tell")
    return found[0] if found else None


def _tags(kind: str, **tags: str) -> list[dict[str, Any]]:
    return [{"ResourceType": kind, "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}]


def _apply_vpc(ec2: Any, tenant: str, spec: VpcSpec, path: str, did: Callable[[str], None]) -> None:
    view = apiview.read(ec2, tenant)
    vpc = _one(view.vpcs, spec.name, path)
    if vpc is None:
        tags = {"Name": spec.name, MODE_TAG: spec.mode, ENCAP_TAG: spec.encap}
        made = ec2.create_vpc(CidrBlock=spec.cidr, TagSpecifications=_tags("vpc", **tags))["Vpc"]
        did(f"created VPC {spec.name} {made['VpcId']}")
        view = apiview.read(ec2, tenant)
        vpc = _one(view.vpcs, spec.name, path)
    elif vpc.cidr != spec.cidr:
        raise TopologyError(
            f"{path}: VPC {spec.name} exists as {vpc.cidr}, the file says {spec.cidr}"
        )
    main = view.main_tables[vpc.id]
    tables = {MAIN: main}
    mine = [t for t in view.tables if t.vpc == vpc.id and t.id != main]
    for k, t in enumerate(spec.route_tables):
        if t.name == MAIN:
            continue
        found = _one(mine, t.name, f"{path}.route_tables[{k}]")
        if found is None:
            made = ec2.create_route_table(
                VpcId=vpc.id, TagSpecifications=_tags("route-table", Name=t.name)
            )["RouteTable"]
            did(f"created route table {t.name} {made['RouteTableId']}")
            tables[t.name] = made["RouteTableId"]
        else:
            tables[t.name] = found.id
    subnets: dict[str, str] = {}
    present = [s for s in view.subnets if s.vpc == vpc.id]
    for k, s in enumerate(spec.subnets):
        found = _one(present, s.name, f"{path}.subnets[{k}]")
        if found is None:
            made = ec2.create_subnet(
                VpcId=vpc.id, CidrBlock=s.cidr, TagSpecifications=_tags("subnet", Name=s.name)
            )["Subnet"]
            did(f"created subnet {s.name} {made['SubnetId']}")
            subnets[s.name] = made["SubnetId"]
        elif found.cidr != s.cidr:
            raise TopologyError(
                f"{path}.subnets[{k}].cidr: subnet {s.name} exists as {found.cidr}, "
                f"the file says {s.cidr}"
            )
        else:
            subnets[s.name] = found.id
    _associate(ec2, view, spec, tables, subnets, did)
    interfaces = _apply_vms(ec2, tenant, vpc.id, spec, path, subnets, did)
    _apply_routes(ec2, tenant, spec, path, tables, interfaces, did)
    _remove_extra(ec2, tenant, vpc.id, spec, tables, subnets, did)


def _associate(
    ec2: Any,
    view: apiview.TenantView,
    spec: VpcSpec,
    tables: dict[str, str],
    subnets: dict[str, str],
    did: Callable[[str], None],
) -> None:
    explicit = {a.subnet: a.route_table for a in view.associations}
    for s in spec.subnets:
        subnet, want = subnets[s.name], tables[s.route_table]
        have = explicit.get(subnet)
        if have == want or (have is None and s.route_table == MAIN):
            continue
        if have is None:
            ec2.associate_route_table(RouteTableId=want, SubnetId=subnet)
        elif s.route_table == MAIN:
            ec2.disassociate_route_table(AssociationId=view.association_ids[subnet])
        else:
            ec2.replace_route_table_association(
                AssociationId=view.association_ids[subnet], RouteTableId=want
            )
        did(f"subnet {s.name} uses route table {s.route_table}")


def _apply_vms(
    ec2: Any,
    tenant: str,
    vpc_id: str,
    spec: VpcSpec,
    path: str,
    subnets: dict[str, str],
    did: Callable[[str], None],
) -> dict[str, str]:
    """Run the VMs the VPC lacks; returns each VM's primary interface id by name."""
    view = apiview.read(ec2, tenant)
    in_vpc = {s.id for s in view.subnets if s.vpc == vpc_id}
    present = [i for i in view.instances if _subnet_of(view, i.interface) in in_vpc]
    interfaces: dict[str, str] = {}
    started: list[str] = []
    for k, vm in enumerate(spec.vms):
        vpath = f"{path}.vms[{k}]"
        found = _one(present, vm.name, vpath)
        if found is not None:
            if (found.node, _subnet_of(view, found.interface)) != (vm.node, subnets[vm.subnet]):
                raise TopologyError(
                    f"{vpath}: VM {vm.name} exists on {found.node} in another place than the "
                    "file says; terminate it first"
                )
            interfaces[vm.name] = found.interface
            continue
        tags = {"Name": vm.name}
        if vm.allowed_addresses:
            tags[ALLOWED_TAG] = ",".join(vm.allowed_addresses)
        args: dict[str, Any] = {
            "ImageId": IMAGE,
            "InstanceType": INSTANCE_TYPE,
            "MinCount": 1,
            "MaxCount": 1,
            "SubnetId": subnets[vm.subnet],
            "Placement": {"HostId": vm.node},
            "TagSpecifications": _tags("instance", **tags),
        }
        if vm.ip is not None:
            args["PrivateIpAddress"] = vm.ip
        try:
            made = ec2.run_instances(**args)["Instances"][0]
        except ClientError as e:
            err = e.response.get("Error", {})
            message = str(err.get("Message"))
            field = vm_field(vm, message)
            raise TopologyError(f"{vpath}{field}: {err.get('Code')}: {message}") from e
        interfaces[vm.name] = made["NetworkInterfaces"][0]["NetworkInterfaceId"]
        started.append(made["InstanceId"])
        did(f"ran instance {vm.name} {made['InstanceId']} on {vm.node}")
    if started:
        ec2.get_waiter("instance_running").wait(
            InstanceIds=started, WaiterConfig={"Delay": 1, "MaxAttempts": WAIT_S}
        )
    return interfaces


def _subnet_of(view: apiview.TenantView, interface: str) -> str:
    return next((i.subnet for i in view.interfaces if i.id == interface), "")


def _apply_routes(
    ec2: Any,
    tenant: str,
    spec: VpcSpec,
    path: str,
    tables: dict[str, str],
    interfaces: dict[str, str],
    did: Callable[[str], None],
) -> None:
    current = {t.id: t for t in apiview.read(ec2, tenant).tables}
    for k, t in enumerate(spec.route_tables):
        table = current[tables[t.name]]
        have = {r.destination: r.target for r in table.routes if r.target != "local"}
        want: dict[str, str] = {}
        for route in t.routes:
            target = route.target
            if target.startswith(VM_TARGET):
                target = interfaces[target[len(VM_TARGET) :]]
            want[route.destination] = target
        for n, (destination, target) in enumerate(want.items()):
            if have.get(destination) == target:
                continue
            args = {"RouteTableId": table.id, "DestinationCidrBlock": destination}
            args.update(_target(target))
            try:
                if destination in have:
                    ec2.replace_route(**args)
                else:
                    ec2.create_route(**args)
            except ClientError as e:
                err = e.response.get("Error", {})
                raise TopologyError(
                    f"{path}.route_tables[{k}].routes[{n}]: {err.get('Code')}: {err.get('Message')}"
                ) from e
            did(f"route {destination} -> {target} in {t.name}")
        for destination in have.keys() - want.keys():
            ec2.delete_route(RouteTableId=table.id, DestinationCidrBlock=destination)
            did(f"deleted route {destination} in {t.name}")


def _target(target: str) -> dict[str, str]:
    if target.startswith("eni-"):
        return {"NetworkInterfaceId": target}
    return {"GatewayId": target}  # blackhole (an openvpc extension) or a gateway


def _remove_extra(
    ec2: Any,
    tenant: str,
    vpc_id: str,
    spec: VpcSpec,
    tables: dict[str, str],
    subnets: dict[str, str],
    did: Callable[[str], None],
) -> None:
    """Terminate the VPC's instances, and delete its subnets and route tables, that the file
    no longer names."""
    view = apiview.read(ec2, tenant)
    in_vpc = {s.id for s in view.subnets if s.vpc == vpc_id}
    names = {vm.name for vm in spec.vms}
    extra = [
        i for i in view.instances if _subnet_of(view, i.interface) in in_vpc and i.name not in names
    ]
    _terminate(ec2, [i.id for i in extra])
    for i in extra:
        did(f"terminated instance {i.name} {i.id}")
    for s in view.subnets:
        if s.vpc == vpc_id and s.id not in subnets.values():
            ec2.delete_subnet(SubnetId=s.id)
            did(f"deleted subnet {s.name or s.id}")
    for t in view.tables:
        if t.vpc == vpc_id and t.id not in tables.values():
            ec2.delete_route_table(RouteTableId=t.id)
            did(f"deleted route table {t.name or t.id}")


def _terminate(ec2: Any, ids: list[str]) -> None:
    if ids:
        ec2.terminate_instances(InstanceIds=ids)
        ec2.get_waiter("instance_terminated").wait(
            InstanceIds=ids, WaiterConfig={"Delay": 1, "MaxAttempts": WAIT_S}
        )


def _remove_vpc(
    ec2: Any, view: apiview.TenantView, vpc_id: str, did: Callable[[str], None]
) -> None:
    """A whole VPC the file no longer has: instances, subnets, tables, then the VPC."""
    subnets = {s.id for s in view.subnets if s.vpc == vpc_id}
    _terminate(ec2, [i.id for i in view.instances if _subnet_of(view, i.interface) in subnets])
    for subnet, association in view.association_ids.items():
        if subnet in subnets:
            ec2.disassociate_route_table(AssociationId=association)
    for subnet in subnets:
        ec2.delete_subnet(SubnetId=subnet)
    for t in view.tables:
        if t.vpc == vpc_id and t.id != view.main_tables.get(vpc_id):
            ec2.delete_route_table(RouteTableId=t.id)
    ec2.delete_vpc(VpcId=vpc_id)
