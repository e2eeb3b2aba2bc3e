"""The lab's topology file: YAML parsed and checked into frozen dataclasses, and applied
to a controller's service by name, so that applying the same file twice changes nothing.

Errors name the offending field by its path, e.g. `tenants[0].vpcs[1].subnets[2].cidr: ...`.
"""

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any, Literal, TypeVar, cast, get_args

import yaml

from openvpc.lab.yamlload import DuplicateKeyError, StrictLoader
from openvpc.model.nodeconfig import EncapName, Mode
from openvpc.model.resources import Instance, Interface
from openvpc.model.vifnames import DATAPATHS
from openvpc.service import Service, ServiceError
from openvpc.service.ipam import reserved
from openvpc.service.routing import association_id

Underlay = Literal["l2", "l3"]
LabDatapath = Literal["auto", "python", "ebpf"]
LAB_DATAPATHS = ("auto", *DATAPATHS)
MAIN = "main"
LOCAL = "local"
BLACKHOLE = "blackhole"
VM_TARGET = "vm:"
# names end up inside namespace and interface names (IFNAMSIZ is 16 with the NUL)
MAX_LAB_NAME = 16
MAX_NODE_NAME = 8
MAX_VM_NAME = 6
MAX_NAME = 32
PREFIX_RANGE = (16, 28)
FABRIC_MTU_RANGE = (1280, 9216)
MAX_FILE_BYTES = 16 * 1024 * 1024
_NAME = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")
_ADDRESS = re.compile(r"(?<![\d.])\d{1,3}(?:\.\d{1,3}){3}(?!\d|\.\d)")

T = TypeVar("T")


class TopologyError(ValueError):
    """A topology file that cannot be used; the message starts with the field's path."""


@dataclass(frozen=True, slots=True)
class RouteSpec:
    destination: str
    target: str  # "local" | "blackhole" | "vm:<name>"


@dataclass(frozen=True, slots=True)
class RouteTableSpec:
    name: str  # "main" adds routes to the VPC's main table
    routes: tuple[RouteSpec, ...] = ()


@dataclass(frozen=True, slots=True)
class SubnetSpec:
    name: str
    cidr: str
    route_table: str = MAIN


@dataclass(frozen=True, slots=True)
class VmSpec:
    name: str
    subnet: str
    node: str
    ip: str | None = None
    allowed_addresses: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class VpcSpec:
    name: str
    cidr: str
    mode: Mode = "l3"
    encap: EncapName = "vxlan"  # the lab default unless the VPC overrides it
    route_tables: tuple[RouteTableSpec, ...] = ()
    subnets: tuple[SubnetSpec, ...] = ()
    vms: tuple[VmSpec, ...] = ()


@dataclass(frozen=True, slots=True)
class TenantSpec:
    name: str
    vpcs: tuple[VpcSpec, ...] = ()


@dataclass(frozen=True, slots=True)
class Topology:
    name: str
    underlay: Underlay
    encap: EncapName
    fabric_mtu: int
    nodes: tuple[str, ...]
    tenants: tuple[TenantSpec, ...] = ()
    # every vRouter's forwarding plane; auto: ebpf where this machine can run it
    datapath: LabDatapath = "auto"
    internet: str | None = None  # the gateway node, holding the internet (docs/internet.md)

    def vms(self) -> Iterator[tuple[TenantSpec, VpcSpec, VmSpec]]:
        for tenant in self.tenants:
            for vpc in tenant.vpcs:
                for vm in vpc.vms:
                    yield tenant, vpc, vm


