"""The controller's loop: every store revision is compiled for all nodes and published.

Agents keep their state while the controller is away and resync when it is back, so stopping
or restarting it never touches forwarding. The nodes' secrets are read from the store with
each revision, so a node registered (or a secret reissued) through the service layer is
recognised without a restart.
"""

import logging
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass

from openvpc.api.app import DEFAULT_REGION, ApiApp
from openvpc.api.server import ApiServer
from openvpc.compiler.compile import compile_all
from openvpc.controller.runtime import HubRuntime
from openvpc.credentials import CredentialError, read_secret_file
from openvpc.model.nodeconfig import NodeConfig
from openvpc.model.resources import Snapshot
from openvpc.process import private_umask, setup_logging, stop_on_signals
from openvpc.service import Service
from openvpc.southbound import wire
from openvpc.southbound.server import SouthboundServer, TlsFiles
from openvpc.store import Store, StoreError

log = logging.getLogger("openvpc.controller")

WAIT = 0.5  # how long one wait for a store change lasts before the stop flag is checked
Compile = Callable[[Snapshot], dict[str, NodeConfig]]


@dataclass(frozen=True, slots=True)
class ApiOptions:
    """Where and how the controller serves the EC2 API."""

    listen: str  # host:port
    region: str = DEFAULT_REGION
    unknown_keys_as: str | None = None  # local development only: see api.sigv4.verify
    default_encap: str = "vxlan"


class Controller:
    """Owns the store, the service, the southbound server and the API of one controller
    process."""

    def __init__(
        self,
        db: str,
        listen: str,
        compile_fn: Compile = compile_all,
        operator_secret: bytes | None = None,
        tls: TlsFiles | None = None,
        api: ApiOptions | None = None,
    ) -> None:
        self.store = Store(db)
        self.service = Service(self.store)
        self.compile = compile_fn
        self.server = SouthboundServer(
            listen,
            self.service.learn_address,
            operator_secret=operator_secret,
            tls=tls,
            store_revision=self.service.revision,
        )
        # what the nodes applied and which VMs they report ready (the API reads it)
        self.runtime = HubRuntime(self.server.hub)
        self.api: ApiServer | None = None
        if api is not None:
            if api.unknown_keys_as is not None:
                self.service.create_tenant(api.unknown_keys_as)
            app = ApiApp(
                self.service, self.runtime, api.region, api.unknown_keys_as, api.default_encap
            )
            self.api = ApiServer(app, api.listen)
        self.published: int | None = None  # the revision last compiled and handed out
        self.serving = threading.Event()  # set once listening with the first revision published

    def sync(self) -> int:
        """Compile the current revision and publish it; returns that revision.

        A compiler failure is logged and the last good configs stay published.
        """
        self.server.hub.set_credentials(self.service.node_secret_hashes())
        snapshot = self.service.snapshot()
        try:
            configs = self.compile(snapshot)
        except Exception:  # a bug in the compiler must not take the southbound down
            log.exception("revision %d does not compile; keeping the last one", snapshot.revision)
            return snapshot.revision
        self.server.publish(snapshot.revision, configs)
        self.published = snapshot.revision
        return snapshot.revision

    def run(self, stop: threading.Event) -> None:
        """Serve until `stop` is set, then stop the server (its socket file goes too)."""
        self.server.start()
        try:
            revision = self.sync()
            if self.api is not None:
                self.api.start()
            self.serving.set()
            while not stop.is_set():
                current = self.store.wait_for_change(revision, WAIT)
                if current != revision:
                    revision = self.sync()
        finally:
            if self.api is not None:
                self.api.stop()
            self.server.stop()
            self.store.close()
            log.info("controller stopped")


def run_controller(
    db: str,
    listen: str,
    verbose: bool = False,
    operator_secret_file: str | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    api: ApiOptions | None = None,
) -> int:
    """The `openvpc controller` command: 0 after SIGTERM/SIGINT, 1 when it cannot start."""
    setup_logging(verbose)
    private_umask()
    stop = threading.Event()
    stop_on_signals(stop)
    try:
        wire.grpc_target(listen)
        operator = read_secret_file(operator_secret_file) if operator_secret_file else None
        tls = _tls_files(tls_cert, tls_key)
    except (ValueError, OSError) as e:  # CredentialError is a ValueError
        log.error("controller: %s", e)
        return 1
    if operator is None:
        log.warning("no --operator-secret-file: Status calls are refused")
    try:
        controller = Controller(db, listen, operator_secret=operator, tls=tls, api=api)
    except (StoreError, OSError, sqlite3.Error) as e:
        log.error("controller: store %s: %s", db, e)
        return 1
    try:
        controller.run(stop)
    except OSError as e:  # the listen address is taken or unusable
        log.error("controller: %s", e)
        return 1
    return 0


def _tls_files(cert: str | None, key: str | None) -> TlsFiles | None:
    """Both files or neither; read now so that a bad path stops the start."""
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise CredentialError("TLS needs both --tls-cert and --tls-key")
    with open(cert, "rb") as c, open(key, "rb") as k:
        return TlsFiles(c.read(), k.read())
