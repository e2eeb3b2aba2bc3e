"""Amazon's source/destination check on a real lab, driven with boto3, on both datapaths: frames
a VM sends with another address or MAC are dropped and counted; an appliance that routes
between two subnets (their route tables point at its interface) forwards only once its check
is off."""

import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import LabHandle, datapath_lab, vrouter_stats

PORT = 9000
# the receiver prints each datagram's payload until "last" arrives (or 10 s pass)
RECEIVER = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.settimeout(10)
print("ready", flush=True)
try:
    while True:
        data = s.recv(100).decode()
        print(data, flush=True)
        if data == "last":
            break
except socket.timeout:
    print("timeout", flush=True)
"""
# raw UDP frames to the gateway MAC: argv destination, port, then "payload:src-ip:src-mac"
# triples ("-" keeps the VM's own); stdlib only, UDP checksum 0 (none)
SENDER = r"""
import fcntl, socket, struct, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("eth0", 0))
own_mac = open("/sys/class/net/eth0/address").read().strip()
own_ip = socket.inet_ntoa(fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", b"eth0"))[20:24])
def csum(b):
    t = sum(struct.unpack(f"!{len(b) // 2}H", b))
    while t >> 16:
        t = (t & 0xFFFF) + (t >> 16)
    return ~t & 0xFFFF
dst, port = socket.inet_aton(sys.argv[1]), int(sys.argv[2])
for spec in sys.argv[3:]:
    payload, ip, mac = spec.split(":", 2)
    src = socket.inet_aton(own_ip if ip == "-" else ip)
    mac = bytes.fromhex((own_mac if mac == "-" else mac).replace(":", ""))
    udp = struct.pack("!HHHH", 40000, port, 8 + len(payload), 0) + payload.encode()
    head = (0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0, src, dst)
    ip_hdr = bytearray(struct.pack("!BBHHHBBH4s4s", *head))
    struct.pack_into("!H", ip_hdr, 10, csum(bytes(ip_hdr)))
    s.send(b"\x00\x00\x5e\x00\x01\x00" + mac + b"\x08\x00" + bytes(ip_hdr) + udp)
"""
TOPOLOGY: dict[str, Any] = {
    "underlay": "l3",
    "nodes": ["a", "b"],
    "tenants": [
        {
            "name": "red",
            "vpcs": [
                {
                    "name": "dmz",
                    "cidr": "10.6.0.0/16",
                    "subnets": [
                        {"name": "left", "cidr": "10.6.1.0/24"},
                        {"name": "right", "cidr": "10.6.2.0/24"},
                        {"name": "middle", "cidr": "10.6.3.0/24"},
                    ],
                    "vms": [
                        {"name": "left", "subnet": "left", "node": "a"},
                        {"name": "right", "subnet": "right", "node": "b"},
                        {"name": "box", "subnet": "middle", "node": "a"},
                    ],
                }
            ],
        }
    ],
}


@pytest.fixture(scope="module", params=["ebpf", "python"])
def dmz(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LabHandle]:
    with datapath_lab(request, tmp_path_factory, TOPOLOGY, "sdc") as h:
        yield h


def drops(h: LabHandle, node: str) -> dict[str, int]:
    return dict(vrouter_stats(h, node)["drops"])


def test_spoofed_source_address_or_mac_is_dropped_and_counted(dmz: LabHandle) -> None:
    h = dmz
    cmd = ["ip", "netns", "exec", h.vm_netns("right"), "python3", "-c", RECEIVER, str(PORT)]
    receiver = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        assert receiver.stdout is not None and receiver.stdout.readline().strip() == "ready"
        before = drops(h, "a")
        frames = ["own:-:-", "ip:10.6.1.99:-", "mac:-:02:aa:bb:cc:dd:ee", "last:-:-"]
        sent = h.exec("left", ["python3", "-c", SENDER, h.ip("right"), str(PORT), *frames])
        assert sent.returncode == 0, sent.stderr
        out, _ = receiver.communicate(timeout=20)
    finally:
        if receiver.poll() is None:
            receiver.kill()
            receiver.wait(10)
    assert out.split() == ["own", "last"]  # the spoofed two never arrived
    after = drops(h, "a")
    for reason in ("src_ip_mismatch", "src_mac_mismatch"):
        assert after.get(reason, 0) == before.get(reason, 0) + 1, reason


def test_an_appliance_forwards_between_subnets_once_its_check_is_off(dmz: LabHandle) -> None:
    h = dmz
    ec2 = h.ec2("red")
    found = ec2.describe_instances()["Reservations"]
    eni = {
        next(t["Value"] for t in i["Tags"] if t["Key"] == "Name"): i["NetworkInterfaces"][0][
            "NetworkInterfaceId"
        ]
        for r in found
        for i in r["Instances"]
    }
    subnets = {
        next(t["Value"] for t in s["Tags"] if t["Key"] == "Name"): (s["SubnetId"], s["VpcId"])
        for s in ec2.describe_subnets()["Subnets"]
    }
    for side, other in (("left", "right"), ("right", "left")):
        subnet, vpc = subnets[side]
        table = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
        ec2.create_route(
            RouteTableId=table,
            DestinationCidrBlock=h.ip(other).rsplit(".", 1)[0] + ".0/24",
            NetworkInterfaceId=eni["box"],
        )
        ec2.associate_route_table(RouteTableId=table, SubnetId=subnet)
    forwarding = ["sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv4.conf.all.send_redirects=0"]
    assert h.exec("box", forwarding).returncode == 0
    h.wait_in_sync()
    before = drops(h, "a")
    assert not h.ping("left", h.ip("right"), wait=1.0)
    after = drops(h, "a")  # delivered to the box, not addressed to it: its check refuses
    assert after.get("dst_ip_mismatch", 0) > before.get("dst_ip_mismatch", 0)

    ec2.modify_network_interface_attribute(
        NetworkInterfaceId=eni["box"], SourceDestCheck={"Value": False}
    )
    h.wait_in_sync()
    forwarded = box_forwarded(h)
    out = h.exec("left", ["ping", "-n", "-c", "2", "-W", "2", h.ip("right")], timeout=20)
    assert out.returncode == 0, out.stdout
    assert box_forwarded(h) >= forwarded + 2  # the requests went through the box's kernel


def box_forwarded(h: LabHandle) -> int:
    """How many datagrams the box's kernel forwarded (Ip ForwDatagrams of /proc/net/snmp)."""
    ip_lines = [
        line.split() for line in h.exec("box", ["cat", "/proc/net/snmp"]).stdout.splitlines()
    ]
    names, values = [line for line in ip_lines if line[0] == "Ip:"][:2]
    return int(values[names.index("ForwDatagrams")])