# -- reading ----------------------------------------------------------------------------
def load_topology(path: str | Path) -> Topology:
    """Read and check a topology file; errors name the file (unreadable, too large, not
    UTF-8, not YAML) or the field."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except OSError as e:
        raise TopologyError(f"{path}: {e.strerror}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise TopologyError(f"{path}: larger than {MAX_FILE_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise TopologyError(
            f"{path}: not UTF-8 text (byte {e.start}, line {line}: {e.reason})"
        ) from None
    return loads_topology(text, str(path))


def loads_topology(text: str, source: str = "<topology>") -> Topology:
    try:
        data = yaml.load(text, Loader=StrictLoader)
    except DuplicateKeyError as e:
        raise TopologyError(f"{e.path}: {e.detail} ({source}, line {e.line})") from None
    except yaml.YAMLError as e:
        raise TopologyError(f"{source}: not valid YAML: {e}") from None
    return parse_topology(data)


def parse_topology(data: object) -> Topology:
    """Check a loaded YAML document and build the Topology; raises TopologyError."""
    top = _mapping(
        data,
        "",
        {"name", "nodes"},
        {"underlay", "encap", "fabric_mtu", "tenants", "datapath", "internet"},
    )
    name = _name(top["name"], "name", MAX_LAB_NAME)
    underlay = cast(Underlay, _choice(top.get("underlay", "l2"), "underlay", get_args(Underlay)))
    encap = _encap(top.get("encap", "vxlan"), "encap", underlay)
    datapath = cast(LabDatapath, _choice(top.get("datapath", "auto"), "datapath", LAB_DATAPATHS))
    mtu = top.get("fabric_mtu", 1500)
    lo, hi = FABRIC_MTU_RANGE
    if isinstance(mtu, bool) or not isinstance(mtu, int) or not lo <= mtu <= hi:
        raise TopologyError(f"fabric_mtu: expected an integer from {lo} to {hi}, got {mtu!r}")
    nodes = tuple(
        _name(n, f"nodes[{i}]", MAX_NODE_NAME) for i, n in enumerate(_list(top["nodes"], "nodes"))
    )
    if not nodes:
        raise TopologyError("nodes: at least one compute node is needed")
    _unique(nodes, "nodes", "node")
    tenants = tuple(
        _tenant(t, f"tenants[{i}]", underlay, encap, nodes)
        for i, t in enumerate(_list(top.get("tenants", []), "tenants"))
    )
    _unique([t.name for t in tenants], "tenants", "tenant")
    vm_names = [vm.name for tenant in tenants for vpc in tenant.vpcs for vm in vpc.vms]
    _unique(vm_names, "tenants", "VM", " (VM names are global to the lab)")
    internet = top.get("internet")
    if internet is not None and internet not in nodes:
        raise TopologyError(f"internet: expected one of the nodes {list(nodes)}, got {internet!r}")
    return Topology(name, underlay, encap, mtu, nodes, tenants, datapath, internet)


def _tenant(
    data: object, path: str, underlay: Underlay, encap: EncapName, nodes: Sequence[str]
) -> TenantSpec:
    t = _mapping(data, path, {"name"}, {"vpcs"})
    vpcs = tuple(
        _vpc(v, f"{path}.vpcs[{i}]", underlay, encap, nodes)
        for i, v in enumerate(_list(t.get("vpcs", []), f"{path}.vpcs"))
    )
    _unique([v.name for v in vpcs], f"{path}.vpcs", "VPC")
    return TenantSpec(_name(t["name"], f"{path}.name", MAX_NAME), vpcs)


def _vpc(
    data: object, path: str, underlay: Underlay, default_encap: EncapName, nodes: Sequence[str]
) -> VpcSpec:
    v = _mapping(data, path, {"name", "cidr"}, {"mode", "encap", "route_tables", "subnets", "vms"})
    name = _name(v["name"], f"{path}.name", MAX_NAME)
    cidr = _network(v["cidr"], f"{path}.cidr")
    mode = cast(Mode, _choice(v.get("mode", "l3"), f"{path}.mode", get_args(Mode)))
    encap = _encap(v.get("encap", default_encap), f"{path}.encap", underlay)
    tables = tuple(
        _route_table(r, f"{path}.route_tables[{i}]")
        for i, r in enumerate(_list(v.get("route_tables", []), f"{path}.route_tables"))
    )
    _unique([t.name for t in tables], f"{path}.route_tables", "route table")
    table_names = {MAIN} | {t.name for t in tables}
    subnets = tuple(
        _subnet(s, f"{path}.subnets[{i}]", cidr, table_names)
        for i, s in enumerate(_list(v.get("subnets", []), f"{path}.subnets"))
    )
    _unique([s.name for s in subnets], f"{path}.subnets", "subnet")
    for i, s in enumerate(subnets):
        for earlier in subnets[:i]:
            if IPv4Network(s.cidr).overlaps(IPv4Network(earlier.cidr)):
                raise TopologyError(
                    f"{path}.subnets[{i}].cidr: {s.cidr} overlaps subnet {earlier.name}"
                )
    vms = tuple(
        _vm(m, f"{path}.vms[{i}]", cidr, subnets, nodes)
        for i, m in enumerate(_list(v.get("vms", []), f"{path}.vms"))
    )
    _check_vm_addresses(vms, f"{path}.vms")
    vm_names = {m.name for m in vms}
    for i, table in enumerate(tables):
        for j, route in enumerate(table.routes):
            _check_route(route, f"{path}.route_tables[{i}].routes[{j}]", cidr, vm_names)
    return VpcSpec(name, str(cidr), mode, encap, tables, subnets, vms)


def _route_table(data: object, path: str) -> RouteTableSpec:
    r = _mapping(data, path, {"name"}, {"routes"})
    routes = []
    for i, item in enumerate(_list(r.get("routes", []), f"{path}.routes")):
        rp = f"{path}.routes[{i}]"
        route = _mapping(item, rp, {"destination", "target"}, set())
        dest = _network(route["destination"], f"{rp}.destination", any_size=True)
        routes.append(RouteSpec(str(dest), _str(route["target"], f"{rp}.target")))
    _unique([r.destination for r in routes], f"{path}.routes", "route destination")
    return RouteTableSpec(_name(r["name"], f"{path}.name", MAX_NAME), tuple(routes))


def _check_route(route: RouteSpec, path: str, vpc: IPv4Network, vms: set[str]) -> None:
    if route.target == LOCAL:
        if route.destination != str(vpc):
            raise TopologyError(f"{path}.target: only the VPC CIDR {vpc} can route to local")
        return
    if route.destination == str(vpc):
        raise TopologyError(f"{path}.destination: {vpc} is the VPC's local route")
    if route.target.startswith(VM_TARGET):
        if route.target[len(VM_TARGET) :] not in vms:
            raise TopologyError(f"{path}.target: {route.target} names no VM of this VPC")
    elif route.target != BLACKHOLE:
        raise TopologyError(
            f"{path}.target: expected local, blackhole or vm:<name>, got {route.target!r}"
        )


def _subnet(data: object, path: str, vpc: IPv4Network, tables: set[str]) -> SubnetSpec:
    s = _mapping(data, path, {"name", "cidr"}, {"route_table"})
    cidr = _network(s["cidr"], f"{path}.cidr")
    if not cidr.subnet_of(vpc):
        raise TopologyError(f"{path}.cidr: {cidr} is not inside the VPC's {vpc}")
    table = _str(s.get("route_table", MAIN), f"{path}.route_table")
    if table not in tables:
        raise TopologyError(f"{path}.route_table: no route table named {table!r} in this VPC")
    return SubnetSpec(_name(s["name"], f"{path}.name", MAX_NAME), str(cidr), table)


def _vm(
    data: object,
    path: str,
    vpc: IPv4Network,
    subnets: Sequence[SubnetSpec],
    nodes: Sequence[str],
) -> VmSpec:
    m = _mapping(data, path, {"name", "subnet", "node"}, {"ip", "allowed_addresses"})
    name = _name(m["name"], f"{path}.name", MAX_VM_NAME)
    subnet_name = _str(m["subnet"], f"{path}.subnet")
    subnet = next((s for s in subnets if s.name == subnet_name), None)
    if subnet is None:
        raise TopologyError(f"{path}.subnet: no subnet named {subnet_name!r} in this VPC")
    node = _str(m["node"], f"{path}.node")
    if node not in nodes:
        raise TopologyError(f"{path}.node: {node!r} is not one of the lab's nodes")
    ip = None
    if m.get("ip") is not None:
        addr = _address(m["ip"], f"{path}.ip")
        net = IPv4Network(subnet.cidr)
        if addr not in net:
            raise TopologyError(f"{path}.ip: {addr} is not inside subnet {subnet.name} ({net})")
        if addr in reserved(net):
            raise TopologyError(f"{path}.ip: {addr} is reserved in {net} (first four and last)")
        ip = str(addr)
    allowed = []
    for i, text in enumerate(_list(m.get("allowed_addresses", []), f"{path}.allowed_addresses")):
        addr = _address(text, f"{path}.allowed_addresses[{i}]")
        if addr not in vpc:
            raise TopologyError(f"{path}.allowed_addresses[{i}]: {addr} is outside {vpc}")
        allowed.append(str(addr))
    _unique(allowed, f"{path}.allowed_addresses", "address")
    return VmSpec(name, subnet_name, node, ip, tuple(allowed))


def _check_vm_addresses(vms: Sequence[VmSpec], path: str) -> None:
    """Fixed addresses must not collide with each other or with anyone's movable address."""
    vips = {a for vm in vms for a in vm.allowed_addresses}
    seen: set[str] = set()
    for i, vm in enumerate(vms):
        if vm.ip is None:
            continue
        if vm.ip in seen:
            raise TopologyError(f"{path}[{i}].ip: {vm.ip} is given to two VMs")
        if vm.ip in vips:
            raise TopologyError(f"{path}[{i}].ip: {vm.ip} is also an allowed (movable) address")
        seen.add(vm.ip)


