"""The policy benchmark's openvpc labs: one per datapath ("benchpol<datapath>"), VXLAN, two
nodes, one tenant with two VPCs, each with a client VM on node1 and a server VM on node2 in
two subnets; their policy set with boto3 through the lab's EC2 API, as a tenant would.

- "open": both VMs only in a group allowing everything in and out (0.0.0.0/0, all
  protocols), the least policy an EC2 port can have;
- "groups": both VMs in five heavy groups (bench.policy_rules) and the server's subnet
  behind a network ACL of twenty entries per direction.
"""

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config

from bench.overlay_measure import CONN_PORT, IPERF_PORT, Endpoints
from bench.overlay_paths import FABRIC_MTU, lab_up, vm_endpoints
from bench.policy_rules import GROUPS, Traffic, acl_entries, group_rules
from openvpc.lab import real

TENANT = "bench"
POLICIES = ("open", "groups")
CIDRS = {"open": "10.1.0.0/16", "groups": "10.2.0.0/16"}
VM_PREFIX = {"open": "op", "groups": "gr"}  # "op1" is the client (node1), "op2" the server
UNADMITTED = CONN_PORT + 1  # no rule of the heavy groups admits it, and nothing listens there
# prints how a TCP connection to argv[1]:argv[2] ended: refused (an RST), timeout or open
PROBE = """
import socket, sys
s = socket.socket()
s.settimeout(float(sys.argv[3]))
try:
    s.connect((sys.argv[1], int(sys.argv[2])))
    print("open")
except ConnectionRefusedError:
    print("refused")
except TimeoutError:
    print("timeout")
"""
EVERYTHING = [{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]


def lab_name(datapath: str) -> str:
    return f"benchpol{datapath}"


def traffic(policy: str) -> Traffic:
    """The benchmark's flows in a VPC: client subnet .1, server subnet .2."""
    prefix = CIDRS[policy].rsplit(".", 2)[0]
    return Traffic(CIDRS[policy], f"{prefix}.1.0/24", f"{prefix}.2.0/24", (IPERF_PORT, CONN_PORT))


def topology(datapath: str) -> dict[str, Any]:
    """Two VPCs of one tenant; the client and the server in different subnets, so that the
    server subnet's network ACL sees the flows (traffic inside a subnet does not cross it)."""

    def vpc(policy: str) -> dict[str, Any]:
        t, vm = traffic(policy), VM_PREFIX[policy]
        return {
            "name": policy,
            "cidr": t.vpc_cidr,
            "subnets": [
                {"name": "client", "cidr": t.client_subnet},
                {"name": "server", "cidr": t.server_subnet},
            ],
            "vms": [
                {"name": f"{vm}1", "subnet": "client", "node": "node1"},
                {"name": f"{vm}2", "subnet": "server", "node": "node2"},
            ],
        }

    return {
        "name": lab_name(datapath),
        "underlay": "l2",
        "encap": "vxlan",
        "fabric_mtu": FABRIC_MTU,
        "datapath": datapath,
        "nodes": ["node1", "node2"],
        "tenants": [{"name": TENANT, "vpcs": [vpc(p) for p in POLICIES]}],
    }


def ec2_client(lab: str) -> Any:
    """The tenant's boto3 EC2 client on the lab's API (one attempt: errors show at once)."""
    key, secret = real.tenant_key(lab, TENANT)
    url, region = real.api_endpoint(lab)
    return boto3.client(
        "ec2",
        endpoint_url=url,
        region_name=region,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 1}),
    )


@dataclass(frozen=True, slots=True)
class Instance:
    vpc: str
    subnet: str
    interface: str


def instances(ec2: Any) -> dict[str, Instance]:
    """The tenant's instances by Name tag."""
    found: dict[str, Instance] = {}
    for reservation in ec2.describe_instances()["Reservations"]:
        for inst in reservation["Instances"]:
            name = next((t["Value"] for t in inst.get("Tags", []) if t["Key"] == "Name"), "")
            eni = inst["NetworkInterfaces"][0]["NetworkInterfaceId"]
            found[name] = Instance(inst["VpcId"], inst["SubnetId"], eni)
    return found


