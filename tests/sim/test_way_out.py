"""The way out on the in-memory lab (docs/internet.md): a VPC made with boto3, compiled from
the API's store into two simulated vRouters, node1 the gateway node with the internet behind
it. An instance with an Elastic IP in a subnet routed to the attached internet gateway reaches
the internet as its EIP and is reached there; without the route or the address it is
neither; re-associating moves the address; overlapping tenants keep their own."""

import ipaddress
from dataclasses import dataclass
from typing import Any

from apikit import Api
from ec2kit import ICMP_FROM_ANYWHERE, default_group

from openvpc.compiler.compile import compile_all
from openvpc.lab.endpoint import VmEndpoint
from openvpc.lab.sim import SimLab
from openvpc.model.internet import INTERNET_MAC, INTERNET_VIF
from openvpc.service.catalogue import DEFAULT_IMAGE

GATEWAY_NODE = "node1"


def b(text: str) -> bytes:
    return ipaddress.IPv4Address(text).packed


@dataclass
class Vm:
    instance: str
    interface: str
    ip: str


class World:
    """The API's store compiled into a SimLab whose node addresses are apikit's."""

    def __init__(self, api: Api) -> None:
        self.api = api
        api.service.set_internet_node(GATEWAY_NODE)
        edge = api.service.snapshot().internet
        assert edge is not None
        self.web = edge.ip
        self.lab = SimLab(2, underlay="l3")  # node1 172.16.1.10, node2 172.16.2.11: apikit's
        self.internet = VmEndpoint(
            "internet",
            bytes.fromhex(INTERNET_MAC.replace(":", "")),
            b(edge.ip),
            edge.prefix_len,
            b(edge.gateway),
        )
        self.lab.attach(self.internet, GATEWAY_NODE, INTERNET_VIF)
        self.vms: dict[str, VmEndpoint] = {}

    def sync(self) -> None:
        """Every node's vRouter to the store's latest compiled config; every VM attached."""
        configs = compile_all(self.api.service.snapshot())
        self.lab.program(configs)
        for node, config in configs.items():
            for port in config.ports:
                if port.instance_id not in self.vms and port.vif != INTERNET_VIF:
                    vm = VmEndpoint(
                        port.instance_id,
                        bytes.fromhex(port.mac.replace(":", "")),
                        b(port.ip),
                        port.prefix_len,
                        b(port.gateway),
                    )
                    self.vms[port.instance_id] = vm
                    self.lab.attach(vm, node, port.vif)

    def out(self, vm: Vm, ident: int) -> str | None:
        """The source address the internet sees `vm`'s echo request from (None: nothing
        came), after checking the reply made it back."""
        before = len(self.internet.got("echo_request"))
        self.vms[vm.instance].ping(b(self.web), ident=ident)
        self.lab.run()
        got = self.internet.got("echo_request")[before:]
        if not got:
            return None
        replies = [r for r in self.vms[vm.instance].got("echo_reply") if r.detail[2] >> 16 == ident]
        assert replies and replies[-1].src == b(self.web), "the reply did not come back"
        return str(ipaddress.IPv4Address(got[-1].src))

    def into(self, public: str, ident: int) -> str | None:
        """The instance that answers the internet's echo request to `public`, if any."""
        before = len(self.internet.got("echo_reply", b(public)))
        self.internet.ping(b(public), ident=ident)
        self.lab.run()
        if len(self.internet.got("echo_reply", b(public))) == before:
            return None
        for name, vm in self.vms.items():
            if any(r.detail[2] >> 16 == ident for r in vm.got("echo_request", b(self.web))):
                return name
        return None


def launch(ec2: Any, subnet: str, node: str) -> Vm:
    (inst,) = ec2.run_instances(
        ImageId=DEFAULT_IMAGE,
        MinCount=1,
        MaxCount=1,
        SubnetId=subnet,
        InstanceType="t3.small",
        Placement={"HostId": node},
    )["Instances"]
    (eni,) = inst["NetworkInterfaces"]
    return Vm(inst["InstanceId"], eni["NetworkInterfaceId"], eni["PrivateIpAddress"])


