"""The NAT gateway on the in-memory lab (docs/internet.md): a private subnet routed to a NAT
gateway in a public subnet reaches the internet as the gateway's Elastic IP, one port per
connection, and replies come back; the internet cannot open anything toward it; without the
route, or with a NAT gateway whose subnet has no way out, nothing leaves; a destination whose
ports are all taken refuses new connections and counts ErrorPortAllocation."""

import ipaddress
from typing import Any

from apikit import Api
from test_way_out import GATEWAY_NODE, Vm, World, b, launch, vpc_out

from openvpc.vrouter.drops import Drop
from openvpc.vrouter.natgw import NatGateways

WEB_PORT = 80


def text(addr: bytes) -> str:
    return str(ipaddress.IPv4Address(addr))


def private_subnet(ec2: Any, vpc: str, nat: str | None) -> tuple[str, str]:
    """(subnet, route table): 10.0.2.0/24 with a table of its own routing 0.0.0.0/0 to the
    NAT gateway `nat` (no such route when None)."""
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.2.0/24")["Subnet"]["SubnetId"]
    table = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
    ec2.associate_route_table(RouteTableId=table, SubnetId=subnet)
    if nat is not None:
        ec2.create_route(RouteTableId=table, DestinationCidrBlock="0.0.0.0/0", NatGatewayId=nat)
    return subnet, table


def nat_gateway(ec2: Any, public_subnet: str) -> tuple[str, str]:
    """(NAT gateway id, its Elastic IP) in the public subnet."""
    eip = ec2.allocate_address(Domain="vpc")
    nat = ec2.create_nat_gateway(SubnetId=public_subnet, AllocationId=eip["AllocationId"])
    return nat["NatGateway"]["NatGatewayId"], eip["PublicIp"]


def syn(world: World, vm: Vm, sport: int) -> tuple[str, int] | None:
    """The (address, port) the internet sees `vm`'s SYN to its web server from, after the
    SYN-ACK made it back (None: nothing came)."""
    before = len(world.internet.got("tcp_syn"))
    answered = len(world.vms[vm.instance].got("tcp_synack"))
    world.vms[vm.instance].tcp_syn(b(world.web), sport, WEB_PORT)
    world.lab.run()
    got = world.internet.got("tcp_syn")[before:]
    if not got:
        return None
    synacks = world.vms[vm.instance].got("tcp_synack")[answered:]
    assert synacks and synacks[-1].detail[:2] == (WEB_PORT, sport), "no SYN-ACK came back"
    return text(got[-1].src), got[-1].detail[0]


def setup(api: Api, routed: bool = True) -> tuple[World, Any, str, str, str]:
    """(world, ec2, public subnet, NAT gateway, its Elastic IP) with the private subnet."""
    world = World(api)
    world.internet.listening.add(WEB_PORT)
    ec2 = api.ec2("alice")
    vpc, public, _ = vpc_out(ec2)
    nat, address = nat_gateway(ec2, public)
    private_subnet(ec2, vpc, nat if routed else None)
    return world, ec2, public, nat, address


def private_vm(ec2: Any, node: str) -> Vm:
    subnet = ec2.describe_subnets(Filters=[{"Name": "cidr-block", "Values": ["10.0.2.0/24"]}])
    return launch(ec2, subnet["Subnets"][0]["SubnetId"], node)


def test_a_private_instance_goes_out_as_the_nat_gateways_address(api: Api) -> None:
    world, ec2, _, _, address = setup(api)
    far = private_vm(ec2, "node2")
    near = private_vm(ec2, GATEWAY_NODE)
    world.sync()
    assert world.out(far, 1) == address
    assert world.out(near, 2) == address
    seen = {syn(world, far, 40000), syn(world, far, 40001), syn(world, near, 40000)}
    assert None not in seen and len(seen) == 3  # one public port per connection
    for got in seen:
        assert got is not None and got[0] == address and 1024 <= got[1] <= 65535


def test_the_internet_opens_nothing_through_it(api: Api) -> None:
    world, ec2, _, _, address = setup(api)
    vm = private_vm(ec2, "node2")
    world.sync()
    assert world.into(address, 1) is None  # no flow of its: nowhere to go
    assert world.into(vm.ip, 2) is None
    drops = world.lab.nodes[GATEWAY_NODE].tables.drops
    assert drops[Drop.NAT_NO_TRANSLATION] >= 1


