"""VPC peering connections: requested by one tenant, accepted or rejected by the owner of the
peer VPC (possibly another tenant); both sides see one, nobody else does."""

from dataclasses import replace
from ipaddress import IPv4Network

from openvpc.model.gateways import PeeringStatus, VpcPeeringConnection
from openvpc.model.resources import Tenant, Vpc
from openvpc.service.errors import ServiceError, invalid_value, not_found
from openvpc.service.repo import Repo

PENDING_LIFETIME = 7 * 24 * 3600  # a request not accepted within a week expires
FAILED = "Failed due to incorrect VPC-ID, Account ID, or overlapping CIDR range"
_OPEN = ("pending-acceptance", "active")  # states that count as an existing connection


def status(pcx: VpcPeeringConnection, now: float) -> PeeringStatus:
    """Its status at `now`: a pending request past its expiry shows as expired."""
    if pcx.status == "pending-acceptance" and pcx.expires and now >= pcx.expires:
        return "expired"
    return pcx.status


def visible(repo: Repo, pcx_id: str, tenant: str) -> VpcPeeringConnection:
    """A connection `tenant` is a side of; any other looks exactly like a missing one."""
    found = repo.get(VpcPeeringConnection, pcx_id) if isinstance(pcx_id, str) else None
    if found is None or tenant not in (found.tenant, found.accepter_tenant):
        raise not_found("vpcPeeringConnection", str(pcx_id))
    return found


def _tenant_by_account(repo: Repo, account: str) -> Tenant | None:
    return next((t for t in repo.all(Tenant) if t.account and t.account == account), None)


def create(
    repo: Repo,
    tenant: str,
    vpc_id: str,
    peer_vpc_id: str,
    peer_account: str | None,
    now: float,
) -> VpcPeeringConnection:
    """A request from the tenant's VPC to a peer VPC, of the same tenant unless
    `peer_account` names another's account. It fails (status failed, as EC2 records it) when
    the peer VPC is not found in that account or the two CIDRs overlap."""
    me = repo.tenant(tenant)
    vpc = repo.owned(Vpc, vpc_id, tenant)
    if not isinstance(peer_vpc_id, str) or not peer_vpc_id:
        raise ServiceError("MissingParameter", "The request must contain the parameter peerVpcId")
    same = not peer_account or peer_account == me.account
    peer: Vpc | None
    if same:
        peer_name = tenant
        peer = repo.owned(Vpc, peer_vpc_id, tenant)  # one's own VPC: a plain not-found
    else:
        other = _tenant_by_account(repo, str(peer_account))
        peer_name = "" if other is None else other.name
        found = repo.get(Vpc, peer_vpc_id) if other is not None else None
        peer = found if found is not None and found.tenant == peer_name else None
        if peer is None:
            peer_name = ""  # nobody else sees a request for a VPC that is not theirs
    if peer is not None and peer.id == vpc.id:
        raise invalid_value("peerVpcId", peer_vpc_id, "A VPC cannot peer with itself.")
    if peer is not None:
        for existing in repo.find(VpcPeeringConnection, "vpc", vpc.id) + repo.find(
            VpcPeeringConnection, "vpc", peer.id
        ):
            pair = {existing.vpc, existing.accepter_vpc}
            if pair == {vpc.id, peer.id} and status(existing, now) in _OPEN:
                raise ServiceError(
                    "VpcPeeringConnectionAlreadyExists",
                    f"A VPC peering connection between {vpc.id} and {peer.id} already exists: "
                    f"{existing.id}",
                )
    failed = peer is None or IPv4Network(vpc.cidr).overlaps(IPv4Network(peer.cidr))
    pcx = VpcPeeringConnection(
        repo.new_id("pcx", VpcPeeringConnection),
        tenant,
        vpc.id,
        vpc.cidr,
        peer_name,
        peer_vpc_id,
        "" if peer is None else peer.cidr,
        "failed" if failed else "pending-acceptance",
        FAILED if failed else f"Pending Acceptance by {peer_account or me.account}",
        now,
        0.0 if failed else now + PENDING_LIFETIME,
        str(peer_account or me.account),
    )
    repo.put(pcx)
    return pcx


def _transition(pcx: VpcPeeringConnection, now: float, allowed: tuple[str, ...], to: str) -> None:
    current = status(pcx, now)
    if current not in allowed:
        raise ServiceError(
            "InvalidStateTransition",
            f"Invalid state transition for {pcx.id}, attempted to transition from {current} "
            f"to {to}",
        )


def _accepter_only(repo: Repo, pcx: VpcPeeringConnection, tenant: str, verb: str) -> None:
    if tenant != pcx.accepter_tenant:
        account = repo.tenant(tenant).account or tenant
        raise ServiceError(
            "OperationNotPermitted", f"User {account} cannot {verb} peering {pcx.id}"
        )


def accept(repo: Repo, tenant: str, pcx_id: str, now: float) -> VpcPeeringConnection:
    pcx = visible(repo, pcx_id, tenant)
    _accepter_only(repo, pcx, tenant, "accept")
    _transition(pcx, now, ("pending-acceptance",), "active")
    peer = repo.get(Vpc, pcx.accepter_vpc)
    mine = repo.get(Vpc, pcx.vpc)
    if peer is None or mine is None:  # a side went away while the request was pending
        raise ServiceError(
            "InvalidStateTransition",
            f"Invalid state transition for {pcx.id}: a VPC of the connection no longer exists",
        )
    accepted = replace(pcx, status="active", message="Active", expires=0.0)
    repo.put(accepted)
    return accepted


def reject(repo: Repo, tenant: str, pcx_id: str, now: float) -> None:
    pcx = visible(repo, pcx_id, tenant)
    _accepter_only(repo, pcx, tenant, "reject")
    _transition(pcx, now, ("pending-acceptance",), "rejected")
    account = repo.tenant(tenant).account or tenant
    repo.put(replace(pcx, status="rejected", message=f"Rejected by {account}"))


def delete(repo: Repo, tenant: str, pcx_id: str, now: float) -> None:
    """Either side deletes an active connection or a pending request; it stays describable
    as deleted (routes through it become blackholes)."""
    pcx = visible(repo, pcx_id, tenant)
    _transition(pcx, now, _OPEN, "deleted")
    account = repo.tenant(tenant).account or tenant
    repo.put(replace(pcx, status="deleted", message=f"Deleted by {account}", expires=0.0))


def describe(repo: Repo, tenant: str, now: float) -> list[VpcPeeringConnection]:
    """The connections the tenant is a side of, each with its status at `now`, by id."""
    mine = {p.id: p for p in repo.find(VpcPeeringConnection, "tenant", tenant)}
    for p in repo.find(VpcPeeringConnection, "accepter_tenant", tenant):
        mine[p.id] = p
    return [replace(p, status=status(p, now)) for _, p in sorted(mine.items())]


def vpc_deleted(repo: Repo, vpc_id: str) -> None:
    """Connections of a deleted VPC that were pending or active are deleted with it."""
    for pcx in repo.all(VpcPeeringConnection):
        if vpc_id in (pcx.vpc, pcx.accepter_vpc) and pcx.status in _OPEN:
            repo.put(replace(pcx, status="deleted", message=f"Deleted with {vpc_id}", expires=0.0))
