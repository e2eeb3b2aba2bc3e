"""Longest-prefix-match table over IPv4 prefixes: one exact-match dict per prefix length."""

from collections.abc import Iterator
from typing import Generic, TypeVar

V = TypeVar("V")


def prefix_int(addr: bytes, plen: int) -> int:
    """The network part of a 4-byte address as an int."""
    return int.from_bytes(addr, "big") & mask(plen)


def mask(plen: int) -> int:
    return (0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF


class Lpm(Generic[V]):
    """Prefixes to values; lookups walk only the prefix lengths present, longest first."""

    __slots__ = ("_lengths", "_tables")

    def __init__(self) -> None:
        self._tables: dict[int, dict[int, V]] = {}
        self._lengths: list[int] = []

    def add(self, addr: bytes, plen: int, value: V) -> None:
        if not 0 <= plen <= 32:
            raise ValueError(f"bad prefix length {plen}")
        if plen not in self._tables:
            self._tables[plen] = {}
            self._lengths = sorted(self._tables, reverse=True)
        self._tables[plen][prefix_int(addr, plen)] = value

    def remove(self, addr: bytes, plen: int) -> bool:
        table = self._tables.get(plen)
        if table is None or table.pop(prefix_int(addr, plen), None) is None:
            return False
        if not table:
            del self._tables[plen]
            self._lengths = sorted(self._tables, reverse=True)
        return True

    def lookup(self, addr: bytes) -> V | None:
        """The value of the longest prefix covering `addr`, if any."""
        key = int.from_bytes(addr, "big")
        for plen in self._lengths:
            value = self._tables[plen].get(key & mask(plen))
            if value is not None:
                return value
        return None

    def exact(self, addr: bytes, plen: int) -> V | None:
        table = self._tables.get(plen)
        return None if table is None else table.get(prefix_int(addr, plen))

    def items(self) -> Iterator[tuple[bytes, int, V]]:
        """(network, prefix length, value), sorted by network then length."""
        rows = [(net, plen, v) for plen, t in self._tables.items() for net, v in t.items()]
        for net, plen, v in sorted(rows, key=lambda r: (r[0], r[1])):
            yield net.to_bytes(4, "big"), plen, v

    def __len__(self) -> int:
        return sum(len(t) for t in self._tables.values())
