"""What every openvpc process shares: logging on stderr and a clean stop on SIGTERM/SIGINT."""

import logging
import signal
import sys
import threading
from types import FrameType


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )


def stop_on_signals(stop: threading.Event) -> None:
    """Set `stop` on SIGTERM or SIGINT (call from the main thread)."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        logging.getLogger("openvpc").info("%s: stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
