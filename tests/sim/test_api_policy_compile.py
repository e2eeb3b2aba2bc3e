"""Security groups and network ACLs made with boto3 reach the nodes' compiled ports: group
references follow membership changes, a revoke takes a rule out, an ACL association replaced
brings its entries in order."""

import ipaddress
from typing import Any

from apikit import Api

from openvpc.compiler.compile import compile_all
from openvpc.model.nodeconfig import PortConfig
from openvpc.model.rules import acl_verdict, selector
from openvpc.service.catalogue import DEFAULT_IMAGE

Client = Any  # a boto3 EC2 client
TCP = 6


def b(text: str) -> bytes:
    return ipaddress.IPv4Address(text).packed


def port(api: Api, eni: str) -> PortConfig:
    (found,) = [
        p
        for c in compile_all(api.service.snapshot()).values()
        for p in c.ports
        if p.interface_id == eni
    ]
    return found


def admits(api: Api, eni: str, source: str, dport: int) -> str | None:
    rules = port(api, eni).security_groups
    assert rules is not None
    return rules.ingress_verdict(TCP, b(source), selector(TCP, dport, -1, -1, False))


def launch(ec2: Client, subnet: str, groups: list[str]) -> tuple[str, str]:
    """(interface id, address) of a new instance in `groups`."""
    (inst,) = ec2.run_instances(
        ImageId=DEFAULT_IMAGE,
        MinCount=1,
        MaxCount=1,
        SubnetId=subnet,
        InstanceType="t3.small",
        SecurityGroupIds=groups,
    )["Instances"]
    (eni,) = inst["NetworkInterfaces"]
    return eni["NetworkInterfaceId"], eni["PrivateIpAddress"]


def network(ec2: Client) -> tuple[str, str]:
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    return vpc, subnet


def test_a_group_reference_follows_membership_through_the_api(api: Api) -> None:
    ec2 = api.ec2("alice")
    vpc, subnet = network(ec2)
    web = ec2.create_security_group(VpcId=vpc, GroupName="web", Description="web")["GroupId"]
    app = ec2.create_security_group(VpcId=vpc, GroupName="app", Description="app")["GroupId"]
    ec2.authorize_security_group_ingress(
        GroupId=web,
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 8080,
                "ToPort": 8080,
                "UserIdGroupPairs": [{"GroupId": app}],
            }
        ],
    )
    server, _ = launch(ec2, subnet, [web])
    client, client_ip = launch(ec2, subnet, [app])
    other, other_ip = launch(ec2, subnet, [web])
    assert admits(api, server, client_ip, 8080) is not None
    assert admits(api, server, client_ip, 8081) is None
    assert admits(api, server, other_ip, 8080) is None

    ec2.modify_network_interface_attribute(NetworkInterfaceId=other, Groups=[web, app])
    assert admits(api, server, other_ip, 8080) is not None
    ec2.modify_network_interface_attribute(NetworkInterfaceId=client, Groups=[web])
    assert admits(api, server, client_ip, 8080) is None

    ec2.revoke_security_group_ingress(
        GroupId=web,
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 8080,
                "ToPort": 8080,
                "UserIdGroupPairs": [{"GroupId": app}],
            }
        ],
    )
    assert admits(api, server, other_ip, 8080) is None


def test_a_replaced_acl_association_through_the_api(api: Api) -> None:
    ec2 = api.ec2("alice")
    vpc, subnet = network(ec2)
    eni, _ = launch(ec2, subnet, [])
    acl = ec2.create_network_acl(VpcId=vpc)["NetworkAcl"]["NetworkAclId"]
    for number, action, ports in ((200, "allow", (0, 65535)), (100, "deny", (22, 22))):
        ec2.create_network_acl_entry(
            NetworkAclId=acl,
            RuleNumber=number,
            Protocol="6",
            RuleAction=action,
            Egress=False,
            CidrBlock="0.0.0.0/0",
            PortRange={"From": ports[0], "To": ports[1]},
        )
    (assoc,) = ec2.describe_network_acls(
        Filters=[{"Name": "association.subnet-id", "Values": [subnet]}]
    )["NetworkAcls"][0]["Associations"]
    ec2.replace_network_acl_association(
        AssociationId=assoc["NetworkAclAssociationId"], NetworkAclId=acl
    )
    compiled = port(api, eni).network_acl
    assert compiled is not None and compiled.id == acl and compiled.subnet == "10.0.1.0/24"
    ssh, web = (selector(TCP, p, -1, -1, False) for p in (22, 443))
    assert acl_verdict(compiled.ingress, TCP, b("198.51.100.9"), ssh) == (False, 100)
    assert acl_verdict(compiled.ingress, TCP, b("198.51.100.9"), web) == (True, 200)
    assert acl_verdict(compiled.egress, TCP, b("198.51.100.9"), web) == (False, 32767)