def test_without_the_route_there_is_no_way_out(api: Api) -> None:
    world, ec2, _, _, _ = setup(api, routed=False)
    vm = private_vm(ec2, "node2")
    world.sync()
    assert world.out(vm, 1) is None
    assert syn(world, vm, 40000) is None


def test_a_nat_gateway_in_a_subnet_without_a_way_out_translates_nothing(api: Api) -> None:
    world = World(api)
    ec2 = api.ec2("alice")
    vpc, public, _ = vpc_out(ec2, routed=False)  # the NAT gateway's subnet: no route out
    nat, _ = nat_gateway(ec2, public)
    private_subnet(ec2, vpc, nat)
    vm = private_vm(ec2, "node2")
    world.sync()
    assert world.out(vm, 1) is None


def test_a_destinations_ports_run_out_and_are_counted(api: Api) -> None:
    world, ec2, _, nat, address = setup(api)
    vm = private_vm(ec2, "node2")
    world.sync()
    gateway = world.lab.nodes[GATEWAY_NODE].tables
    gateway.nat_gateways = NatGateways(ports=(1024, 1025))  # two ports, so they run out
    assert syn(world, vm, 40000) == (address, 1024)
    assert syn(world, vm, 40001) == (address, 1025)
    assert syn(world, vm, 40002) is None  # a third connection to the same destination
    assert world.out(vm, 3) == address  # another destination (ICMP) has its own ports
    assert gateway.drops[Drop.NAT_PORT_ALLOCATION] == 1
    assert gateway.nat_gateways.stats()[nat]["error_port_allocation"] == 1
    gateway.expire(world.lab.now + 400)  # idle past AWS's 350 s: the ports are free again
    assert syn(world, vm, 40003) is not None


def hosted(api: Api, node: str) -> set[str]:
    """The route tables whose routing instances `node` hosts."""
    allocation = next(a for a in api.service.snapshot().allocations if a.node == node)
    return {table for table, _ in allocation.vrfs}


def test_the_gateway_node_hosts_the_tables_routed_to_a_nat_gateway(api: Api) -> None:
    api.service.set_internet_node(GATEWAY_NODE)
    ec2 = api.ec2("alice")
    vpc, public, _ = vpc_out(ec2)
    nat, _ = nat_gateway(ec2, public)
    _, table = private_subnet(ec2, vpc, None)
    launch(ec2, ec2.describe_subnets(SubnetIds=[public])["Subnets"][0]["SubnetId"], "node2")
    assert table not in hosted(api, GATEWAY_NODE)
    ec2.create_route(RouteTableId=table, DestinationCidrBlock="0.0.0.0/0", NatGatewayId=nat)
    assert table in hosted(api, GATEWAY_NODE)
    assert table not in hosted(api, "node2")  # no VM of it there
    api.service.set_internet_node("node2")  # the gateway node moves: the instance with it
    assert table in hosted(api, "node2") and table not in hosted(api, GATEWAY_NODE)
    ec2.delete_route(RouteTableId=table, DestinationCidrBlock="0.0.0.0/0")
    assert table not in hosted(api, "node2")
    ec2.create_route(RouteTableId=table, DestinationCidrBlock="0.0.0.0/0", NatGatewayId=nat)
    ec2.delete_nat_gateway(NatGatewayId=nat)
    assert table not in hosted(api, "node2")


def test_a_private_instance_reaches_an_elastic_ip_of_the_lab_through_it(api: Api) -> None:
    world, ec2, public, _, address = setup(api)
    vm = private_vm(ec2, "node2")
    server = launch(ec2, public, "node2")  # the NAT gateway's traffic comes back to node2
    eip = ec2.allocate_address(Domain="vpc")
    ec2.associate_address(AllocationId=eip["AllocationId"], InstanceId=server.instance)
    world.sync()
    world.vms[vm.instance].ping(b(eip["PublicIp"]), ident=9)
    world.lab.run()
    asked = world.vms[server.instance].got("echo_request")
    assert [text(r.src) for r in asked] == [address]  # it sees the NAT gateway's address
    answered = world.vms[vm.instance].got("echo_reply", b(eip["PublicIp"]))
    assert [r.detail[2] >> 16 for r in answered] == [9]
