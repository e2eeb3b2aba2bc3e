"""A bounded queue served round-robin by source: punts from a VM flooding first packets wait
behind that VM's own, not in front of every other VM's on the node.

Each source has a share (at most `per_source` waiting items) and all together at most
`capacity`; `get` takes one item from each source with items in turn.
"""

import threading
from collections import OrderedDict, deque
from collections.abc import Hashable
from enum import StrEnum
from typing import Generic, TypeVar

T = TypeVar("T")


class Refused(StrEnum):
    FULL = "full"  # the whole queue
    SHARE = "share"  # this source's share


class FairQueue(Generic[T]):
    def __init__(self, capacity: int, per_source: int) -> None:
        if capacity < 1 or per_source < 1:
            raise ValueError("a queue needs room for at least one item and one per source")
        self.capacity = capacity
        self.per_source = per_source
        self._cond = threading.Condition()
        # sources with waiting items, in serving order; a source served goes to the back
        self._waiting: OrderedDict[Hashable, deque[T]] = OrderedDict()
        self._size = 0

    def put(self, source: Hashable, item: T) -> Refused | None:
        """Queue `item` for `source`; never blocks. Returns why it was refused, or None."""
        with self._cond:
            if self._size >= self.capacity:
                return Refused.FULL
            items = self._waiting.get(source)
            if items is None:
                items = self._waiting[source] = deque()
            elif len(items) >= self.per_source:
                return Refused.SHARE
            items.append(item)
            self._size += 1
            self._cond.notify()
            return None

    def get(self, timeout: float) -> T | None:
        """The next item in round-robin order by source; None after `timeout` seconds."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._size > 0, timeout):
                return None
            source, items = next(iter(self._waiting.items()))
            item = items.popleft()
            if items:
                self._waiting.move_to_end(source)
            else:
                del self._waiting[source]
            self._size -= 1
            return item

    def __len__(self) -> int:
        with self._cond:
            return self._size
