"""Network ACLs in the service: the default ACL of a VPC, custom ACLs, numbered entries,
subnet associations, quotas, deletions and tenant isolation."""

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from service_setup import fails, open_service, vpc_with_subnet

from openvpc.model.policy import AclAssociation, NaclEntry, NetworkAcl
from openvpc.model.resources import Subnet, Vpc
from openvpc.service import Service
from openvpc.service.acls import ENTRIES_PER_DIRECTION, EntrySpec
from openvpc.service.repo import Repo


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[Service]:
    service = open_service(tmp_path / "store.db")
    try:
        yield service
    finally:
        service.store.close()


def acl_of(svc: Service, acl_id: str, tenant: str = "red") -> NetworkAcl:
    (found,) = [a for a in svc.describe_network_acls(tenant) if a.id == acl_id]
    return found


def default_of(svc: Service, vpc: Vpc) -> NetworkAcl:
    (found,) = [a for a in svc.describe_network_acls(vpc.tenant) if a.vpc == vpc.id and a.default]
    return found


def association_of(svc: Service, subnet: Subnet) -> AclAssociation:
    (found,) = [a for a in svc.describe_acl_associations(subnet.tenant) if a.subnet == subnet.id]
    return found


def rows(acl: NetworkAcl) -> list[tuple[int, bool, str, str]]:
    return [(e.rule_number, e.egress, e.protocol, e.action) for e in acl.entries]


HTTPS = EntrySpec(110, False, "tcp", "allow", "0.0.0.0/0", ports=(443, 443))


# -- the default ACL ------------------------------------------------------------------------
def test_a_vpc_comes_with_a_default_acl_allowing_everything(svc: Service) -> None:
    vpc = svc.create_vpc("red", "prod", "10.0.0.0/16")
    (acl,) = svc.describe_network_acls("red")
    assert acl.id.startswith("acl-") and acl.default and acl.vpc == vpc.id
    assert rows(acl) == [
        (100, False, "-1", "allow"),
        (32767, False, "-1", "deny"),
        (100, True, "-1", "allow"),
        (32767, True, "-1", "deny"),
    ]
    assert {e.cidr for e in acl.entries} == {"0.0.0.0/0"}
    with fails("InvalidParameterValue"):
        svc.delete_network_acl("red", acl.id)


def test_subnets_are_associated_with_the_default_acl_until_replaced(svc: Service) -> None:
    vpc, subnet = vpc_with_subnet(svc)
    default = default_of(svc, vpc)
    first = association_of(svc, subnet)
    assert first.id.startswith("aclassoc-") and first.network_acl == default.id
    custom = svc.create_network_acl("red", vpc.id)
    moved = svc.replace_network_acl_association("red", first.id, custom.id)
    assert moved.network_acl == custom.id and moved.subnet == subnet.id
    assert moved.id.startswith("aclassoc-") and moved.id != first.id
    assert association_of(svc, subnet) == moved
    with fails("InvalidAssociationID.NotFound"):  # the old id is gone
        svc.replace_network_acl_association("red", first.id, default.id)
    back = svc.replace_network_acl_association("red", moved.id, default.id)
    assert association_of(svc, subnet).network_acl == default.id != custom.id
    assert back.id not in (first.id, moved.id)


def test_an_association_goes_with_its_subnet(svc: Service) -> None:
    vpc, subnet = vpc_with_subnet(svc)
    assert len(svc.describe_acl_associations("red")) == 1
    svc.delete_subnet("red", subnet.id)
    assert svc.describe_acl_associations("red") == ()
    svc.delete_vpc("red", vpc.id)
    assert svc.describe_network_acls("red") == ()


def test_a_subnet_moves_only_to_an_acl_of_its_own_vpc(svc: Service) -> None:
    _, subnet = vpc_with_subnet(svc)
    other = svc.create_vpc("red", "test", "10.1.0.0/16")
    foreign = svc.create_network_acl("red", other.id)
    association = association_of(svc, subnet)
    with fails("InvalidParameterValue"):
        svc.replace_network_acl_association("red", association.id, foreign.id)
    with fails("InvalidNetworkAclID.NotFound"):
        svc.replace_network_acl_association("red", association.id, "acl-00000000000000000")
    with fails("InvalidAssociationID.NotFound"):
        svc.replace_network_acl_association("red", "aclassoc-00000000000000000", foreign.id)


# -- custom ACLs ----------------------------------------------------------------------------
def test_a_custom_acl_denies_everything_until_entries_are_added(svc: Service) -> None:
    vpc = svc.create_vpc("red", "prod", "10.0.0.0/16")
    acl = svc.create_network_acl("red", vpc.id)
    assert not acl.default and acl.vpc == vpc.id and acl.tenant == "red"
    assert rows(acl) == [(32767, False, "-1", "deny"), (32767, True, "-1", "deny")]
    assert acl_of(svc, acl.id) == acl


