"""A small typed ctypes binding over the system libbpf.so.1 (Debian's 1.1.2): load an object,
read and write its maps, run a program on a frame, and attach it with an unpinned tcx link.
libbpf's log (the verifier's included) goes to the `logging` logger of this module.
"""

import ctypes
import errno
import functools
import logging
import os
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

log = logging.getLogger(__name__)

# map types (uapi enum bpf_map_type) the vRouter uses
MAP_HASH = 1
MAP_ARRAY = 2
MAP_PERCPU_HASH = 5
MAP_PERCPU_ARRAY = 6
MAP_LRU_HASH = 9
MAP_LPM_TRIE = 11
MAP_LRU_PERCPU_HASH = 10
PERCPU_MAP_TYPES = frozenset({MAP_PERCPU_HASH, MAP_PERCPU_ARRAY, MAP_LRU_PERCPU_HASH})

# attach types newer than Debian's uapi headers and libbpf 1.1.2 (kernel 6.6+)
BPF_TCX_INGRESS = 46
BPF_TCX_EGRESS = 47
BPF_PROG_TYPE_SCHED_CLS = 3

SKB_CTX_SIZE = 192  # sizeof(struct __sk_buff)
_SKB_MARK, _SKB_INGRESS_IFINDEX, _SKB_IFINDEX = 8, 36, 40  # offsets in struct __sk_buff
_BATCH = 256  # entries per batch lookup


class BpfError(OSError):
    """A libbpf call failed: errno and what we were doing."""

    def __init__(self, err: int, what: str) -> None:
        super().__init__(err, f"{what}: {_strerror(err)}")
        self.what = what


def _strerror(err: int) -> str:
    if err < 4000:  # libbpf's own codes (LIBBPF_ERRNO__*) start at 4000
        return os.strerror(err)
    buf = ctypes.create_string_buffer(128)
    _lib().strerror(err, buf, len(buf))
    return buf.value.decode(errors="replace")


class _OpenOpts(ctypes.Structure):
    # the leading fields of struct bpf_object_open_opts; `sz` tells libbpf where we stop
    _fields_ = (
        ("sz", ctypes.c_size_t),
        ("object_name", ctypes.c_char_p),
        ("relaxed_maps", ctypes.c_bool),
        ("pin_root_path", ctypes.c_char_p),
    )


