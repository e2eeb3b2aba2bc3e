"""Underlay neighbour resolution over time: ask again for neighbours still pending, and give
up on them (dropping what waited, counted) after a few tries. Pure; the shell calls it on its
timer."""

from openvpc.vrouter import replies
from openvpc.vrouter.drops import Drop
from openvpc.vrouter.tables import Tables

MAX_ARP_RETRIES = 3

Emit = tuple[int, bytes]


def retry_pending(tables: Tables) -> list[Emit]:
    """One timer tick: an ARP request for each pending neighbour, or its end."""
    t = tables
    for hop in [h for h in t.arp_retries if h not in t.pending]:
        del t.arp_retries[hop]  # resolved since the last tick
    out: list[Emit] = []
    for hop, queued in list(t.pending.items()):
        tries = t.arp_retries.get(hop, 0)
        if tries >= MAX_ARP_RETRIES:
            t.drops[Drop.NEIGHBOR_UNRESOLVED] += len(queued)
            del t.pending[hop]
            del t.arp_retries[hop]
            continue
        t.arp_retries[hop] = tries + 1
        out.append((t.fabric.vif, replies.arp_request(t.fabric.mac, t.fabric.ip, hop)))
    return out
