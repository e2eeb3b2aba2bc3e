"""VPC peering connections: the request, acceptance by the peer VPC's owner only, the
states, overlapping CIDRs and who sees a connection."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from service_setup import fails, open_service

from openvpc.model.resources import Tenant, Vpc
from openvpc.service import Service, ServiceError
from openvpc.service.peering import FAILED, PENDING_LIFETIME
from openvpc.service.repo import Repo

RED, BLUE = "111111111111", "222222222222"


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[Service]:
    service = open_service(tmp_path / "store.db")
    service.create_tenant("green")
    with service.store.transaction() as tx:  # accounts as the API shows them
        Repo(tx).put(Tenant("red", RED))
        Repo(tx).put(Tenant("blue", BLUE))
        Repo(tx).put(Tenant("green", "333333333333"))
    try:
        yield service
    finally:
        service.store.close()


@pytest.fixture
def vpcs(svc: Service) -> tuple[Vpc, Vpc]:
    return svc.create_vpc("red", "a", "10.0.0.0/16"), svc.create_vpc("blue", "b", "10.1.0.0/16")


def _statuses(svc: Service, tenant: str, now: float = 0.0) -> list[tuple[str, str]]:
    return [(p.id, p.status) for p in svc.describe_vpc_peering_connections(tenant, now=now)]


def test_across_tenants_the_accepter_accepts_and_both_see_it(
    svc: Service, vpcs: tuple[Vpc, Vpc]
) -> None:
    mine, theirs = vpcs
    pcx = svc.create_vpc_peering_connection("red", mine.id, theirs.id, BLUE, now=10.0)
    assert pcx.id.startswith("pcx-")
    assert (pcx.status, pcx.tenant, pcx.accepter_tenant, pcx.cidr, pcx.accepter_cidr) == (
        "pending-acceptance",
        "red",
        "blue",
        "10.0.0.0/16",
        "10.1.0.0/16",
    )
    assert pcx.expires == 10.0 + PENDING_LIFETIME
    assert _statuses(svc, "red") == _statuses(svc, "blue") == [(pcx.id, "pending-acceptance")]
    assert _statuses(svc, "green") == []
    with pytest.raises(ServiceError) as e:
        svc.accept_vpc_peering_connection("red", pcx.id, now=11.0)
    assert (e.value.code, e.value.message) == (
        "OperationNotPermitted",
        f"User {RED} cannot accept peering {pcx.id}",
    )
    with fails("InvalidVpcPeeringConnectionID.NotFound"):
        svc.accept_vpc_peering_connection("green", pcx.id, now=11.0)
    active = svc.accept_vpc_peering_connection("blue", pcx.id, now=12.0)
    assert active.status == "active"
    with pytest.raises(ServiceError) as e:
        svc.accept_vpc_peering_connection("blue", pcx.id, now=13.0)
    assert (e.value.code, e.value.message) == (
        "InvalidStateTransition",
        f"Invalid state transition for {pcx.id}, attempted to transition from active to active",
    )
    with fails("InvalidStateTransition"):
        svc.reject_vpc_peering_connection("blue", pcx.id, now=13.0)
    # either side deletes; it stays describable as deleted
    svc.delete_vpc_peering_connection("blue", pcx.id, now=14.0)
    assert _statuses(svc, "red") == [(pcx.id, "deleted")]
    with fails("InvalidStateTransition"):
        svc.delete_vpc_peering_connection("red", pcx.id, now=15.0)


def test_reject_is_the_accepters(svc: Service, vpcs: tuple[Vpc, Vpc]) -> None:
    mine, theirs = vpcs
    pcx = svc.create_vpc_peering_connection("red", mine.id, theirs.id, BLUE, now=0.0)
    with fails("OperationNotPermitted"):
        svc.reject_vpc_peering_connection("red", pcx.id, now=1.0)
    svc.reject_vpc_peering_connection("blue", pcx.id, now=1.0)
    assert _statuses(svc, "red") == [(pcx.id, "rejected")]
    with fails("InvalidStateTransition"):
        svc.accept_vpc_peering_connection("blue", pcx.id, now=2.0)


def test_within_one_tenant(svc: Service) -> None:
    a = svc.create_vpc("red", "a", "10.0.0.0/16")
    b = svc.create_vpc("red", "b", "10.1.0.0/16")
    pcx = svc.create_vpc_peering_connection("red", a.id, b.id, now=0.0)
    assert pcx.accepter_tenant == "red"
    with fails("VpcPeeringConnectionAlreadyExists"):
        svc.create_vpc_peering_connection("red", b.id, a.id, now=1.0)
    assert svc.accept_vpc_peering_connection("red", pcx.id, now=1.0).status == "active"
    with fails("InvalidVpcID.NotFound"):
        svc.create_vpc_peering_connection("red", a.id, "vpc-00000000000000000", now=1.0)
    with fails("InvalidParameterValue"):
        svc.create_vpc_peering_connection("red", a.id, a.id, now=1.0)


def test_overlapping_cidrs_fail(svc: Service) -> None:
    a = svc.create_vpc("red", "a", "10.0.0.0/16")
    b = svc.create_vpc("blue", "b", "10.0.128.0/17")
    pcx = svc.create_vpc_peering_connection("red", a.id, b.id, BLUE, now=0.0)
    assert (pcx.status, pcx.message) == ("failed", FAILED)
    with fails("InvalidStateTransition"):
        svc.accept_vpc_peering_connection("blue", pcx.id, now=1.0)


def test_an_unknown_peer_vpc_or_account_fails_without_telling_more(
    svc: Service, vpcs: tuple[Vpc, Vpc]
) -> None:
    mine, theirs = vpcs
    for account, vpc in ((BLUE, "vpc-00000000000000000"), ("999999999999", theirs.id)):
        pcx = svc.create_vpc_peering_connection("red", mine.id, vpc, account, now=0.0)
        assert (pcx.status, pcx.message) == ("failed", FAILED)
    # the owner named must be the one that owns the VPC
    green = svc.create_vpc("green", "g", "10.5.0.0/16")
    assert svc.create_vpc_peering_connection("red", mine.id, green.id, BLUE, now=0.0).status == (
        "failed"
    )
    assert _statuses(svc, "blue") == []


def test_a_pending_request_expires(svc: Service, vpcs: tuple[Vpc, Vpc]) -> None:
    mine, theirs = vpcs
    pcx = svc.create_vpc_peering_connection("red", mine.id, theirs.id, BLUE, now=0.0)
    later = PENDING_LIFETIME + 1.0
    assert _statuses(svc, "blue", now=later) == [(pcx.id, "expired")]
    with fails("InvalidStateTransition"):
        svc.accept_vpc_peering_connection("blue", pcx.id, now=later)


def test_the_requester_vpc_must_be_ones_own(svc: Service, vpcs: tuple[Vpc, Vpc]) -> None:
    mine, theirs = vpcs
    with fails("InvalidVpcID.NotFound"):
        svc.create_vpc_peering_connection("blue", mine.id, theirs.id, now=0.0)


def test_deleting_a_vpc_deletes_its_connections(svc: Service, vpcs: tuple[Vpc, Vpc]) -> None:
    mine, theirs = vpcs
    pcx = svc.create_vpc_peering_connection("red", mine.id, theirs.id, BLUE, now=0.0)
    svc.accept_vpc_peering_connection("blue", pcx.id, now=1.0)
    svc.delete_vpc("blue", theirs.id)
    assert _statuses(svc, "red") == [(pcx.id, "deleted")]
