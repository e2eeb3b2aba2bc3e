"""The service facade: one store transaction per call, allocations brought up to date before
it commits, and tenant-scoped reads."""

import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar

from openvpc.credentials import new_secret, secret_hash
from openvpc.model.gateways import ElasticIp, InternetGateway, NatGateway, VpcPeeringConnection
from openvpc.model.policy import (
    AclAssociation,
    NaclEntry,
    NetworkAcl,
    SecurityGroup,
    SecurityGroupRule,
)
from openvpc.model.resources import (
    AddressOwner,
    Association,
    ComputeNode,
    Instance,
    Interface,
    NodeAllocation,
    Route,
    RouteTable,
    Snapshot,
    Subnet,
    Tenant,
    Vpc,
)
from openvpc.service import (
    acls,
    addresses,
    admin,
    allocation,
    compute,
    gateways,
    instances,
    interfaces,
    keys,
    network,
    peering,
    routing,
    security,
    tags,
)
from openvpc.service.acls import EntrySpec
from openvpc.service.repo import INDEXED_FIELDS, Repo
from openvpc.service.security import RuleSpec
from openvpc.store import Store

T = TypeVar("T")


def _now(now: float | None) -> float:
    return time.time() if now is None else now


class Service:
    """AWS semantics over a Store. Calls taking `tenant` only ever see that tenant's
    resources; an id of another tenant's resource is reported as not found."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._batch: tuple[int, Repo] | None = None  # (thread, its open transaction)
        for field in INDEXED_FIELDS:
            store.index(field)

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Run every call this thread makes inside the block in one store transaction, with
        allocations reconciled once at the end: all of them commit, or (on an exception
        leaving the block) none. A call that fails inside is undone alone, as on its own."""
        if self._batched() is not None:
            raise RuntimeError("batches do not nest")
        with self.store.transaction() as tx:
            repo = Repo(tx)
            self._batch = (threading.get_ident(), repo)
            try:
                yield
                allocation.reconcile(repo)
            finally:
                self._batch = None

    def in_batch(self) -> bool:
        """Whether this thread is inside `batch()` (its reads see the batch's changes)."""
        return self._batched() is not None

    def _batched(self) -> Repo | None:
        batch = self._batch
        return batch[1] if batch is not None and batch[0] == threading.get_ident() else None

    @contextmanager
    def _write(self) -> Iterator[Repo]:
        repo = self._batched()
        if repo is not None:
            with repo.tx.savepoint():
                yield repo
            return
        with self.store.transaction() as tx:
            repo = Repo(tx)
            yield repo
            allocation.reconcile(repo)

    @contextmanager
    def _read(self) -> Iterator[Repo]:
        repo = self._batched()
        if repo is not None:
            yield repo
            return
        with self.store.transaction(readonly=True) as tx:
            yield Repo(tx)

    # -- operator -----------------------------------------------------------------------
    def register_node(self, name: str, fabric_ip: str, zone: str = "") -> ComputeNode:
        with self._write() as repo:
            return admin.register_node(repo, name, fabric_ip, zone)

    def issue_node_secret(self, name: str) -> bytes:
        """A new southbound secret for registered node `name`; only its hash is stored, so
        this is the one time it can be read. Issuing again revokes the previous one."""
        secret = new_secret()
        with self._write() as repo:
            admin.issue_node_secret(repo, name, secret_hash(secret))
        return secret

    def node_secret_hashes(self) -> dict[str, str]:
        """Node -> SHA-256 of its current secret: what the southbound checks calls against."""
        with self._read() as repo:
            return repo.credentials()

    def set_fabric_mtu(self, mtu: int) -> None:
        with self._write() as repo:
            admin.set_fabric_mtu(repo, mtu)

    def create_tenant(self, name: str) -> Tenant:
        with self._write() as repo:
            return admin.create_tenant(repo, name)

    def delete_tenant(self, name: str) -> None:
        """Delete a tenant that owns no resources (DependencyViolation otherwise) and its keys."""
        with self._write() as repo:
            admin.delete_tenant(repo, name)

    def describe_tenants(self) -> tuple[Tenant, ...]:
        with self._read() as repo:
            return tuple(repo.all(Tenant))

    def create_tenant_key(self, tenant: str) -> tuple[str, str]:
        """A new (access key id, secret) for `tenant`, as AWS shapes them. The secret is kept
        in the store (SigV4 verification needs it) and is never listed."""
        key_id, secret = keys.new_key_id(), keys.new_secret()
        with self._write() as repo:
            admin.create_access_key(repo, tenant, key_id, secret)
        return key_id, secret

    def access_key(self, access_key_id: str) -> tuple[str, str] | None:
        """(secret, tenant) of an access key, None when no such key was issued: the SigV4
        verifier's lookup."""
        if not keys.is_key_id(access_key_id):
            return None
        with self._read() as repo:
            return repo.access_key(access_key_id)

    def tenant_keys(self, tenant: str) -> tuple[str, ...]:
        """The ids of a tenant's access keys, sorted (never the secrets)."""
        with self._read() as repo:
            repo.tenant(tenant)
            return tuple(repo.access_keys(tenant))

    def delete_tenant_key(self, tenant: str, access_key_id: str) -> None:
        with self._write() as repo:
            admin.delete_access_key(repo, tenant, access_key_id)

    # -- VPCs and subnets ---------------------------------------------------------------
    def create_vpc(
        self, tenant: str, name: str, cidr: str, mode: str = "l3", encap: str = "vxlan"
    ) -> Vpc:
        with self._write() as repo:
            return network.create_vpc(repo, tenant, name, cidr, mode, encap)

    def delete_vpc(self, tenant: str, vpc_id: str) -> None:
        with self._write() as repo:
            network.delete_vpc(repo, tenant, vpc_id)

    def set_vpc_attribute(self, tenant: str, vpc_id: str, attribute: str, value: bool) -> Vpc:
        with self._write() as repo:
            return network.set_vpc_attribute(repo, tenant, vpc_id, attribute, value)

    def associate_vpc_cidr(self, tenant: str, vpc_id: str, cidr: str) -> tuple[Vpc, str]:
        """Add a secondary CIDR block; returns the VPC and the block's association id."""
        with self._write() as repo:
            return network.associate_vpc_cidr(repo, tenant, vpc_id, cidr)

    def disassociate_vpc_cidr(self, tenant: str, association_id: str) -> tuple[Vpc, str]:
        """Remove a secondary CIDR block; returns the VPC and the block."""
        with self._write() as repo:
            return network.disassociate_vpc_cidr(repo, tenant, association_id)

    def create_subnet(
        self, tenant: str, vpc_id: str, name: str, cidr: str, zone: str = ""
    ) -> Subnet:
        with self._write() as repo:
            return network.create_subnet(repo, tenant, vpc_id, name, cidr, zone)

    def set_map_public_ip(self, tenant: str, subnet_id: str, value: bool) -> Subnet:
        with self._write() as repo:
            return network.set_map_public_ip(repo, tenant, subnet_id, value)

    def delete_subnet(self, tenant: str, subnet_id: str) -> None:
        with self._write() as repo:
            network.delete_subnet(repo, tenant, subnet_id)

    # -- route tables -------------------------------------------------------------------
    def create_route_table(self, tenant: str, vpc_id: str, name: str) -> RouteTable:
        with self._write() as repo:
            return routing.create_route_table(repo, tenant, vpc_id, name)

    def delete_route_table(self, tenant: str, rtb_id: str) -> None:
        with self._write() as repo:
            routing.delete_route_table(repo, tenant, rtb_id)

    def create_route(self, tenant: str, rtb_id: str, destination: str, target: str) -> Route:
        with self._write() as repo:
            return routing.create_route(repo, tenant, rtb_id, destination, target)

    def replace_route(self, tenant: str, rtb_id: str, destination: str, target: str) -> Route:
        with self._write() as repo:
            return routing.replace_route(repo, tenant, rtb_id, destination, target)

    def delete_route(self, tenant: str, rtb_id: str, destination: str) -> None:
        with self._write() as repo:
            routing.delete_route(repo, tenant, rtb_id, destination)

    def associate_route_table(self, tenant: str, rtb_id: str, subnet_id: str) -> Association:
        with self._write() as repo:
            return routing.associate_route_table(repo, tenant, rtb_id, subnet_id)

    def disassociate_route_table(self, tenant: str, association_id: str) -> None:
        """End an explicit association ("rtbassoc-..."); the subnet uses the main table."""
        with self._write() as repo:
            routing.disassociate_route_table(repo, tenant, association_id)

    def replace_route_table_association(self, tenant: str, association_id: str, rtb_id: str) -> str:
        """Point an association (the main one too) at another table; the new association id."""
        with self._write() as repo:
            return routing.replace_route_table_association(repo, tenant, association_id, rtb_id)

    def describe_route_table_views(self, tenant: str) -> tuple[routing.TableView, ...]:
        """The tenant's route tables with their associations and route states."""
        with self._read() as repo:
            repo.tenant(tenant)
            return tuple(routing.views(repo, tenant))

    # -- internet and NAT gateways, Elastic IPs -----------------------------------------
    def create_internet_gateway(self, tenant: str) -> InternetGateway:
        with self._write() as repo:
            return gateways.create_internet_gateway(repo, tenant)

    def attach_internet_gateway(self, tenant: str, igw_id: str, vpc_id: str) -> None:
        with self._write() as repo:
            gateways.attach_internet_gateway(repo, tenant, igw_id, vpc_id)

    def detach_internet_gateway(self, tenant: str, igw_id: str, vpc_id: str) -> None:
        with self._write() as repo:
            gateways.detach_internet_gateway(repo, tenant, igw_id, vpc_id)

    def delete_internet_gateway(self, tenant: str, igw_id: str) -> None:
        with self._write() as repo:
            gateways.delete_internet_gateway(repo, tenant, igw_id)

    def describe_internet_gateways(self, tenant: str) -> tuple[InternetGateway, ...]:
        return self._owned_all(InternetGateway, tenant)

    def create_nat_gateway(
        self,
        tenant: str,
        subnet_id: str,
        allocation_id: str | None,
        connectivity: str = "public",
        now: float | None = None,
    ) -> NatGateway:
        with self._write() as repo:
            return gateways.create_nat_gateway(
                repo, tenant, subnet_id, allocation_id, _now(now), connectivity
            )

    def delete_nat_gateway(self, tenant: str, nat_id: str, now: float | None = None) -> NatGateway:
        with self._write() as repo:
            return gateways.delete_nat_gateway(repo, tenant, nat_id, _now(now))

    def describe_nat_gateways(
        self, tenant: str, now: float | None = None
    ) -> tuple[NatGateway, ...]:
        with self._read() as repo:
            repo.tenant(tenant)
            return tuple(gateways.describe_nat_gateways(repo, tenant, _now(now)))

    def set_public_pool(self, cidr: str) -> None:
        """The operator's block of public addresses for Elastic IPs."""
        with self._write() as repo:
            addresses.set_public_pool(repo, cidr)

    def set_internet_node(self, node: str) -> None:
        """The gateway node whose vRouter holds the internet port ("" for none)."""
        with self._write() as repo:
            addresses.set_internet_node(repo, node)
            allocation.reconcile_all(repo)  # the gateway node hosts NAT gateways' instances

    def internet_node(self) -> str:
        with self._read() as repo:
            edge = addresses.internet_edge(repo)
            return "" if edge is None else edge.node

    def public_pool(self) -> str:
        with self._read() as repo:
            return str(addresses.public_pool(repo))

    def allocate_address(self, tenant: str) -> ElasticIp:
        with self._write() as repo:
            return addresses.allocate(repo, tenant)

    def associate_address(
        self,
        tenant: str,
        allocation_id: str,
        instance_id: str | None = None,
        interface_id: str | None = None,
        private_ip: str | None = None,
        allow_reassociation: bool | None = None,
    ) -> ElasticIp:
        with self._write() as repo:
            return addresses.associate(
                repo,
                tenant,
                allocation_id,
                instance_id,
                interface_id,
                private_ip,
                allow_reassociation,
            )

    def disassociate_address(self, tenant: str, association_id: str) -> None:
        with self._write() as repo:
            addresses.disassociate(repo, tenant, association_id)

    def release_address(self, tenant: str, allocation_id: str) -> None:
        with self._write() as repo:
            addresses.release(repo, tenant, allocation_id)

    def describe_addresses(self, tenant: str) -> tuple[ElasticIp, ...]:
        with self._read() as repo:
            repo.tenant(tenant)
            return tuple(addresses.describe(repo, tenant))

    # -- VPC peering ----------------------------------------------------------------------
    def create_vpc_peering_connection(
        self,
        tenant: str,
        vpc_id: str,
        peer_vpc_id: str,
        peer_account: str | None = None,
        now: float | None = None,
    ) -> VpcPeeringConnection:
        with self._write() as repo:
            return peering.create(repo, tenant, vpc_id, peer_vpc_id, peer_account, _now(now))

    def accept_vpc_peering_connection(
        self, tenant: str, pcx_id: str, now: float | None = None
    ) -> VpcPeeringConnection:
        with self._write() as repo:
            return peering.accept(repo, tenant, pcx_id, _now(now))

    def reject_vpc_peering_connection(
        self, tenant: str, pcx_id: str, now: float | None = None
    ) -> None:
        with self._write() as repo:
            peering.reject(repo, tenant, pcx_id, _now(now))

    def delete_vpc_peering_connection(
        self, tenant: str, pcx_id: str, now: float | None = None
    ) -> None:
        with self._write() as repo:
            peering.delete(repo, tenant, pcx_id, _now(now))

    def describe_vpc_peering_connections(
        self, tenant: str, now: float | None = None
    ) -> tuple[VpcPeeringConnection, ...]:
        """The connections the tenant is a side of (requester or accepter)."""
        with self._read() as repo:
            repo.tenant(tenant)
            return tuple(peering.describe(repo, tenant, _now(now)))

    def tenant_accounts(self) -> dict[str, str]:
        """Tenant name -> account id (OwnerId), for showing the other side of a peering."""
        with self._read() as repo:
            return {t.name: t.account for t in repo.all(Tenant)}

    # -- security groups ----------------------------------------------------------------
    def create_security_group(
        self, tenant: str, vpc_id: str, name: str, description: str
    ) -> SecurityGroup:
        with self._write() as repo:
            return security.create_group(repo, tenant, vpc_id, name, description)

    def delete_security_group(self, tenant: str, group_id: str) -> None:
        with self._write() as repo:
            security.delete_group(repo, tenant, group_id)

    def security_group_named(self, tenant: str, name: str, vpc_id: str = "") -> SecurityGroup:
        """The tenant's only group called `name`, in `vpc_id` if given (InvalidGroup.NotFound
        otherwise)."""
        with self._read() as repo:
            repo.tenant(tenant)
            return security.group_named(repo, tenant, name, vpc_id)

    def authorize_security_group(
        self, tenant: str, group_id: str, egress: bool, rules: Sequence[RuleSpec]
    ) -> tuple[SecurityGroupRule, ...]:
        """Add ingress (or egress) rules, all or none; returns them with their "sgr-" ids."""
        with self._write() as repo:
            return security.authorize(repo, tenant, group_id, egress, rules)

    def revoke_security_group(
        self, tenant: str, group_id: str, egress: bool, rules: Sequence[RuleSpec]
    ) -> tuple[SecurityGroupRule, ...]:
        """Remove the matching rules, all or none; returns the rules removed."""
        with self._write() as repo:
            return security.revoke(repo, tenant, group_id, egress, rules)

    def revoke_security_group_rules(
        self, tenant: str, group_id: str, egress: bool, rule_ids: Sequence[str]
    ) -> tuple[SecurityGroupRule, ...]:
        with self._write() as repo:
            return security.revoke_ids(repo, tenant, group_id, egress, rule_ids)

    # -- network ACLs -------------------------------------------------------------------
    def create_network_acl(self, tenant: str, vpc_id: str) -> NetworkAcl:
        with self._write() as repo:
            return acls.create_acl(repo, tenant, vpc_id)

    def delete_network_acl(self, tenant: str, acl_id: str) -> None:
        with self._write() as repo:
            acls.delete_acl(repo, tenant, acl_id)

    def create_network_acl_entry(self, tenant: str, acl_id: str, entry: EntrySpec) -> NaclEntry:
        with self._write() as repo:
            return acls.create_entry(repo, tenant, acl_id, entry)

    def replace_network_acl_entry(self, tenant: str, acl_id: str, entry: EntrySpec) -> NaclEntry:
        with self._write() as repo:
            return acls.replace_entry(repo, tenant, acl_id, entry)

    def delete_network_acl_entry(
        self, tenant: str, acl_id: str, rule_number: int, egress: bool
    ) -> None:
        with self._write() as repo:
            acls.delete_entry(repo, tenant, acl_id, rule_number, egress)

    def replace_network_acl_association(
        self, tenant: str, association_id: str, acl_id: str
    ) -> AclAssociation:
        with self._write() as repo:
            return acls.replace_association(repo, tenant, association_id, acl_id)

    # -- instances ----------------------------------------------------------------------
    def run_instance(
        self,
        tenant: str,
        subnet_id: str,
        name: str,
        node: str,
        netns: str,
        ip: str | None = None,
        allowed_addresses: Iterable[str] = (),
        ifname: str = "eth0",
    ) -> tuple[Instance, Interface]:
        with self._write() as repo:
            return compute.run_instance(
                repo, tenant, subnet_id, name, node, netns, ip, allowed_addresses, ifname
            )

    def terminate_instance(self, tenant: str, instance_id: str) -> None:
        with self._write() as repo:
            instances.terminate_instances(repo, tenant, [instance_id], time.time())

    def set_vm_netns_prefix(self, prefix: str) -> None:
        """VMs of instances launched from now on live in namespaces <prefix><instance id>."""
        with self._write() as repo:
            instances.set_netns_prefix(repo, prefix)

    def run_instances(
        self, tenant: str, launch: instances.Launch, now: float
    ) -> list[tuple[Instance, Interface]]:
        with self._write() as repo:
            return instances.run_instances(repo, tenant, launch, now)

    def stop_instances(
        self, tenant: str, ids: Iterable[str], now: float
    ) -> list[tuple[Instance, Instance]]:
        """(before, after) for each instance."""
        with self._write() as repo:
            return instances.stop_instances(repo, tenant, ids, now)

    def start_instances(
        self, tenant: str, ids: Iterable[str], now: float
    ) -> list[tuple[Instance, Instance]]:
        with self._write() as repo:
            return instances.start_instances(repo, tenant, ids, now)

    def terminate_instances(
        self, tenant: str, ids: Iterable[str], now: float
    ) -> list[tuple[Instance, Instance]]:
        with self._write() as repo:
            return instances.terminate_instances(repo, tenant, ids, now)

    def reboot_instances(self, tenant: str, ids: Iterable[str], now: float) -> None:
        with self._read() as repo:
            repo.tenant(tenant)
            instances.reboot_instances(repo, tenant, ids, now)

    def modify_instance(
        self,
        tenant: str,
        instance_id: str,
        now: float,
        *,
        instance_type: str | None = None,
        source_check: bool | None = None,
        groups: Iterable[str] | None = None,
    ) -> Instance:
        with self._write() as repo:
            return instances.modify_instance(
                repo,
                tenant,
                instance_id,
                now,
                instance_type=instance_type,
                source_check=source_check,
                groups=groups,
            )

    def instance_records(self, tenant: str, now: float) -> list[instances.InstanceRecord]:
        """Every instance still describable (terminated ones for an hour), with its
        interfaces and the nodes of its VPC, from one read."""
        with self._read() as repo:
            repo.tenant(tenant)
            return instances.describe(repo, tenant, now)

    # -- network interfaces ---------------------------------------------------------------
    def create_interface(
        self,
        tenant: str,
        subnet_id: str,
        ip: str | None = None,
        groups: Iterable[str] = (),
        description: str = "",
        secondary_ips: Sequence[str] = (),
        secondary_count: int = 0,
    ) -> Interface:
        with self._write() as repo:
            return interfaces.create_interface(
                repo, tenant, subnet_id, ip, groups, description, secondary_ips, secondary_count
            )

    def delete_interface(self, tenant: str, interface_id: str) -> None:
        with self._write() as repo:
            interfaces.delete_interface(repo, tenant, interface_id)

    def attach_interface(
        self,
        tenant: str,
        interface_id: str,
        instance_id: str,
        device_index: int,
        now: float = 0.0,
    ) -> Interface:
        with self._write() as repo:
            return interfaces.attach_interface(
                repo, tenant, interface_id, instance_id, device_index, now
            )

    def detach_interface(self, tenant: str, attachment_id: str) -> Interface:
        with self._write() as repo:
            return interfaces.detach_interface(repo, tenant, attachment_id)

    def modify_interface(
        self,
        tenant: str,
        interface_id: str,
        *,
        source_check: bool | None = None,
        groups: Iterable[str] | None = None,
        description: str | None = None,
        attachment: tuple[str, bool] | None = None,
    ) -> Interface:
        with self._write() as repo:
            return interfaces.modify_interface(
                repo,
                tenant,
                interface_id,
                source_check=source_check,
                groups=groups,
                description=description,
                attachment=attachment,
            )

    def assign_private_ips(
        self,
        tenant: str,
        interface_id: str,
        ips: Sequence[str] = (),
        count: int = 0,
        allow_reassignment: bool = False,
    ) -> tuple[str, ...]:
        with self._write() as repo:
            return interfaces.assign_private_ips(
                repo, tenant, interface_id, ips, count, allow_reassignment
            )

    def unassign_private_ips(self, tenant: str, interface_id: str, ips: Sequence[str]) -> None:
        with self._write() as repo:
            interfaces.unassign_private_ips(repo, tenant, interface_id, ips)

    def interface_records(self, tenant: str) -> list[tuple[Interface, Subnet]]:
        """Every interface of the tenant with its subnet, from one read."""
        with self._read() as repo:
            repo.tenant(tenant)
            subnets = {s.id: s for s in repo.find(Subnet, "tenant", tenant)}
            return [
                (i, subnets[i.subnet])
                for i in repo.find(Interface, "tenant", tenant)
                if i.subnet in subnets
            ]

    def learn_address(self, node: str, interface_id: str, ip: str) -> bool:
        """An agent reports a gratuitous ARP; True when `ip` now belongs to the interface."""
        with self._write() as repo:
            return compute.learn_address(repo, node, interface_id, ip)

    # -- tags and client tokens ------------------------------------------------------------
    def create_tags(self, tenant: str, ids: list[str], pairs: list[tuple[str, str]]) -> None:
        with self._write() as repo:
            tags.create_tags(repo, tenant, ids, pairs)

    def delete_tags(self, tenant: str, ids: list[str], pairs: list[tuple[str, str | None]]) -> None:
        with self._write() as repo:
            tags.delete_tags(repo, tenant, ids, pairs)

    def tags_of(self, tenant: str, resource_id: str) -> list[tuple[str, str]]:
        with self._read() as repo:
            return tags.tags_of(repo, tenant, resource_id)

    def all_tags(self, tenant: str) -> dict[str, list[tuple[str, str]]]:
        """Resource id -> tags, for each of the tenant's tagged resources."""
        with self._read() as repo:
            return tags.all_tags(repo, tenant)

    def recall_token(self, tenant: str, action: str, token: str) -> tuple[str, str] | None:
        with self._read() as repo:
            return tags.recall_token(repo, tenant, action, token)

    def remember_token(
        self, tenant: str, action: str, token: str, digest: str, body: str, now: float
    ) -> None:
        with self._write() as repo:
            tags.remember_token(repo, tenant, action, token, digest, body, now)

    # -- reads --------------------------------------------------------------------------
    def revision(self) -> int:
        """The latest committed revision; inside a batch, the one the batch started from
        (a nested store transaction would fail, and the batch has not committed yet)."""
        with self._read() as repo:
            return repo.tx.revision

    def snapshot(self) -> Snapshot:
        """Everything at one revision, each kind sorted by id: the compiler's input."""
        with self._read() as repo:
            return Snapshot(
                revision=repo.tx.revision,
                fabric_mtu=admin.fabric_mtu(repo),
                nodes=tuple(repo.all(ComputeNode)),
                tenants=tuple(repo.all(Tenant)),
                vpcs=tuple(repo.all(Vpc)),
                subnets=tuple(repo.all(Subnet)),
                route_tables=tuple(repo.all(RouteTable)),
                associations=tuple(repo.all(Association)),
                instances=tuple(i for i in repo.all(Instance) if i.state != "terminated"),
                interfaces=tuple(repo.all(Interface)),
                address_owners=tuple(repo.all(AddressOwner)),
                allocations=tuple(repo.all(NodeAllocation)),
                security_groups=tuple(repo.all(SecurityGroup)),
                network_acls=tuple(repo.all(NetworkAcl)),
                acl_associations=tuple(repo.all(AclAssociation)),
                peerings=tuple(repo.all(VpcPeeringConnection)),
                internet=addresses.internet_edge(repo),
                internet_gateways=tuple(repo.all(InternetGateway)),
                elastic_ips=tuple(addresses.live(repo, e) for e in repo.all(ElasticIp)),
                nat_gateways=tuple(repo.all(NatGateway)),
            )

    def _owned_all(self, cls: type[T], tenant: str) -> tuple[T, ...]:
        with self._read() as repo:
            repo.tenant(tenant)
            return tuple(repo.find(cls, "tenant", tenant))

    def describe_vpcs(self, tenant: str) -> tuple[Vpc, ...]:
        return self._owned_all(Vpc, tenant)

    def describe_subnets(self, tenant: str) -> tuple[Subnet, ...]:
        return self._owned_all(Subnet, tenant)

    def describe_route_tables(self, tenant: str) -> tuple[RouteTable, ...]:
        return self._owned_all(RouteTable, tenant)

    def describe_associations(self, tenant: str) -> tuple[Association, ...]:
        return self._owned_all(Association, tenant)

    def describe_instances(self, tenant: str) -> tuple[Instance, ...]:
        """The tenant's instances that are not terminated."""
        return tuple(i for i in self._owned_all(Instance, tenant) if i.state != "terminated")

    def describe_interfaces(self, tenant: str) -> tuple[Interface, ...]:
        return self._owned_all(Interface, tenant)

    def describe_address_owners(self, tenant: str) -> tuple[AddressOwner, ...]:
        return self._owned_all(AddressOwner, tenant)

    def describe_security_groups(self, tenant: str) -> tuple[SecurityGroup, ...]:
        return self._owned_all(SecurityGroup, tenant)

    def describe_network_acls(self, tenant: str) -> tuple[NetworkAcl, ...]:
        return self._owned_all(NetworkAcl, tenant)

    def describe_acl_associations(self, tenant: str) -> tuple[AclAssociation, ...]:
        return self._owned_all(AclAssociation, tenant)

    def tenant(self, name: str) -> Tenant:
        with self._read() as repo:
            return repo.tenant(name)

    def describe_nodes(self) -> tuple[ComputeNode, ...]:
        with self._read() as repo:
            return tuple(repo.all(ComputeNode))
