"""Security groups and network ACLs on the first packet, in the vRouters of a simulated lab:
allowed flows and their replies pass statefully, denied ones are dropped and remembered with
what denied them, ACL entries decide in number order and in both directions, and changed
rules apply to new flows while tracked ones go on."""

from openvpc.lab.endpoint import VmEndpoint
from openvpc.lab.sim import SimLab, Vpc
from openvpc.model.forwarding import FlowKey
from openvpc.model.rules import (
    ANY,
    DEFAULT_DENY,
    PROTO_TCP,
    AclEntry,
    NetworkAclConfig,
    PortSecurity,
    SgRule,
)
from openvpc.vrouter.drops import Drop
from openvpc.vrouter.flow import FlowAction

SSH = SgRule(PROTO_TCP, 22, 22, "10.1.0.0/16", "sg-web/sgr-ssh")
EVERYWHERE = SgRule(ANY, -1, -1, "0.0.0.0/0", "sg-any/sgr-out")
# the web server's groups: SSH in from the VPC, nothing out (replies pass statefully)
WEB = PortSecurity(ingress=(SSH,), egress=())
CLIENT = PortSecurity(ingress=(), egress=(EVERYWHERE,))
ALLOW_ALL = AclEntry(200, ANY, -1, -1, "0.0.0.0/0", True)


def acl(
    inbound: tuple[AclEntry, ...] = (), outbound: tuple[AclEntry, ...] = ()
) -> NetworkAclConfig:
    """The web subnet's ACL: the given entries, then allow all, then `*`."""
    return NetworkAclConfig(
        "acl-web",
        "10.1.1.0/24",
        ingress=(*inbound, ALLOW_ALL, DEFAULT_DENY),
        egress=(*outbound, ALLOW_ALL, DEFAULT_DENY),
    )


def lab_of(web_acl: NetworkAclConfig | None = None) -> tuple[SimLab, Vpc]:
    """web (node1, 10.1.1.10), near (node1, same subnet), far (node2, another subnet)."""
    lab = SimLab(2)
    vpc = lab.add_vpc("acme", "prod", ["10.1.1.0/24", "10.1.2.0/24"])
    for name, node, ip, security, acl_ in (
        ("web", "node1", "10.1.1.10", WEB, web_acl),
        ("near", "node1", "10.1.1.30", CLIENT, web_acl),
        ("far", "node2", "10.1.2.20", CLIENT, None),
    ):
        lab.add_vm(
            vpc, name, node, ip, policy=True, agent_decides=False, security=security, acl=acl_
        )
    lab.build()
    return lab, vpc


def connect(lab: SimLab, client: str, sport: int, dport: int) -> bool:
    """A SYN from `client` to web: whether web saw it and the client got web's answer (a
    reset: nothing listens)."""
    web, vm = lab.vm("web"), lab.vm(client)
    seen, answered = len(web.got("tcp_syn")), len(vm.got("tcp_rst"))
    vm.tcp_syn(web.ip, sport, dport)
    lab.run()
    reached = len(web.got("tcp_syn")) > seen
    replied = len(vm.got("tcp_rst")) > answered
    assert replied == reached or not replied  # a reply never passes without its request
    return reached and replied


def key(lab: SimLab, vpc: Vpc, client: VmEndpoint, sport: int, dport: int) -> FlowKey:
    vrf = lab.nodes["node1"].vrf_of[vpc.label]
    return (vrf, PROTO_TCP, client.ip, lab.vm("web").ip, sport, dport)


def test_an_allowed_port_is_reachable_and_answered_a_denied_one_is_not() -> None:
    lab, vpc = lab_of()
    node1 = lab.nodes["node1"]
    for client in ("far", "near"):
        assert connect(lab, client, 5000, 22)
        assert not connect(lab, client, 5001, 23)
        allowed = node1.tables.flows.lookup(key(lab, vpc, lab.vm(client), 5000, 22))
        denied = node1.tables.flows.lookup(key(lab, vpc, lab.vm(client), 5001, 23))
        assert allowed is not None and allowed.action is FlowAction.FORWARD
        assert allowed.reverse is not None  # the reply passes without an egress rule
        assert denied is not None and denied.action is FlowAction.DROP
        assert denied.reverse is None
        assert denied.by == "ingress: no security group rule"
    # far's own node decides on far's side (its egress rule); node1 on web's
    far_key = key(lab, vpc, lab.vm("far"), 5000, 22)
    far_flow = lab.nodes["node2"].tables.flows.lookup(far_key)
    assert far_flow is not None and far_flow.by == "sg-any/sgr-out"
    assert node1.tables.flows.lookup(far_key).by == "sg-web/sgr-ssh"  # type: ignore[union-attr]
    assert node1.tables.drops[Drop.FLOW_ACTION_DROP] == 2


def test_an_acl_deny_numbered_before_an_allow_wins() -> None:
    deny_far = AclEntry(100, PROTO_TCP, 22, 22, "10.1.2.20/32", False)
    lab, vpc = lab_of(acl(inbound=(deny_far,)))
    assert not connect(lab, "far", 5000, 22)
    flow = lab.nodes["node1"].tables.flows.lookup(key(lab, vpc, lab.vm("far"), 5000, 22))
    assert flow is not None and flow.by == "acl-web/inbound/100"
    assert connect(lab, "near", 5000, 22)  # inside the subnet the ACL is not consulted


def test_an_outbound_deny_on_ephemeral_ports_breaks_replies_of_an_allowed_inbound_flow() -> None:
    ephemeral = AclEntry(100, PROTO_TCP, 1024, 65535, "0.0.0.0/0", False)
    lab, vpc = lab_of(acl(outbound=(ephemeral,)))
    assert not connect(lab, "far", 5000, 22)
    flow = lab.nodes["node1"].tables.flows.lookup(key(lab, vpc, lab.vm("far"), 5000, 22))
    assert flow is not None and flow.by == "acl-web/outbound/100/replies"
    assert connect(lab, "far", 1000, 22)  # replies to a port below 1024 may leave


def test_changed_rules_decide_new_flows_and_tracked_ones_go_on() -> None:
    lab, _ = lab_of()
    assert connect(lab, "far", 5000, 22)
    assert not connect(lab, "far", 5001, 80)
    web = lab.ports["web"]
    http = SgRule(PROTO_TCP, 80, 80, "10.1.2.0/24", "sg-web/sgr-http")
    web.security = PortSecurity(ingress=(http,), egress=())  # SSH revoked, HTTP allowed
    lab.build()
    assert connect(lab, "far", 5001, 80)  # denied a moment ago: decided again at once
    assert connect(lab, "far", 5000, 22)  # tracked: goes on
    assert not connect(lab, "far", 5002, 22)  # new: refused
