"""The libbpf binding refuses inputs of the wrong size before calling into C (the map's fd here
is -1: any call into libbpf would fail with EBADF, not with ValueError)."""

from pathlib import Path

import pytest

from openvpc.vrouter.ebpf import objects
from openvpc.vrouter.ebpf.libbpf import (
    MAP_HASH,
    MAP_PERCPU_ARRAY,
    BpfMap,
    BpfProgram,
    TcxLink,
)

HASH = BpfMap("ov_test", -1, key_size=4, value_size=8, max_entries=16, type=MAP_HASH)
PERCPU = BpfMap("ov_counts", -1, key_size=4, value_size=4, max_entries=16, type=MAP_PERCPU_ARRAY)


@pytest.mark.parametrize("key", [b"", b"\0" * 3, b"\0" * 5, b"\0" * 64])
def test_keys_of_the_wrong_size_are_refused(key: bytes) -> None:
    for call in (HASH.lookup, HASH.delete, PERCPU.lookup_percpu):
        with pytest.raises(ValueError, match=f"key of {len(key)} bytes, not 4"):
            call(key)
    with pytest.raises(ValueError, match=f"ov_test: key of {len(key)} bytes"):
        HASH.update(key, bytes(8))


@pytest.mark.parametrize("value", [b"", bytes(7), bytes(9)])
def test_values_of_the_wrong_size_are_refused(value: bytes) -> None:
    with pytest.raises(ValueError, match=f"ov_test: value of {len(value)} bytes, not 8"):
        HASH.update(bytes(4), value)


def test_percpu_and_plain_reads_do_not_mix() -> None:
    with pytest.raises(ValueError, match="per-CPU: use lookup_percpu"):
        PERCPU.lookup(bytes(4))
    with pytest.raises(ValueError, match="not per-CPU: use lookup"):
        HASH.lookup_percpu(bytes(4))
    with pytest.raises(ValueError, match="per-CPU: use items_percpu"):
        PERCPU.items()
    with pytest.raises(ValueError, match="not per-CPU: use items"):
        next(HASH.items_percpu())


def test_test_run_and_attach_refuse_impossible_arguments() -> None:
    prog = BpfProgram("ov_test_in", -1)
    with pytest.raises(ValueError, match="a frame of 13 bytes"):
        prog.test_run(bytes(13))
    with pytest.raises(ValueError, match="repeat"):
        prog.test_run(bytes(60), repeat=0)
    with pytest.raises(ValueError, match="ifindex 0"):
        TcxLink.attach(prog, 0, "ingress")
    with pytest.raises(ValueError, match="sideways"):
        TcxLink.attach(prog, 1, "sideways")  # type: ignore[arg-type]


def test_a_missing_datapath_object_names_make_bpf(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(objects, "BPF_DIR", tmp_path)
    with pytest.raises(FileNotFoundError, match="make bpf"):
        objects.datapath_object()
    (tmp_path / "datapath.bpf.o").write_bytes(b"\x7fELF")
    assert objects.datapath_object() == tmp_path / "datapath.bpf.o"