def test_an_associated_acl_cannot_be_deleted(svc: Service) -> None:
    vpc, subnet = vpc_with_subnet(svc)
    acl = svc.create_network_acl("red", vpc.id)
    association = svc.replace_network_acl_association("red", association_of(svc, subnet).id, acl.id)
    with fails("DependencyViolation"):
        svc.delete_network_acl("red", acl.id)
    svc.replace_network_acl_association("red", association.id, default_of(svc, vpc).id)
    svc.delete_network_acl("red", acl.id)
    with fails("InvalidNetworkAclID.NotFound"):
        svc.delete_network_acl("red", acl.id)


def test_a_vpc_with_a_custom_acl_cannot_be_deleted(svc: Service) -> None:
    vpc = svc.create_vpc("red", "prod", "10.0.0.0/16")
    acl = svc.create_network_acl("red", vpc.id)
    with fails("DependencyViolation"):
        svc.delete_vpc("red", vpc.id)
    assert len(svc.describe_network_acls("red")) == 2
    svc.delete_network_acl("red", acl.id)
    svc.delete_vpc("red", vpc.id)


def test_acls_per_vpc_are_limited(svc: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("openvpc.service.acls.ACLS_PER_VPC", 2)
    vpc = svc.create_vpc("red", "prod", "10.0.0.0/16")
    svc.create_network_acl("red", vpc.id)
    with fails("NetworkAclLimitExceeded"):
        svc.create_network_acl("red", vpc.id)


def test_acls_are_tenant_scoped(svc: Service) -> None:
    vpc, subnet = vpc_with_subnet(svc)
    acl = svc.create_network_acl("red", vpc.id)
    association = association_of(svc, subnet)
    assert svc.describe_network_acls("blue") == ()
    assert svc.describe_acl_associations("blue") == ()
    with fails("InvalidVpcID.NotFound"):
        svc.create_network_acl("blue", vpc.id)
    with fails("InvalidNetworkAclID.NotFound"):
        svc.delete_network_acl("blue", acl.id)
    with fails("InvalidNetworkAclID.NotFound"):
        svc.create_network_acl_entry("blue", acl.id, HTTPS)
    with fails("InvalidAssociationID.NotFound"):
        svc.replace_network_acl_association("blue", association.id, acl.id)
    blue_vpc, _ = vpc_with_subnet(svc, "blue")
    blue_acl = svc.create_network_acl("blue", blue_vpc.id)
    with fails("InvalidAssociationID.NotFound"):
        svc.replace_network_acl_association("blue", association.id, blue_acl.id)
    with fails("InvalidNetworkAclID.NotFound"):
        svc.replace_network_acl_association("red", association.id, blue_acl.id)


# -- entries --------------------------------------------------------------------------------
def test_entries_are_kept_in_order_in_canonical_form(svc: Service) -> None:
    vpc = svc.create_vpc("red", "prod", "10.0.0.0/16")
    acl = svc.create_network_acl("red", vpc.id)
    made = [
        svc.create_network_acl_entry("red", acl.id, HTTPS),
        svc.create_network_acl_entry(
            "red", acl.id, EntrySpec(90, False, "1", "DENY", "10.9.8.7/16", icmp=(8, None))
        ),
        svc.create_network_acl_entry(
            "red", acl.id, EntrySpec(90, True, "UDP", "allow", "0.0.0.0/0", ports=(53, 53))
        ),
        svc.create_network_acl_entry(
            "red", acl.id, EntrySpec(1, True, "47", "allow", "0.0.0.0/0", ports=(1, 2))
        ),
    ]
    assert made == [
        NaclEntry(110, False, "6", "allow", "0.0.0.0/0", 443, 443),
        NaclEntry(90, False, "1", "deny", "10.9.0.0/16", icmp_type=8, icmp_code=-1),
        NaclEntry(90, True, "17", "allow", "0.0.0.0/0", 53, 53),
        NaclEntry(1, True, "47", "allow", "0.0.0.0/0"),  # ports are ignored
    ]
    assert [(e.rule_number, e.egress) for e in acl_of(svc, acl.id).entries] == [
        (90, False),
        (110, False),
        (32767, False),
        (1, True),
        (90, True),
        (32767, True),
    ]


def test_a_rule_number_is_used_once_per_direction(svc: Service) -> None:
    vpc = svc.create_vpc("red", "prod", "10.0.0.0/16")
    acl = default_of(svc, vpc)
    with fails("NetworkAclEntryAlreadyExists"):
        svc.create_network_acl_entry("red", acl.id, replace(HTTPS, rule_number=100))
    svc.create_network_acl_entry("red", acl.id, HTTPS)
    with fails("NetworkAclEntryAlreadyExists"):
        svc.create_network_acl_entry("red", acl.id, replace(HTTPS, action="deny"))
    svc.create_network_acl_entry("red", acl.id, replace(HTTPS, egress=True))


@pytest.mark.parametrize(
    ("spec", "code"),
    [
        (replace(HTTPS, rule_number=0), "InvalidParameterValue"),
        (replace(HTTPS, rule_number=32767), "InvalidParameterValue"),
        (replace(HTTPS, protocol="gre"), "InvalidParameterValue"),
        (replace(HTTPS, protocol="256"), "InvalidParameterValue"),
        (replace(HTTPS, action="reject"), "InvalidParameterValue"),
        (replace(HTTPS, cidr="10.0.0.0"), "InvalidParameterValue"),
        (replace(HTTPS, ports=None), "MissingParameter"),
        (replace(HTTPS, ports=(443, None)), "MissingParameter"),
        (replace(HTTPS, ports=(444, 443)), "InvalidParameterValue"),
        (replace(HTTPS, ports=(0, 65536)), "InvalidParameterValue"),
        (replace(HTTPS, protocol="icmp", ports=None), "MissingParameter"),
        (replace(HTTPS, protocol="icmp", icmp=(256, 0)), "InvalidParameterValue"),
    ],
)
def test_malformed_entries_are_refused(svc: Service, spec: EntrySpec, code: str) -> None:
    vpc = svc.create_vpc("red", "prod", "10.0.0.0/16")
    acl = svc.create_network_acl("red", vpc.id)
    with fails(code):
        svc.create_network_acl_entry("red", acl.id, spec)
    assert len(acl_of(svc, acl.id).entries) == 2


def test_entries_per_direction_are_limited(svc: Service) -> None:
    vpc = svc.create_vpc("red", "prod", "10.0.0.0/16")
    acl = svc.create_network_acl("red", vpc.id)
    for n in range(1, ENTRIES_PER_DIRECTION + 1):
        svc.create_network_acl_entry("red", acl.id, replace(HTTPS, rule_number=n))
    with fails("NetworkAclEntryLimitExceeded"):
        svc.create_network_acl_entry("red", acl.id, replace(HTTPS, rule_number=999))
    svc.create_network_acl_entry("red", acl.id, replace(HTTPS, rule_number=999, egress=True))
    # replacing one is not adding one
    svc.replace_network_acl_entry("red", acl.id, replace(HTTPS, rule_number=1, action="deny"))


def test_replace_and_delete_need_an_existing_entry(svc: Service) -> None:
    vpc = svc.create_vpc("red", "prod", "10.0.0.0/16")
    acl = default_of(svc, vpc)
    replaced = svc.replace_network_acl_entry(
        "red", acl.id, EntrySpec(100, False, "-1", "deny", "10.0.0.0/8")
    )
    assert replaced == NaclEntry(100, False, "-1", "deny", "10.0.0.0/8")
    assert acl_of(svc, acl.id).entries[0] == replaced
    with fails("InvalidNetworkAclEntry.NotFound"):
        svc.replace_network_acl_entry("red", acl.id, replace(HTTPS, rule_number=101))
    with fails("InvalidNetworkAclEntry.NotFound"):
        svc.delete_network_acl_entry("red", acl.id, 101, False)
    with fails("InvalidParameterValue"):  # the "*" rule is EC2's own
        svc.delete_network_acl_entry("red", acl.id, 32767, False)
    svc.delete_network_acl_entry("red", acl.id, 100, True)
    assert rows(acl_of(svc, acl.id)) == [
        (100, False, "-1", "deny"),
        (32767, False, "-1", "deny"),
        (32767, True, "-1", "deny"),
    ]


def test_a_vpc_stored_before_acls_existed_gets_its_default_acl_with_a_new_subnet(
    svc: Service,
) -> None:
    vpc = svc.create_vpc("red", "prod", "10.0.0.0/16")
    with svc.store.transaction() as tx:
        repo = Repo(tx)
        for acl in repo.find(NetworkAcl, "vpc", vpc.id):
            repo.delete(NetworkAcl, acl.id)
    subnet = svc.create_subnet("red", vpc.id, "web", "10.0.1.0/24")
    assert association_of(svc, subnet).network_acl == default_of(svc, vpc).id


def test_acls_reach_the_snapshot(svc: Service) -> None:
    vpc, subnet = vpc_with_subnet(svc)
    snap = svc.snapshot()
    assert [a.vpc for a in snap.network_acls] == [vpc.id]
    assert [a.subnet for a in snap.acl_associations] == [subnet.id]