class _TestRunOpts(ctypes.Structure):
    _fields_ = (
        ("sz", ctypes.c_size_t),
        ("data_in", ctypes.c_void_p),
        ("data_out", ctypes.c_void_p),
        ("data_size_in", ctypes.c_uint32),
        ("data_size_out", ctypes.c_uint32),
        ("ctx_in", ctypes.c_void_p),
        ("ctx_out", ctypes.c_void_p),
        ("ctx_size_in", ctypes.c_uint32),
        ("ctx_size_out", ctypes.c_uint32),
        ("retval", ctypes.c_uint32),
        ("repeat", ctypes.c_int),
        ("duration", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("cpu", ctypes.c_uint32),
        ("batch_size", ctypes.c_uint32),
    )


class _BatchOpts(ctypes.Structure):
    _fields_ = (
        ("sz", ctypes.c_size_t),
        ("elem_flags", ctypes.c_uint64),
        ("flags", ctypes.c_uint64),
    )


_P = ctypes.c_void_p
_PRINT_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
_LEVELS = (logging.WARNING, logging.INFO, logging.DEBUG)  # enum libbpf_print_level
_LOG_BUF_SIZE = 1 << 20  # a verifier log is one message


class _Lib:
    """Every foreign function, declared once; loaded on first use (imports need no libbpf)."""

    def __init__(self) -> None:
        lib = ctypes.CDLL("libbpf.so.1", use_errno=True)
        u32, i32, u64, sz = ctypes.c_uint32, ctypes.c_int, ctypes.c_uint64, ctypes.c_size_t

        def fn(name: str, restype: Any, *argtypes: Any) -> Any:
            f = getattr(lib, name)
            f.restype, f.argtypes = restype, list(argtypes)
            return f

        self.open_file = fn("bpf_object__open_file", _P, ctypes.c_char_p, ctypes.POINTER(_OpenOpts))
        self.load = fn("bpf_object__load", i32, _P)
        self.close = fn("bpf_object__close", None, _P)
        self.find_map = fn("bpf_object__find_map_by_name", _P, _P, ctypes.c_char_p)
        self.find_program = fn("bpf_object__find_program_by_name", _P, _P, ctypes.c_char_p)
        self.set_max_entries = fn("bpf_map__set_max_entries", i32, _P, u32)
        self.map_fd = fn("bpf_map__fd", i32, _P)
        self.map_type = fn("bpf_map__type", i32, _P)
        self.map_key_size = fn("bpf_map__key_size", u32, _P)
        self.map_value_size = fn("bpf_map__value_size", u32, _P)
        self.map_max_entries = fn("bpf_map__max_entries", u32, _P)
        self.program_fd = fn("bpf_program__fd", i32, _P)
        self.update = fn("bpf_map_update_elem", i32, i32, _P, _P, u64)
        self.lookup = fn("bpf_map_lookup_elem", i32, i32, _P, _P)
        self.delete = fn("bpf_map_delete_elem", i32, i32, _P)
        self.next_key = fn("bpf_map_get_next_key", i32, i32, _P, _P)
        self.lookup_batch = fn(
            "bpf_map_lookup_batch", i32, i32, _P, _P, _P, _P, ctypes.POINTER(u32), _P
        )
        self.test_run = fn("bpf_prog_test_run_opts", i32, i32, ctypes.POINTER(_TestRunOpts))
        self.link_create = fn("bpf_link_create", i32, i32, i32, i32, _P)
        self.prog_load = fn("bpf_prog_load", i32, i32, ctypes.c_char_p, ctypes.c_char_p, _P, sz, _P)
        self.obj_info = fn("bpf_obj_get_info_by_fd", i32, i32, _P, ctypes.POINTER(u32))
        self.num_possible_cpus = fn("libbpf_num_possible_cpus", i32)
        self.set_print = fn("libbpf_set_print", _P, _PRINT_FN)
        self.strerror = fn("libbpf_strerror", i32, i32, ctypes.c_char_p, sz)
        libc = ctypes.CDLL(None)
        self.vsnprintf = libc.vsnprintf
        self.vsnprintf.restype = i32
        self.vsnprintf.argtypes = [ctypes.c_char_p, sz, ctypes.c_char_p, _P]
        self._log_buf = ctypes.create_string_buffer(_LOG_BUF_SIZE)
        self._log_lock = threading.Lock()
        self.captured = threading.local()  # .warnings: this thread's, while load runs
        self._printer = _PRINT_FN(self._print)  # kept alive as long as libbpf may call it
        self.set_print(self._printer)

    def _print(self, level: int, fmt: bytes, args: int | None) -> int:
        pylevel = _LEVELS[level] if 0 <= level < len(_LEVELS) else logging.DEBUG
        warnings: list[str] | None = getattr(self.captured, "warnings", None)
        if not log.isEnabledFor(pylevel) and (warnings is None or pylevel < logging.WARNING):
            return 0
        with self._log_lock:
            self.vsnprintf(self._log_buf, _LOG_BUF_SIZE, fmt, args)
            text = self._log_buf.value.decode(errors="replace").rstrip("\n")
        log.log(pylevel, "%s", text)
        if warnings is not None and pylevel >= logging.WARNING:
            warnings.append(text)
        return 0


@functools.cache
def _lib() -> _Lib:
    return _Lib()


def _check(rc: int, what: str) -> int:
    """libbpf 1.x returns -errno from its int APIs."""
    if rc < 0:
        raise BpfError(-rc, what)
    return rc


def _obj_id(fd: int, what: str) -> int:
    """The kernel id of a program, map or link (`bpftool ... show` lists it): the u32 at
    offset 4 of every bpf_*_info struct."""
    info = ctypes.create_string_buffer(8)
    size = ctypes.c_uint32(8)
    _check(_lib().obj_info(fd, info, ctypes.byref(size)), f"info of {what}")
    return int(struct.unpack_from("=I", info.raw, 4)[0])


def num_possible_cpus() -> int:
    return _check(_lib().num_possible_cpus(), "libbpf_num_possible_cpus")


_outputs = threading.local()


def _output_buffer(size: int) -> Any:
    """This thread's test_run output buffer (allocating and zeroing 64 KiB per run would
    cost a quarter of a run)."""
    buf = getattr(_outputs, "buf", None)
    if buf is None or len(buf) < size:
        buf = _outputs.buf = ctypes.create_string_buffer(size)
    return buf


@dataclass(frozen=True)
class TestRun:
    """What BPF_PROG_TEST_RUN returned: the verdict, the frame as the program left it."""

    __test__ = False  # not a pytest class
    retval: int
    data: bytes
    duration_ns: int


class BpfProgram:
    """A loaded program of a BpfObject (its fd lives as long as the object)."""

    def __init__(self, name: str, fd: int) -> None:
        self.name, self.fd = name, fd

    @property
    def id(self) -> int:
        return _obj_id(self.fd, f"program {self.name}")

    def test_run(
        self,
        data: bytes,
        *,
        ifindex: int = 0,
        ingress_ifindex: int = 0,
        mark: int = 0,
        repeat: int = 1,
        data_size_out: int = 65535 + 256,
    ) -> TestRun:
        """Run the program once (or `repeat` times) on `data` as if it arrived on `ifindex`,
        which must exist in the calling thread's network namespace (0: its loopback)."""
        if not 14 <= len(data) <= 0xFFFFFFFF:
            raise ValueError(f"test_run of {self.name}: a frame of {len(data)} bytes")
        if repeat < 1 or data_size_out < 1:
            raise ValueError(f"test_run of {self.name}: repeat and data_size_out must be >= 1")
        ctx = bytearray(SKB_CTX_SIZE)
        struct.pack_into("=I", ctx, _SKB_MARK, mark)
        struct.pack_into("=I", ctx, _SKB_INGRESS_IFINDEX, ingress_ifindex)
        struct.pack_into("=I", ctx, _SKB_IFINDEX, ifindex)
        ctx_in = (ctypes.c_char * SKB_CTX_SIZE).from_buffer(ctx)
        data_in = ctypes.create_string_buffer(data, len(data))
        data_out = _output_buffer(data_size_out)
        opts = _TestRunOpts(
            sz=ctypes.sizeof(_TestRunOpts),
            data_in=ctypes.cast(data_in, _P),
            data_out=ctypes.cast(data_out, _P),
            data_size_in=len(data),
            data_size_out=data_size_out,
            ctx_in=ctypes.cast(ctx_in, _P),
            ctx_size_in=SKB_CTX_SIZE,
            repeat=repeat,
        )
        rc = _lib().test_run(self.fd, ctypes.byref(opts))
        if rc == -errno.ENOSPC:
            raise BpfError(-rc, f"test_run of {self.name}: output over {data_size_out} bytes")
        _check(rc, f"test_run of {self.name}")
        return TestRun(opts.retval, ctypes.string_at(data_out, opts.data_size_out), opts.duration)


class BpfMap:
    """A map of a loaded BpfObject. Keys and values are bytes of exactly the map's sizes;
    per-CPU maps hold one value per possible CPU (see lookup_percpu)."""

    def __init__(
        self, name: str, fd: int, key_size: int, value_size: int, max_entries: int, type: int
    ) -> None:
        self.name, self.fd, self.type = name, fd, type
        self.key_size, self.value_size, self.max_entries = key_size, value_size, max_entries
        self.percpu = type in PERCPU_MAP_TYPES
        self._slot = (value_size + 7) // 8 * 8  # the kernel's per-CPU stride

    def _key(self, key: bytes) -> bytes:
        if len(key) != self.key_size:
            raise ValueError(f"map {self.name}: key of {len(key)} bytes, not {self.key_size}")
        return key

    def _buffer_size(self) -> int:
        return self._slot * num_possible_cpus() if self.percpu else self.value_size

    def update(self, key: bytes, value: bytes) -> None:
        """Create or replace (BPF_ANY). On a per-CPU map a value of value_size is written to
        every CPU; a whole per-CPU buffer (possible CPUs x value_size rounded to 8) is as is."""
        self._key(key)
        if self.percpu and len(value) == self.value_size:
            value = value.ljust(self._slot, b"\0") * num_possible_cpus()
        elif len(value) != (self._buffer_size() if self.percpu else self.value_size):
            raise ValueError(f"map {self.name}: value of {len(value)} bytes, not {self.value_size}")
        _check(_lib().update(self.fd, key, value, 0), f"update of map {self.name}")

    def _lookup_raw(self, key: bytes) -> bytes | None:
        self._key(key)
        out = ctypes.create_string_buffer(self._buffer_size())
        rc = _lib().lookup(self.fd, key, out)
        if rc == -errno.ENOENT:
            return None
        _check(rc, f"lookup in map {self.name}")
        return out.raw

    def lookup(self, key: bytes) -> bytes | None:
        """The value, or None when absent. Per-CPU maps: use lookup_percpu."""
        if self.percpu:
            raise ValueError(f"map {self.name} is per-CPU: use lookup_percpu")
        return self._lookup_raw(key)

    def _split(self, raw: bytes) -> list[bytes]:
        return [raw[i : i + self.value_size] for i in range(0, len(raw), self._slot)]

    def lookup_percpu(self, key: bytes) -> list[bytes] | None:
        """One value per possible CPU, or None when absent."""
        if not self.percpu:
            raise ValueError(f"map {self.name} is not per-CPU: use lookup")
        raw = self._lookup_raw(key)
        return None if raw is None else self._split(raw)

    def delete(self, key: bytes) -> bool:
        """False when the key was absent."""
        rc = _lib().delete(self.fd, self._key(key))
        if rc == -errno.ENOENT:
            return False
        _check(rc, f"delete from map {self.name}")
        return True

    def keys(self) -> Iterator[bytes]:
        """Every key (at most max_entries: a map changing meanwhile cannot loop us)."""
        key = ctypes.create_string_buffer(self.key_size)
        nxt = ctypes.create_string_buffer(self.key_size)
        rc = _lib().next_key(self.fd, None, nxt)
        for _ in range(self.max_entries):
            if rc == -errno.ENOENT:
                return
            _check(rc, f"next key of map {self.name}")
            yield nxt.raw
            ctypes.memmove(key, nxt, self.key_size)
            rc = _lib().next_key(self.fd, key, nxt)

    def _raw_items(self) -> Iterator[tuple[bytes, bytes]]:
        try:
            yield from self._batch_items()
        except _NoBatch:
            for key in self.keys():
                value = self._lookup_raw(key)
                if value is not None:
                    yield key, value

    def _batch_items(self) -> Iterator[tuple[bytes, bytes]]:
        vsize = self._buffer_size()
        count_max = min(_BATCH, max(self.max_entries, 1))
        token_in = ctypes.create_string_buffer(max(self.key_size, 8))
        token_out = ctypes.create_string_buffer(max(self.key_size, 8))
        opts = _BatchOpts(sz=ctypes.sizeof(_BatchOpts))
        first = True
        for _ in range(self.max_entries + 64):  # every call yields or doubles count_max
            keys = ctypes.create_string_buffer(self.key_size * count_max)
            values = ctypes.create_string_buffer(vsize * count_max)
            count = ctypes.c_uint32(count_max)
            rc = _lib().lookup_batch(
                self.fd,
                None if first else token_in,
                token_out,
                keys,
                values,
                ctypes.byref(count),
                ctypes.byref(opts),
            )
            if rc < 0 and first and -rc in (errno.EINVAL, errno.EOPNOTSUPP, 524):  # ENOTSUPP
                raise _NoBatch
            if rc == -errno.ENOSPC and count_max < self.max_entries:
                count_max *= 2  # a hash bucket larger than the batch
                continue
            if rc < 0 and rc != -errno.ENOENT:
                _check(rc, f"batch lookup in map {self.name}")
            k, v = keys.raw, values.raw
            for i in range(count.value):
                ks, vs = i * self.key_size, i * vsize
                yield k[ks : ks + self.key_size], v[vs : vs + vsize]
            if rc == -errno.ENOENT:  # that was the last batch
                return
            first = False
            ctypes.memmove(token_in, token_out, len(token_out))

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        """Every (key, value), by batches where the map type allows. Per-CPU: items_percpu."""
        if self.percpu:
            raise ValueError(f"map {self.name} is per-CPU: use items_percpu")
        return self._raw_items()

    def items_percpu(self) -> Iterator[tuple[bytes, list[bytes]]]:
        if not self.percpu:
            raise ValueError(f"map {self.name} is not per-CPU: use items")
        for key, raw in self._raw_items():
            yield key, self._split(raw)


class _NoBatch(Exception):
    """The map type has no batch operations."""


def _verifier_says(warnings: list[str]) -> str:
    """The verifier's reason (the last lines of its log before its statistics), if any."""
    for text in reversed(warnings):
        if "-- BEGIN PROG LOAD LOG --" in text:
            skip = ("processed", "--")
            lines = [ln for ln in text.splitlines() if ln and not ln.startswith(skip)]
            return " (verifier: " + " / ".join(lines[-2:]) + ")"
    return ""


class BpfObject:
    """A loaded BPF ELF object; close() (or leaving the `with`) frees programs and maps."""

    def __init__(self, handle: int, path: Path) -> None:
        self._handle: int | None = handle
        self.path = path

    @classmethod
    def open(cls, path: Path, *, max_entries: dict[str, int] | None = None) -> "BpfObject":
        """Open and load `path`; `max_entries` resizes maps before the load."""
        lib = _lib()
        opts = _OpenOpts(sz=ctypes.sizeof(_OpenOpts), object_name=path.stem.encode())
        handle = lib.open_file(os.fsencode(path), ctypes.byref(opts))
        if not handle:
            raise BpfError(ctypes.get_errno() or errno.EINVAL, f"open {path}")
        obj = cls(handle, path)
        try:
            for name, entries in (max_entries or {}).items():
                m = lib.find_map(handle, name.encode())
                if not m:
                    raise BpfError(errno.ENOENT, f"map {name} in {path}")
                _check(lib.set_max_entries(m, entries), f"max_entries {entries} of map {name}")
            lib.captured.warnings = []
            rc = lib.load(handle)
            if rc < 0:
                raise BpfError(-rc, f"load {path}{_verifier_says(lib.captured.warnings)}")
        except BaseException:
            obj.close()
            raise
        finally:
            lib.captured.warnings = None
        return obj

    def _live(self) -> int:
        if self._handle is None:
            raise BpfError(errno.EBADF, f"{self.path} is closed")
        return self._handle

    def program(self, name: str) -> BpfProgram:
        p = _lib().find_program(self._live(), name.encode())
        if not p:
            raise BpfError(errno.ENOENT, f"program {name} in {self.path}")
        return BpfProgram(name, _check(_lib().program_fd(p), f"fd of program {name}"))

    def map(self, name: str) -> BpfMap:
        lib = _lib()
        m = lib.find_map(self._live(), name.encode())
        if not m:
            raise BpfError(errno.ENOENT, f"map {name} in {self.path}")
        fd = _check(lib.map_fd(m), f"fd of map {name}")
        return BpfMap(
            name,
            fd,
            lib.map_key_size(m),
            lib.map_value_size(m),
            lib.map_max_entries(m),
            lib.map_type(m),
        )

    def close(self) -> None:
        if self._handle is not None:
            _lib().close(self._handle)
            self._handle = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class TcxLink:
    """A tcx attachment owned by this process. Never pinned: it goes when its fd closes,
    so a process that dies (even by kill -9) leaves nothing attached."""

    def __init__(self, fd: int, program: BpfProgram, ifindex: int, direction: str) -> None:
        self.fd: int | None = fd
        self.program, self.ifindex, self.direction = program, ifindex, direction

    @classmethod
    def attach(
        cls, program: BpfProgram, ifindex: int, direction: Literal["ingress", "egress"]
    ) -> "TcxLink":
        """Attach after whatever is attached there (device in this thread's namespace)."""
        kinds = {"ingress": BPF_TCX_INGRESS, "egress": BPF_TCX_EGRESS}
        if direction not in kinds or ifindex <= 0:
            raise ValueError(f"tcx attach of {program.name}: {direction} of ifindex {ifindex}")
        what = f"tcx {direction} attach of {program.name} to ifindex {ifindex}"
        fd = _check(_lib().link_create(program.fd, ifindex, kinds[direction], None), what)
        return cls(fd, program, ifindex, direction)

    @property
    def id(self) -> int:
        if self.fd is None:
            raise BpfError(errno.EBADF, "tcx link is closed")
        return _obj_id(self.fd, f"tcx link of {self.program.name}")

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def load_trivial_program(retval: int) -> int:
    """Load a two-instruction tc program (r0 = retval; exit) and return its fd (the caller
    closes it): proves the BPF syscall is allowed without any object file."""
    insns = struct.pack("<BBhi", 0xB7, 0, 0, retval) + struct.pack("<BBhi", 0x95, 0, 0, 0)
    what = "load of a trivial tc program"
    return _check(
        _lib().prog_load(BPF_PROG_TYPE_SCHED_CLS, b"ov_probe", b"GPL", insns, 2, None), what
    )
