"""The NAT gateway on a real lab, driven through boto3 (docs/internet.md): instances of a
private subnet (no Elastic IP) routed to a NAT gateway fetch the internet's web page, whose
log names the NAT gateway's Elastic IP; the internet cannot open a connection through it;
without the route there is no way out. On both datapaths."""

import pytest
from conftest import LabFactory, LabHandle
from test_internet import connect_in, fetch, launch, reached, settle, topology, web_log

from openvpc.lab.real import ebpf_refusal

WAIT = {"Delay": 1, "MaxAttempts": 90}


def scenario(h: LabHandle) -> None:
    ec2 = h.ec2("red")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    public = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    private = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.2.0/24")["Subnet"]["SubnetId"]
    igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc)
    out = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
    ec2.create_route(RouteTableId=out, DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)
    ec2.associate_route_table(RouteTableId=out, SubnetId=public)
    inside = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
    ec2.associate_route_table(RouteTableId=inside, SubnetId=private)
    eip = ec2.allocate_address(Domain="vpc")
    nat = ec2.create_nat_gateway(SubnetId=public, AllocationId=eip["AllocationId"])
    nat_id = nat["NatGateway"]["NatGatewayId"]
    ec2.get_waiter("nat_gateway_available").wait(NatGatewayIds=[nat_id], WaiterConfig=WAIT)
    # the default group lets anything in, so that only the NAT gateway stands in the way
    group = ec2.describe_security_groups(
        Filters=[{"Name": "vpc-id", "Values": [vpc]}, {"Name": "group-name", "Values": ["default"]}]
    )["SecurityGroups"][0]["GroupId"]
    ec2.authorize_security_group_ingress(
        GroupId=group,
        IpPermissions=[{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}],
    )
    # one private instance behind the fabric, one on the gateway node itself
    far = launch(ec2, private, "b")
    near = launch(ec2, private, "gw")
    ec2.get_waiter("instance_running").wait(InstanceIds=[far, near], WaiterConfig=WAIT)
    settle(h)

    # no route to the NAT gateway yet: no way out
    assert not fetch(h, far, attempts=2)
    assert eip["PublicIp"] not in web_log(h)

    ec2.create_route(RouteTableId=inside, DestinationCidrBlock="0.0.0.0/0", NatGatewayId=nat_id)
    settle(h)
    assert fetch(h, far, attempts=10), "the private instance does not reach the internet"
    assert f"{eip['PublicIp']} " in web_log(h)
    before = web_log(h).count(f"{eip['PublicIp']} ")
    assert fetch(h, near, attempts=3), "the instance on the gateway node does not get out"
    assert web_log(h).count(f"{eip['PublicIp']} ") == before + 1

    # the internet opens nothing: not a TCP connection, not a ping, to the gateway's address
    assert connect_in(h, far, eip["PublicIp"]) == ""
    assert not reached(h, eip["PublicIp"])
    private_ip = ec2.describe_instances(InstanceIds=[far])["Reservations"][0]["Instances"][0][
        "PrivateIpAddress"
    ]
    assert not reached(h, private_ip)

    # the route gone, the way out is gone
    ec2.delete_route(RouteTableId=inside, DestinationCidrBlock="0.0.0.0/0")
    settle(h)
    before = web_log(h).count(f"{eip['PublicIp']} ")
    assert not fetch(h, far)
    assert web_log(h).count(f"{eip['PublicIp']} ") == before


def test_nat_gateway_python(lab: LabFactory) -> None:
    scenario(lab(topology("python")))


def test_nat_gateway_ebpf(lab: LabFactory) -> None:
    why = ebpf_refusal()
    if why is not None:
        pytest.skip(f"no eBPF datapath here: {why}")
    scenario(lab(topology("ebpf")))
