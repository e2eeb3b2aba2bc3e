"""drops.h's enum drop_id lists DROP_NAMES in order: the programs and Python agree on every id."""

import re
from pathlib import Path

import pytest

from openvpc.vrouter.drops import Drop
from openvpc.vrouter.ebpf.drops import DROP_COUNT, DROP_NAMES, drop_id, drop_name

DROPS_H = Path(__file__).resolve().parents[2] / "openvpc" / "vrouter" / "bpf" / "drops.h"
PACKET = Path(__file__).resolve().parents[2] / "openvpc" / "packet"


def _enum_drop_id(text: str) -> list[tuple[str, int | None]]:
    """The enumerators of `enum drop_id` with their explicit values (None when implicit)."""
    body = re.search(r"enum\s+drop_id\s*\{(.*?)\}\s*;", text, re.S)
    assert body is not None, "drops.h has no enum drop_id"
    code = re.sub(r"/\*.*?\*/", "", body.group(1), flags=re.S)
    out: list[tuple[str, int | None]] = []
    for item in (part.strip() for part in code.split(",")):
        if not item:
            continue
        m = re.fullmatch(r"([A-Z0-9_]+)(?:\s*=\s*(\d+))?", item)
        assert m is not None, f"unexpected enumerator {item!r}"
        out.append((m.group(1), int(m.group(2)) if m.group(2) else None))
    return out


def test_drops_h_lists_drop_names_in_order() -> None:
    entries = _enum_drop_id(DROPS_H.read_text())
    names = [name for name, _ in entries]
    assert names == [f"DROP_{n.upper()}" for n in DROP_NAMES] + ["DROP_COUNT"]
    # only the first may carry a value, 0: any other explicit value would shift the ids
    assert entries[0][1] == 0
    assert all(value is None for _, value in entries[1:])


def test_every_drop_comes_first_in_enum_order() -> None:
    assert DROP_NAMES[: len(Drop)] == tuple(d.value for d in Drop)
    assert len(set(DROP_NAMES)) == DROP_COUNT


def test_malformed_names_are_reasons_the_parsers_raise() -> None:
    raised = set(re.findall(r'Malformed\("([a-z0-9_]+)"\)', _sources(PACKET)))
    raised |= {"short_l4"}  # the pipeline's own, when it reads the ports of the flow key
    extra = set(DROP_NAMES[len(Drop) :]) - raised
    assert not extra, f"not raised by any parser: {sorted(extra)}"


def test_id_and_name_round_trip() -> None:
    for i, name in enumerate(DROP_NAMES):
        assert drop_id(name) == i
        assert drop_name(i) == name
    assert drop_id(Drop.INVALID_VIF) == 0
    with pytest.raises(IndexError):
        drop_name(DROP_COUNT)
    with pytest.raises(KeyError):
        drop_id("no_such_reason")


def _sources(root: Path) -> str:
    return "\n".join(p.read_text() for p in sorted(root.glob("*.py")))
