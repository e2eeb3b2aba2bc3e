"""What every openvpc process shares: logging on stderr, a clean stop on SIGTERM/SIGINT, a
root-only umask, and claiming the path of the unix socket it listens on."""

import logging
import os
import signal
import socket
import stat
import sys
import threading
from types import FrameType


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )


def private_umask() -> None:
    """Whatever a daemon creates (sockets, the store, state files) is its owner's only."""
    os.umask(0o077)


def stop_on_signals(stop: threading.Event) -> None:
    """Set `stop` on SIGTERM or SIGINT (call from the main thread)."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        logging.getLogger("openvpc").info("%s: stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def claim_socket_path(path: str, what: str) -> None:
    """Remove a socket file a crashed `what` left; raise OSError if a live one listens there."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise OSError(f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(path)
    except OSError:
        os.unlink(path)
        return
    finally:
        probe.close()
    raise OSError(f"another {what} is listening on {path}")