def vpc_out(ec2: Any, routed: bool = True) -> tuple[str, str, str]:
    """(VPC, subnet, internet gateway): a VPC whose subnet's main table routes 0.0.0.0/0 to
    its attached gateway (when `routed`), pings from the internet allowed."""
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc)
    if routed:
        main = ec2.describe_route_tables(
            Filters=[
                {"Name": "vpc-id", "Values": [vpc]},
                {"Name": "association.main", "Values": ["true"]},
            ]
        )["RouteTables"][0]["RouteTableId"]
        ec2.create_route(RouteTableId=main, DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)
    ec2.authorize_security_group_ingress(
        GroupId=default_group(ec2, vpc), IpPermissions=[ICMP_FROM_ANYWHERE]
    )
    return vpc, subnet, igw


def test_an_eip_instance_goes_out_and_is_reached_and_the_address_moves(api: Api) -> None:
    world = World(api)
    ec2 = api.ec2("alice")
    _, subnet, _ = vpc_out(ec2)
    far = launch(ec2, subnet, "node2")  # behind the fabric
    near = launch(ec2, subnet, GATEWAY_NODE)  # on the gateway node itself
    eip = ec2.allocate_address(Domain="vpc")
    ec2.associate_address(AllocationId=eip["AllocationId"], InstanceId=far.instance)
    world.sync()
    assert world.out(far, 1) == eip["PublicIp"]
    assert world.into(eip["PublicIp"], 2) == far.instance
    assert world.out(near, 3) is None  # the route, no address

    ec2.associate_address(
        AllocationId=eip["AllocationId"], InstanceId=near.instance, AllowReassociation=True
    )
    world.sync()
    assert world.out(near, 4) == eip["PublicIp"]
    assert world.into(eip["PublicIp"], 5) == near.instance
    assert world.out(far, 6) is None

    ec2.disassociate_address(
        AssociationId=ec2.describe_addresses()["Addresses"][0]["AssociationId"]
    )
    world.sync()
    assert world.out(near, 7) is None
    assert world.into(eip["PublicIp"], 8) is None


def test_an_address_without_the_route_is_neither(api: Api) -> None:
    world = World(api)
    ec2 = api.ec2("alice")
    _, subnet, _ = vpc_out(ec2, routed=False)
    vm = launch(ec2, subnet, "node2")
    eip = ec2.allocate_address(Domain="vpc")
    ec2.associate_address(AllocationId=eip["AllocationId"], InstanceId=vm.instance)
    world.sync()
    assert world.out(vm, 1) is None
    assert world.into(eip["PublicIp"], 2) is None


def test_the_internet_needs_a_rule_of_the_group(api: Api) -> None:
    world = World(api)
    ec2 = api.ec2("alice")
    vpc, subnet, _ = vpc_out(ec2)
    vm = launch(ec2, subnet, "node2")
    eip = ec2.allocate_address(Domain="vpc")
    ec2.associate_address(AllocationId=eip["AllocationId"], InstanceId=vm.instance)
    ec2.revoke_security_group_ingress(
        GroupId=default_group(ec2, vpc), IpPermissions=[ICMP_FROM_ANYWHERE]
    )
    world.sync()
    assert world.into(eip["PublicIp"], 1) is None
    assert world.out(vm, 2) == eip["PublicIp"]  # its own connections' replies still pass


def test_overlapping_tenants_keep_their_own_addresses(api: Api) -> None:
    world = World(api)
    got = {}
    for tenant in ("alice", "bob"):
        ec2 = api.ec2(tenant)
        _, subnet, _ = vpc_out(ec2)
        vm = launch(ec2, subnet, "node2")
        eip = ec2.allocate_address(Domain="vpc")
        ec2.associate_address(AllocationId=eip["AllocationId"], InstanceId=vm.instance)
        got[tenant] = (vm, eip["PublicIp"])
    assert got["alice"][0].ip == got["bob"][0].ip  # the same private address twice
    world.sync()
    for n, (vm, public) in enumerate(got.values()):
        assert world.out(vm, 10 + n) == public
        assert world.into(public, 20 + n) == vm.instance
