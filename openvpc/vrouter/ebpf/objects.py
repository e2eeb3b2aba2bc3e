"""Where the built BPF objects are, and whether this kernel can run the eBPF datapath."""

import errno
import os
import socket
from pathlib import Path

from openvpc.vrouter.ebpf import libbpf

BPF_DIR = Path(__file__).resolve().parent.parent / "bpf"
_TCX_NEXT = -1  # a tcx verdict that leaves the packet to whatever follows


def datapath_object() -> Path:
    """The compiled datapath (`make bpf` builds it next to its sources)."""
    path = BPF_DIR / "datapath.bpf.o"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is not built: run `make bpf` (needs clang, libbpf-dev)")
    return path


def unsupported_reason() -> str | None:
    """None when this process can load tc programs and attach them with tcx links (tried on
    this namespace's loopback with a program that leaves every packet alone, then detached);
    otherwise why not."""
    try:
        prog_fd = libbpf.load_trivial_program(_TCX_NEXT)
    except OSError as exc:  # no libbpf.so.1 (OSError from ctypes) or the BPF syscall refused
        return f"cannot load a BPF program: {exc}"
    try:
        ifindex = socket.if_nametoindex("lo")
        libbpf.TcxLink.attach(libbpf.BpfProgram("ov_probe", prog_fd), ifindex, "ingress").close()
    except OSError as exc:
        if exc.errno == errno.EINVAL:
            return "this kernel has no tcx (Linux 6.6 or later is needed)"
        return f"cannot attach a tcx link: {exc}"
    finally:
        os.close(prog_fd)
    return None


def ebpf_supported() -> bool:
    return unsupported_reason() is None