def _group(ec2: Any, vpc: str, name: str) -> str:
    made = ec2.create_security_group(VpcId=vpc, GroupName=name, Description=f"bench {name}")
    return str(made["GroupId"])


def set_open(ec2: Any, client: Instance, server: Instance) -> None:
    """Both VMs in one group that allows every protocol from and to everywhere."""
    gid = _group(ec2, client.vpc, "allow-all")
    ec2.authorize_security_group_ingress(GroupId=gid, IpPermissions=EVERYTHING)
    for inst in (client, server):
        ec2.modify_network_interface_attribute(NetworkInterfaceId=inst.interface, Groups=[gid])


def set_groups(ec2: Any, t: Traffic, client: Instance, server: Instance) -> dict[str, int]:
    """Both VMs in GROUPS heavy groups (the first one is the members' group their references
    name) and a network ACL on the server's subnet; how many rules of each were set."""
    gids = [_group(ec2, client.vpc, f"tier{g}") for g in range(GROUPS)]
    counts = {"groups": GROUPS, "ingress_rules": 0, "egress_rules": 0, "acl_entries": 0}
    for g, gid in enumerate(gids):
        ec2.revoke_security_group_egress(GroupId=gid, IpPermissions=EVERYTHING)
        for egress in (False, True):
            rules = group_rules(t, g, egress)
            perms = [r.permission(gids[0]) for r in rules]
            if egress:
                ec2.authorize_security_group_egress(GroupId=gid, IpPermissions=perms)
            else:
                ec2.authorize_security_group_ingress(GroupId=gid, IpPermissions=perms)
            counts["egress_rules" if egress else "ingress_rules"] += len(rules)
    for inst in (client, server):
        ec2.modify_network_interface_attribute(NetworkInterfaceId=inst.interface, Groups=gids)
    acl = ec2.create_network_acl(VpcId=server.vpc)["NetworkAcl"]["NetworkAclId"]
    for egress in (False, True):
        for entry in acl_entries(t):
            ec2.create_network_acl_entry(**entry.parameters(acl, egress))
            counts["acl_entries"] += 1
    (current,) = ec2.describe_network_acls(
        Filters=[{"Name": "association.subnet-id", "Values": [server.subnet]}]
    )["NetworkAcls"]
    (assoc,) = [a for a in current["Associations"] if a["SubnetId"] == server.subnet]
    ec2.replace_network_acl_association(
        AssociationId=assoc["NetworkAclAssociationId"], NetworkAclId=acl
    )
    return counts


@contextmanager
def policy_lab(datapath: str) -> Iterator[tuple[dict[str, Endpoints], dict[str, int]]]:
    """The lab with both VPCs' policy applied on every node: paths "<datapath>-open" and
    "<datapath>-groups", and the counts of the groups' rules; the lab goes on exit."""
    with lab_up(topology(datapath)) as st:
        name = lab_name(datapath)
        ec2 = ec2_client(name)
        found = instances(ec2)
        vms = {vm.name: vm for vm in st.vms}
        open_vm, grp_vm = VM_PREFIX["open"], VM_PREFIX["groups"]
        set_open(ec2, found[f"{open_vm}1"], found[f"{open_vm}2"])
        counts = set_groups(ec2, traffic("groups"), found[f"{grp_vm}1"], found[f"{grp_vm}2"])
        real.wait_in_sync(name)
        paths = {
            f"{datapath}-{p}": vm_endpoints(
                f"{datapath}-{p}", vms[f"{VM_PREFIX[p]}1"], vms[f"{VM_PREFIX[p]}2"]
            )
            for p in POLICIES
        }
        yield paths, counts


def probe(ep: Endpoints, port: int = UNADMITTED, timeout: float = 1.5) -> str:
    """How a new connection to the server's `port` ends: "refused" when the server's kernel
    answered (policy let it through), "timeout" when policy dropped it."""
    argv = ["python3", "-c", PROBE, ep.server_ip, str(port), str(timeout)]
    out = subprocess.run(
        ep.argv("client", argv), capture_output=True, text=True, timeout=timeout + 30, check=False
    )
    return out.stdout.strip() or f"error: {out.stderr.strip()[-200:]}"
