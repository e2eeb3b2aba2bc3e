"""A real EC2 API server on loopback over a fresh store, and boto3 clients signed with real
tenant keys: the `api` fixture (loaded as a pytest plugin, see pyproject). The nodes are
simulated: every node applies each revision at once, and a VM exists for every interface
compiled onto a node."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from openvpc.api.app import ApiApp
from openvpc.api.instant import InstantRuntime
from openvpc.api.server import ApiServer
from openvpc.service import Service
from openvpc.store import Store

REGION = "us-east-1"
NODES = {
    "node1": ("172.16.1.10", ""),
    "node2": ("172.16.2.11", ""),
    "node3": ("172.16.3.12", "us-east-1b"),
}
TENANTS = ("alice", "bob")


@dataclass
class Api:
    service: Service
    server: ApiServer
    keys: dict[str, tuple[str, str]] = field(default_factory=dict)

    @property
    def endpoint(self) -> str:
        host, port = self.server.address
        return f"http://{host}:{port}"

    def ec2(self, tenant: str, **config: Any) -> Any:
        return self.client(tenant, "ec2", **config)

    def client(self, tenant: str, service_name: str, **config: Any) -> Any:
        """A client signing with the tenant's key. Clients come from one shared session, which
        loads each service's model once (a session per client reloads EC2's every time)."""
        key, secret = self.keys[tenant]
        with _SESSION_LOCK:  # making clients from one session is not thread-safe
            return _SESSION.client(
                service_name,
                endpoint_url=self.endpoint,
                region_name=REGION,
                aws_access_key_id=key,
                aws_secret_access_key=secret,
                config=Config(retries={"max_attempts": 1}, **config),
            )


_SESSION = boto3.Session()
_SESSION_LOCK = threading.Lock()


def start_api(
    path: Path, unknown_keys_as: str | None = None, clock: Callable[[], float] = time.time
) -> Api:
    service = Service(Store(path))
    for name, (ip, zone) in NODES.items():
        service.register_node(name, ip, zone)
    api = Api(
        service,
        ApiServer(
            ApiApp(service, InstantRuntime(service), REGION, unknown_keys_as, clock=clock),
            "127.0.0.1:0",
        ),
    )
    for tenant in TENANTS:
        service.create_tenant(tenant)
        api.keys[tenant] = service.create_tenant_key(tenant)
    api.server.start()
    return api


def stop_api(api: Api) -> None:
    api.server.stop()
    api.service.store.close()


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    server = start_api(tmp_path / "openvpc.db")
    try:
        yield server
    finally:
        stop_api(server)
