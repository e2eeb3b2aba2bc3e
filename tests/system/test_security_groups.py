"""Security groups and network ACLs on a real lab, driven with boto3, on both datapaths: an
allowed TCP port answers and a denied one does not, replies pass statefully, a group reference
follows membership, a revoked rule keeps an established connection and refuses new ones, a
network ACL decides in rule-number order and in both directions, and `openvpc flows` names the
rule that decided each flow."""

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import LabHandle, datapath_lab

OPEN, DENIED = 7001, 7002  # the server listens on both; groups decide which is reachable
SERVER = """
import socket, sys, threading
def serve(port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen(16)
    while True:
        c, _ = s.accept()
        threading.Thread(target=echo, args=(c,), daemon=True).start()
def echo(c):
    c.settimeout(60)
    with c:
        while data := c.recv(4096):
            c.sendall(data)
for port in map(int, sys.argv[1:]):
    threading.Thread(target=serve, args=(port,), daemon=True).start()
print("listening", flush=True)
sys.stdin.read()
"""
# one line per line of stdin: sent on one connection, the echo printed ("open" first)
CLIENT = """
import socket, sys
try:
    c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3]))
except OSError as e:
    print("closed", type(e).__name__, flush=True)
    sys.exit(0)
print("open", flush=True)
for line in sys.stdin:
    c.sendall(line.encode())
    print(c.recv(4096).decode().strip(), flush=True)
"""
TOPOLOGY: dict[str, Any] = {
    "underlay": "l3",
    "nodes": ["a", "b"],
    "tenants": [
        {
            "name": "red",
            "vpcs": [
                {
                    "name": "shop",
                    "cidr": "10.5.0.0/16",
                    "subnets": [
                        {"name": "web", "cidr": "10.5.1.0/24"},
                        {"name": "cli", "cidr": "10.5.2.0/24"},
                    ],
                    "vms": [
                        {"name": "server", "subnet": "web", "node": "a"},
                        {"name": "client", "subnet": "cli", "node": "b"},
                        {"name": "other", "subnet": "cli", "node": "a"},
                    ],
                }
            ],
        }
    ],
}


