"""layout.py mirrors layout.h: clang checks every size, offset, enum value and constant the
Python side assumes (a generated file of _Static_asserts), and the values round-trip."""

import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from openvpc.vrouter.ebpf import layout as L

BPF_DIR = Path(__file__).resolve().parents[2] / "openvpc" / "vrouter" / "bpf"


def _asserts() -> str:
    lines = ['#include "layout.h"', "#include <stddef.h>"]

    def check(expr: str) -> None:
        lines.append(f'_Static_assert({expr}, "{expr}");')

    for lay in L.LAYOUTS:
        check(f"sizeof(struct {lay.c_name}) == {lay.struct.size}")
        for field, offset in lay.offsets.items():
            check(f"offsetof(struct {lay.c_name}, {field}) == {offset}")
    for enum, prefix in L.C_ENUM_PREFIX.items():
        for member in enum:
            check(f"{prefix}{member.name} == {member.value}")
    check(f"SLOW_REASONS == {L.SLOW_REASONS}")
    for name in (
        "MAX_VIFS",
        "MAX_ECMP",
        "NO_LABEL",
        "SLOW_ETH_P",
        "VIF_POLICY",
        "VIF_SOURCE_CHECK",
        "VIF_PEER",
        "VIF_AGENT",
        "FLOW_ROOM_ALL",
        "VRF_DECREMENT_TTL",
        "VRF_UNICAST_ONLY",
        "VERDICT_TAGGED",
        "MAX_RULES",
        "MAX_RULE_CHUNKS",
        "RULES_OVERFLOW",
        "RULE_ANY_PROTO",
        "RULE_FRAGMENTS",
        "RULE_ALLOW",
        "BY_NONE",
        "BY_EGRESS_NO_RULE",
        "BY_INGRESS_NO_RULE",
        "BY_REPLIES",
    ):
        check(f"{name} == {getattr(L, name)}u")
    return "\n".join(lines) + "\n"


def _clang(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    clang = shutil.which("clang")
    if clang is None:
        pytest.skip("clang is not installed (make sysdeps)")
    source = tmp_path / "layout_check.c"
    source.write_text(text)
    arch = platform.machine()
    return subprocess.run(
        [
            clang,
            "-target",
            "bpf",
            "-fsyntax-only",
            "-Wall",
            "-Werror",
            f"-I/usr/include/{arch}-linux-gnu",
            f"-I{BPF_DIR}",
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_clang_agrees_with_every_size_offset_and_value(tmp_path: Path) -> None:
    result = _clang(tmp_path, _asserts())
    assert result.returncode == 0, result.stderr


def test_the_check_can_fail(tmp_path: Path) -> None:
    wrong = _asserts() + '_Static_assert(sizeof(struct nexthop) == 150, "wrong");\n'
    result = _clang(tmp_path, wrong)
    assert result.returncode != 0
    assert "wrong" in result.stderr


def test_values_round_trip() -> None:
    vif = L.Vif(7, 3, b"\x0a\0\0\x05", b"\x0a\0\0\x01", 1500, 24, L.VifKind.VM, 3, b"\2" * 6, 1)
    assert L.Vif.unpack(vif.pack()) == vif
    nh = L.Nexthop(L.NhKind.ECMP, members=((5, L.NO_LABEL), (6, 100)))
    packed = nh.pack()
    assert len(packed) == L.NEXTHOP.struct.size
    assert packed[2] == 2  # n_members
    assert L.Nexthop.unpack(packed) == nh
    flow = L.Flow(1, 2, 3, b"\1\2\3\4", b"\5\6\7\x08", 0x1234, 80, L.FlowActionKind.NAT, 0x12)
    raw = flow.pack()
    assert raw[L.FLOW.offsets["nat_sport"] :][:2] == b"\x12\x34"  # network order
    assert L.Flow.unpack(raw) == flow
    node = L.Node(200_000, 400, 2, b"\xc0\0\2\1", 9, b"\4" * 6, 1500, 1)
    assert L.Node.unpack(node.pack()) == node
    hdr = L.SlowHdr(b"\0" * 6, b"\1" * 6, L.SLOW_ETH_P, 4, L.SlowReason.MTU)
    assert hdr.pack()[12:16] == b"\x88\xb5\0\0"
    assert L.SlowHdr.unpack(hdr.pack() + b"frame") == hdr
    assert L.fib_key(3, b"\x0a\0\0\0", 8)[:4] == (40).to_bytes(4, sys.byteorder)


def test_too_many_members_refused() -> None:
    with pytest.raises(ValueError):
        L.Nexthop(L.NhKind.ECMP, members=((1, 1),) * (L.MAX_ECMP + 1)).pack()


def test_percpu_sum() -> None:
    one = L.VifStats(1, 2, 3, 4, 5).pack()
    two = L.VifStats(10, 20, 30, 40, 50).pack()
    assert L.percpu_sum([one, two], L.VIF_STATS.struct) == (11, 22, 33, 44, 55)