# -- small typed readers ----------------------------------------------------------------
def _at(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _mapping(data: object, path: str, required: set[str], optional: set[str]) -> dict[str, Any]:
    where = path or "topology"
    if not isinstance(data, dict):
        raise TopologyError(f"{where}: expected a mapping, got {_kind(data)}")
    for key in data:
        if key not in required and key not in optional:
            known = ", ".join(sorted(required | optional))
            raise TopologyError(f"{_at(path, str(key))}: unknown field (known: {known})")
    for key in sorted(required):
        if key not in data:
            raise TopologyError(f"{_at(path, key)}: missing")
    return data


def _list(data: object, path: str) -> list[Any]:
    if not isinstance(data, list):
        raise TopologyError(f"{path}: expected a list, got {_kind(data)}")
    return data


def _str(data: object, path: str) -> str:
    if not isinstance(data, str):
        raise TopologyError(f"{path}: expected a string, got {_kind(data)}")
    return data


def _name(data: object, path: str, max_len: int) -> str:
    text = _str(data, path)
    if len(text) > max_len or not _NAME.fullmatch(text):
        raise TopologyError(
            f"{path}: {text!r} is not a name: use 1 to {max_len} lower-case letters, "
            "digits or '-', starting and ending alphanumeric"
        )
    return text


def _choice(data: object, path: str, choices: tuple[str, ...]) -> str:
    if data not in choices:
        raise TopologyError(f"{path}: expected one of {', '.join(choices)}, got {data!r}")
    return data


def _encap(data: object, path: str, underlay: Underlay) -> EncapName:
    encap = cast(EncapName, _choice(data, path, get_args(EncapName)))
    if encap == "vlan" and underlay != "l2":
        raise TopologyError(f"{path}: vlan needs the l2 underlay (one broadcast domain)")
    return encap


def _network(data: object, path: str, any_size: bool = False) -> IPv4Network:
    text = _str(data, path)
    try:
        net = IPv4Network(text)
    except ValueError as e:
        raise TopologyError(f"{path}: {text!r} is not an IPv4 CIDR block ({e})") from None
    lo, hi = PREFIX_RANGE
    if not any_size and not lo <= net.prefixlen <= hi:
        raise TopologyError(f"{path}: {net} must be between /{lo} and /{hi}")
    return net


def _address(data: object, path: str) -> IPv4Address:
    text = _str(data, path)
    try:
        return IPv4Address(text)
    except ValueError:
        raise TopologyError(f"{path}: {text!r} is not an IPv4 address") from None


def _unique(names: Sequence[str], path: str, what: str, why: str = "") -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise TopologyError(f"{path}: two {what}s named {name!r}{why}")
        seen.add(name)


def _kind(data: object) -> str:
    return "nothing" if data is None else f"{type(data).__name__} {data!r}"


# -- applying ---------------------------------------------------------------------------
def apply_topology(
    service: Service, topo: Topology, netns_of: Callable[[str], str]
) -> dict[str, Interface]:
    """Create what the file declares and the store lacks, matching existing resources by
    name; returns each VM's interface by VM name. Compute nodes must be registered first
    (the lab knows their fabric addresses)."""
    interfaces: dict[str, Interface] = {}
    # one store transaction for the file: all of it or nothing, node allocations planned once
    with service.batch():
        for i, tenant in enumerate(topo.tenants):
            path = f"tenants[{i}]"
            _call(path, service.create_tenant, tenant.name)
            for j, vpc in enumerate(tenant.vpcs):
                vpath = f"{path}.vpcs[{j}]"
                interfaces.update(_apply_vpc(service, tenant.name, vpc, vpath, netns_of))
    return interfaces


def _apply_vpc(
    service: Service, tenant: str, spec: VpcSpec, path: str, netns_of: Callable[[str], str]
) -> dict[str, Interface]:
    vpc = _by_name(service.describe_vpcs(tenant), spec.name, path)
    if vpc is None:
        vpc = _call(path, service.create_vpc, tenant, spec.name, spec.cidr, spec.mode, spec.encap)
    elif (vpc.cidr, vpc.mode, vpc.encap) != (spec.cidr, spec.mode, spec.encap):
        raise TopologyError(
            f"{path}: VPC {spec.name} exists as {vpc.cidr} {vpc.mode} {vpc.encap}, "
            f"the file says {spec.cidr} {spec.mode} {spec.encap}"
        )
    table_ids = {MAIN: vpc.main_route_table}
    existing_tables = [
        t
        for t in service.describe_route_tables(tenant)
        if t.vpc == vpc.id and t.id != vpc.main_route_table
    ]
    for k, table_spec in enumerate(spec.route_tables):
        if table_spec.name == MAIN:
            continue
        tpath = f"{path}.route_tables[{k}]"
        table = _by_name(existing_tables, table_spec.name, tpath)
        if table is None:
            table = _call(tpath, service.create_route_table, tenant, vpc.id, table_spec.name)
        table_ids[table_spec.name] = table.id

    existing_subnets = [s for s in service.describe_subnets(tenant) if s.vpc == vpc.id]
    subnet_ids: dict[str, str] = {}
    for k, subnet_spec in enumerate(spec.subnets):
        spath = f"{path}.subnets[{k}]"
        subnet = _by_name(existing_subnets, subnet_spec.name, spath)
        if subnet is None:
            subnet = _call(
                spath, service.create_subnet, tenant, vpc.id, subnet_spec.name, subnet_spec.cidr
            )
        elif subnet.cidr != subnet_spec.cidr:
            raise TopologyError(
                f"{spath}.cidr: subnet {subnet.name} exists as {subnet.cidr}, "
                f"the file says {subnet_spec.cidr}"
            )
        subnet_ids[subnet_spec.name] = subnet.id
    associations = {a.subnet: a for a in service.describe_associations(tenant)}
    for k, subnet_spec in enumerate(spec.subnets):
        subnet_id = subnet_ids[subnet_spec.name]
        want = table_ids[subnet_spec.route_table]
        have = associations.get(subnet_id)
        if (have is None and want == vpc.main_route_table) or (
            have is not None and have.route_table == want
        ):
            continue
        spath = f"{path}.subnets[{k}].route_table"
        if have is None:
            _call(spath, service.associate_route_table, tenant, want, subnet_id)
        else:  # a subnet has one explicit association: it is pointed elsewhere
            association = association_id(have)
            _call(spath, service.replace_route_table_association, tenant, association, want)

    interfaces = _apply_vms(service, tenant, spec, path, subnet_ids, netns_of)
    tables = {t.id: t for t in service.describe_route_tables(tenant)}
    for k, table_spec in enumerate(spec.route_tables):
        current = {r.destination: r.target for r in tables[table_ids[table_spec.name]].routes}
        for n, route in enumerate(table_spec.routes):
            rpath = f"{path}.route_tables[{k}].routes[{n}]"
            target = route.target
            if target.startswith(VM_TARGET):
                target = interfaces[target[len(VM_TARGET) :]].id
            have_target = current.get(route.destination)
            table_id = table_ids[table_spec.name]
            if have_target == target:
                continue
            call = service.create_route if have_target is None else service.replace_route
            _call(rpath, call, tenant, table_id, route.destination, target)
    return interfaces


def _apply_vms(
    service: Service,
    tenant: str,
    spec: VpcSpec,
    path: str,
    subnet_ids: Mapping[str, str],
    netns_of: Callable[[str], str],
) -> dict[str, Interface]:
    by_id = {i.id: i for i in service.describe_interfaces(tenant)}
    existing: dict[str, list[Instance]] = {}
    for found in service.describe_instances(tenant):
        existing.setdefault(found.name, []).append(found)
    interfaces: dict[str, Interface] = {}
    for k, vm in enumerate(spec.vms):
        vpath = f"{path}.vms[{k}]"
        instance = _by_name(existing.get(vm.name, []), vm.name, vpath)
        if instance is None:
            try:
                _, interface = service.run_instance(
                    tenant,
                    subnet_ids[vm.subnet],
                    vm.name,
                    vm.node,
                    netns_of(vm.name),
                    vm.ip,
                    vm.allowed_addresses,
                )
            except ServiceError as e:
                raise TopologyError(
                    f"{vpath}{vm_field(vm, e.message)}: {e.code}: {e.message}"
                ) from e
        else:
            interface = by_id[instance.interface]
            if (instance.node, interface.subnet) != (vm.node, subnet_ids[vm.subnet]):
                raise TopologyError(
                    f"{vpath}: VM {vm.name} exists on {instance.node} in another place "
                    "than the file says; terminate it first"
                )
        interfaces[vm.name] = interface
    return interfaces


def vm_field(vm: VmSpec, message: str) -> str:
    """Which field of the VM an error is about (".ip", ...), by the address its message names."""
    named = set(_ADDRESS.findall(message))
    if vm.ip is not None and vm.ip in named:
        return ".ip"
    for i, address in enumerate(vm.allowed_addresses):
        if address in named:
            return f".allowed_addresses[{i}]"
    return ""


def _by_name(items: Sequence[T], name: str, path: str) -> T | None:
    found = [x for x in items if getattr(x, "name", None) == name]
    if len(found) > 1:
        raise TopologyError(f"{path}: {len(found)} resources are named {name!r}; cannot tell")
    return found[0] if found else None


def _call(path: str, fn: Callable[..., T], *args: Any) -> T:
    try:
        return fn(*args)
    except ServiceError as e:
        raise TopologyError(f"{path}: {e.code}: {e.message}") from e