class Shop:
    """The lab, its tenant's EC2 client, the server process, and ids by VM name."""

    def __init__(self, h: LabHandle, server: "subprocess.Popen[str]") -> None:
        self.h, self.server = h, server
        self.ec2 = h.ec2("red")
        self.eni: dict[str, str] = {}
        found = self.ec2.describe_instances()["Reservations"]
        for inst in (i for r in found for i in r["Instances"]):
            name = next(t["Value"] for t in inst.get("Tags", []) if t["Key"] == "Name")
            self.eni[name] = inst["NetworkInterfaces"][0]["NetworkInterfaceId"]
            self.vpc, self.subnet_of = inst["VpcId"], {}
        for s in self.ec2.describe_subnets()["Subnets"]:
            name = next(t["Value"] for t in s.get("Tags", []) if t["Key"] == "Name")
            self.subnet_of[name] = s["SubnetId"]

    def group(self, name: str, ingress: list[dict[str, Any]], egress: bool = True) -> str:
        """A new group with these ingress permissions; without egress rules unless `egress`."""
        gid = str(
            self.ec2.create_security_group(VpcId=self.vpc, GroupName=name, Description=name)[
                "GroupId"
            ]
        )
        if ingress:
            self.ec2.authorize_security_group_ingress(GroupId=gid, IpPermissions=ingress)
        if not egress:
            everything = [{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]
            self.ec2.revoke_security_group_egress(GroupId=gid, IpPermissions=everything)
        return gid

    def put(self, vm: str, *groups: str) -> None:
        self.ec2.modify_network_interface_attribute(
            NetworkInterfaceId=self.eni[vm], Groups=list(groups)
        )

    def synced(self) -> None:
        """Until every node applied what the API accepted (state, not time)."""
        self.h.wait_in_sync()

    def reaches(self, client: str, port: int) -> bool:
        """A new TCP connection from `client` to the server's `port`, its echo included."""
        out = self.h.exec(
            client,
            ["python3", "-c", CLIENT, self.h.ip("server"), str(port), "1.5"],
            timeout=20,
        )
        assert out.returncode == 0, out.stderr
        return out.stdout.split() == ["open"]

    def flows(self, node: str) -> list[dict[str, Any]]:
        done = subprocess.run(
            [sys.executable, "-m", "openvpc", "flows", node, "--lab", self.h.name, "--json"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return list(json.loads(done.stdout)["flows"])


def tcp(port: int, **source: Any) -> dict[str, Any]:
    return {"IpProtocol": "tcp", "FromPort": port, "ToPort": port, **source}


@pytest.fixture(scope="module", params=["ebpf", "python"])
def shop(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Shop]:
    with datapath_lab(request, tmp_path_factory, TOPOLOGY, "sg") as h:
        cmd = ["ip", "netns", "exec", h.vm_netns("server"), "python3", "-c", SERVER]
        server = subprocess.Popen(
            [*cmd, str(OPEN), str(DENIED)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        try:
            assert server.stdout is not None and server.stdout.readline().strip() == "listening"
            yield Shop(h, server)
        finally:
            server.kill()
            server.wait(10)


def test_a_group_allows_its_port_replies_pass_and_flows_name_the_rule(shop: Shop) -> None:
    clients = shop.group("clients", [])
    servers = shop.group(
        "servers", [tcp(OPEN, UserIdGroupPairs=[{"GroupId": clients}])], egress=False
    )
    shop.put("server", servers)
    shop.put("client", clients)
    shop.synced()
    assert shop.reaches("client", OPEN)  # its replies pass without any egress rule
    assert not shop.reaches("client", DENIED)
    client_ip = shop.h.ip("client")
    by_port = {
        f["dport"]: f for f in shop.flows("a") if f["src"] == client_ip and f["proto"] == "tcp"
    }
    assert by_port[OPEN]["action"] == "forward"
    assert by_port[OPEN]["by"].startswith(f"{servers}/sgr-")
    assert by_port[OPEN]["packets"] > 0
    assert (by_port[DENIED]["action"], by_port[DENIED]["by"]) == (
        "drop",
        "ingress: no security group rule",
    )


def test_a_group_reference_follows_membership_changes(shop: Shop) -> None:
    clients = shop.group("members", [])
    servers = shop.group("served", [tcp(OPEN, UserIdGroupPairs=[{"GroupId": clients}])])
    shop.put("server", servers)
    shop.put("other", shop.group("outsiders", []))
    shop.synced()
    assert not shop.reaches("other", OPEN)
    shop.put("other", clients)
    shop.synced()
    assert shop.reaches("other", OPEN)  # refused a moment ago, admitted now
    shop.put("other", shop.group("outsiders-again", []))
    shop.synced()
    assert not shop.reaches("other", OPEN)


def test_a_revoked_rule_keeps_an_established_connection_and_refuses_new_ones(shop: Shop) -> None:
    allowed = tcp(OPEN, IpRanges=[{"CidrIp": "10.5.2.0/24"}])
    servers = shop.group("revocable", [allowed])
    shop.put("server", servers)
    shop.put("client", shop.group("anyone", []))
    shop.synced()
    argv = [
        "ip", "netns", "exec", shop.h.vm_netns("client"),
        "python3", "-c", CLIENT, shop.h.ip("server"), str(OPEN), "5",
    ]  # fmt: skip
    kept = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert kept.stdin is not None and kept.stdout is not None
        assert kept.stdout.readline().strip() == "open"
        kept.stdin.write("before\n")
        kept.stdin.flush()
        assert kept.stdout.readline().strip() == "before"
        shop.ec2.revoke_security_group_ingress(GroupId=servers, IpPermissions=[allowed])
        shop.synced()
        kept.stdin.write("after\n")
        kept.stdin.flush()
        assert kept.stdout.readline().strip() == "after"  # tracked: goes on
        assert not shop.reaches("client", OPEN)  # new: refused
    finally:
        kept.kill()
        kept.wait(10)


def test_network_acl_entries_decide_in_order_and_in_both_directions(shop: Shop) -> None:
    everyone = shop.group("everyone", [tcp(OPEN, IpRanges=[{"CidrIp": "10.5.0.0/16"}])])
    shop.put("server", everyone)
    shop.put("client", everyone)
    shop.put("other", everyone)
    acl = shop.ec2.create_network_acl(VpcId=shop.vpc)["NetworkAcl"]["NetworkAclId"]
    client_ip = shop.h.ip("client")

    def entry(number: int, egress: bool, allow: bool, cidr: str, ports: tuple[int, int]) -> None:
        shop.ec2.create_network_acl_entry(
            NetworkAclId=acl,
            RuleNumber=number,
            Protocol="6",
            RuleAction="allow" if allow else "deny",
            Egress=egress,
            CidrBlock=cidr,
            PortRange={"From": ports[0], "To": ports[1]},
        )

    entry(100, False, False, f"{client_ip}/32", (OPEN, OPEN))  # before the allow: wins
    entry(200, False, True, "0.0.0.0/0", (0, 65535))
    entry(100, True, True, "0.0.0.0/0", (0, 65535))
    (assoc,) = [
        a["NetworkAclAssociationId"]
        for n in shop.ec2.describe_network_acls()["NetworkAcls"]
        for a in n["Associations"]
        if a["SubnetId"] == shop.subnet_of["web"]
    ]
    shop.ec2.replace_network_acl_association(AssociationId=assoc, NetworkAclId=acl)
    shop.synced()
    assert not shop.reaches("client", OPEN)
    assert shop.reaches("other", OPEN)
    denied = [f for f in shop.flows("a") if f["src"] == client_ip and f["action"] == "drop"]
    assert {f["by"] for f in denied if f["dport"] == OPEN} == {f"{acl}/inbound/100"}

    # inbound allowed, but replies to ephemeral ports may not leave the subnet
    shop.ec2.delete_network_acl_entry(NetworkAclId=acl, RuleNumber=100, Egress=False)
    shop.ec2.replace_network_acl_entry(
        NetworkAclId=acl,
        RuleNumber=100,
        Protocol="6",
        RuleAction="deny",
        Egress=True,
        CidrBlock="0.0.0.0/0",
        PortRange={"From": 1024, "To": 65535},
    )
    entry(200, True, True, "0.0.0.0/0", (0, 65535))
    shop.synced()
    assert not shop.reaches("client", OPEN)
    assert not shop.reaches("other", OPEN)
