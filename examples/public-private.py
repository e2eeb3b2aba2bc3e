#!/usr/bin/env python3
"""A VPC with a public and a private subnet, an internet gateway, a route table for the public
subnet and an instance in each subnet, built with boto3 against an openvpc endpoint; then each
instance pings the other (through `openvpc exec`).

    eval "$(openvpc tenant env NAME --lab LAB)"   # AWS_ACCESS_KEY_ID, ..., AWS_ENDPOINT_URL
    python3 examples/public-private.py [LAB]
"""

import subprocess
import sys

import boto3


def tags(kind: str, name: str) -> list[dict[str, object]]:
    return [{"ResourceType": kind, "Tags": [{"Key": "Name", "Value": name}]}]


def main() -> None:
    lab = ["--lab", sys.argv[1]] if len(sys.argv) > 1 else []
    ec2 = boto3.client("ec2")  # endpoint, region and keys from the environment
    vpc = ec2.create_vpc(CidrBlock="10.30.0.0/16", TagSpecifications=tags("vpc", "demo"))
    vpc_id = vpc["Vpc"]["VpcId"]
    public = ec2.create_subnet(
        VpcId=vpc_id, CidrBlock="10.30.1.0/24", TagSpecifications=tags("subnet", "public")
    )["Subnet"]["SubnetId"]
    private = ec2.create_subnet(
        VpcId=vpc_id, CidrBlock="10.30.2.0/24", TagSpecifications=tags("subnet", "private")
    )["Subnet"]["SubnetId"]
    igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc_id)
    rtb = ec2.create_route_table(VpcId=vpc_id, TagSpecifications=tags("route-table", "public"))
    rtb_id = rtb["RouteTable"]["RouteTableId"]
    ec2.create_route(RouteTableId=rtb_id, DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)
    ec2.associate_route_table(RouteTableId=rtb_id, SubnetId=public)

    instances = {}
    for name, subnet in (("web", public), ("db", private)):
        made = ec2.run_instances(
            ImageId="ami-0abcdef1234567890",
            InstanceType="t3.micro",
            MinCount=1,
            MaxCount=1,
            SubnetId=subnet,
            TagSpecifications=tags("instance", name),
        )["Instances"][0]
        instances[name] = made["InstanceId"]
    ec2.get_waiter("instance_running").wait(InstanceIds=list(instances.values()))
    found = ec2.describe_instances(InstanceIds=list(instances.values()))
    ips = {
        i["InstanceId"]: i["PrivateIpAddress"]
        for r in found["Reservations"]
        for i in r["Instances"]
    }
    for name, other in (("web", "db"), ("db", "web")):
        me, peer = instances[name], ips[instances[other]]
        print(f"{name} ({me}, {ips[me]}) pings {other} ({peer}):", flush=True)
        subprocess.run(
            ["openvpc", "exec", *lab, me, "--", "ping", "-c", "2", "-W", "2", peer], check=True
        )
    print(f"web and db reach each other in {vpc_id}")


if __name__ == "__main__":
    main()
