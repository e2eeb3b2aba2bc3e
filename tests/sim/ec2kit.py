"""boto3 steps the API-driven tests of every tier share (tests/sim is on pytest's path)."""

from typing import Any

# ICMP of every type from anywhere: what a ping from outside a VPC's groups needs
ICMP_FROM_ANYWHERE: dict[str, Any] = {
    "IpProtocol": "icmp",
    "FromPort": -1,
    "ToPort": -1,
    "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
}


def default_group(ec2: Any, vpc: str) -> str:
    """The id of the VPC's security group named `default`."""
    filters = [{"Name": "vpc-id", "Values": [vpc]}, {"Name": "group-name", "Values": ["default"]}]
    (group,) = ec2.describe_security_groups(Filters=filters)["SecurityGroups"]
    return str(group["GroupId"])
