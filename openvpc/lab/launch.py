"""Start a lab process only once `up` has recorded it:
`python -m openvpc.lab.launch [--status FILE] CMD...`.

It waits for one byte on stdin (a pipe from the lab), then puts /dev/null on stdin. With
--status it stays as the daemon's supervisor (openvpc.lab.supervisor: restarts, status file);
without, it execs CMD, keeping its pid. If the lab dies before recording the pid, the pipe
closes empty and the command never starts, so a crash cannot leave a process no record names.
"""

import os
import sys
from pathlib import Path


def main(argv: list[str]) -> None:
    status: Path | None = None
    if argv[:1] == ["--status"] and len(argv) >= 2:
        status, argv = Path(argv[1]), argv[2:]
    if not argv:
        print("usage: python -m openvpc.lab.launch [--status FILE] CMD [ARG...]", file=sys.stderr)
        sys.exit(2)
    go = os.read(0, 1)
    if go != b"g":
        sys.exit(0)  # the lab went away before it recorded us
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    if status is not None:
        from openvpc.lab.supervisor import supervise

        sys.exit(supervise(argv, status))
    try:
        os.execvp(argv[0], argv)
    except OSError as exc:
        print(f"launch {argv[0]}: {exc.strerror}", file=sys.stderr)
        sys.exit(127)


if __name__ == "__main__":
    main(sys.argv[1:])
