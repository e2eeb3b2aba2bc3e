"""Small pyroute2 helpers for the real lab: namespaces, veths, bridges, addresses, routes,
sysctls and persistent TAPs, each done in a named network namespace.

Nothing here forks: the calling thread enters the namespace (setns affects one thread only),
opens its netlink socket or /proc/sys file there, and returns, so it is safe in a process that
already runs gRPC threads.
"""

import ctypes
import errno
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from pyroute2 import IPRoute
from pyroute2 import netns as pr_netns
from pyroute2.netlink.exceptions import NetlinkError

from openvpc.lab.naming import NETNS_DIR

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


class NetnsError(Exception):
    """A namespace or interface operation failed; the message says which and where."""


def netns_path(name: str) -> str:
    return os.path.join(NETNS_DIR, name)


def netns_exists(name: str) -> bool:
    return os.path.exists(netns_path(name))


def list_netns() -> list[str]:
    try:
        return sorted(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        return []


@contextmanager
def inside(ns: str | None) -> Iterator[None]:
    """Run the block with this thread in network namespace `ns` (None: where it already is)."""
    if ns is None:
        yield
        return
    try:
        target = os.open(netns_path(ns), os.O_RDONLY)
    except FileNotFoundError:
        raise NetnsError(f"network namespace {ns} does not exist") from None
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        try:
            pr_netns.setns(target, flags=0)
        finally:
            os.close(target)
        try:
            yield
        finally:
            pr_netns.setns(home, flags=0)
    finally:
        os.close(home)


@contextmanager
def rtnl(ns: str | None) -> Iterator[Any]:
    """An IPRoute whose netlink socket lives in `ns`."""
    with inside(ns):
        ipr = IPRoute()
    try:
        yield ipr
    finally:
        ipr.close()


def create_netns(name: str) -> None:
    """Create and pin the namespace `name`; an existing one is an error (it is not ours)."""
    if netns_exists(name):
        raise NetnsError(f"network namespace {name} already exists")
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        if _libc.unshare(CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise NetnsError(f"unshare for {name}: {os.strerror(err)}")
        try:
            # pyroute2 pins /proc/<pid>/ns/net; "thread-self" names this thread's new namespace
            pr_netns.attach(name, "thread-self")
        except OSError as exc:
            if os.path.exists(netns_path(name)):
                os.unlink(netns_path(name))
            raise NetnsError(f"pin namespace {name}: {exc}") from exc
    finally:
        pr_netns.setns(home, flags=0)
        os.close(home)
    with rtnl(name) as ipr:
        ipr.link("set", index=_index(ipr, "lo", name), state="up")


def remove_netns(name: str) -> bool:
    """Unpin the namespace; False if it was already gone."""
    if not netns_exists(name):
        return False
    pr_netns.remove(name)
    return True


def netns_inode(name: str) -> int | None:
    try:
        return os.stat(netns_path(name)).st_ino
    except FileNotFoundError:
        return None


def pids_in_netns(name: str) -> list[int]:
    """Processes whose network namespace is `name` (found by inode, never by process name)."""
    inode = netns_inode(name)
    if inode is None:
        return []
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry}/ns/net").st_ino == inode:
                found.append(int(entry))
        except OSError:
            continue
    return found


def _index(ipr: Any, ifname: str, ns: str | None) -> int:
    found = ipr.link_lookup(ifname=ifname)
    if not found:
        raise NetnsError(f"no interface {ifname} in namespace {ns or 'host'}")
    return int(found[0])


def _call(what: str, ns: str | None, fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except NetlinkError as exc:
        raise NetnsError(f"{what} in namespace {ns or 'host'}: {exc}") from exc


def link_exists(ns: str | None, ifname: str) -> bool:
    with rtnl(ns) as ipr:
        return bool(ipr.link_lookup(ifname=ifname))


def add_veth(ns_a: str, name_a: str, ns_b: str, name_b: str, mtu: int) -> None:
    """A veth pair with end `name_a` in `ns_a` and `name_b` in `ns_b`, both up."""
    with rtnl(ns_a) as ipr:
        _call(
            f"veth {name_a}",
            ns_a,
            ipr.link,
            "add",
            ifname=name_a,
            kind="veth",
            mtu=mtu,
            peer={"ifname": name_b, "net_ns_fd": ns_b, "mtu": mtu},
        )
        _call(f"up {name_a}", ns_a, ipr.link, "set", index=_index(ipr, name_a, ns_a), state="up")
    set_up(ns_b, name_b)


def add_bridge(ns: str, name: str, mtu: int) -> None:
    with rtnl(ns) as ipr:
        _call(f"bridge {name}", ns, ipr.link, "add", ifname=name, kind="bridge", mtu=mtu)
        _call(f"up {name}", ns, ipr.link, "set", index=_index(ipr, name, ns), state="up")


def enslave(ns: str, ifname: str, bridge: str) -> None:
    with rtnl(ns) as ipr:
        master = _index(ipr, bridge, ns)
        _call(
            f"{ifname} into {bridge}",
            ns,
            ipr.link,
            "set",
            index=_index(ipr, ifname, ns),
            master=master,
        )


def set_up(ns: str, ifname: str, mtu: int | None = None) -> None:
    with rtnl(ns) as ipr:
        extra = {} if mtu is None else {"mtu": mtu}
        _call(
            f"up {ifname}", ns, ipr.link, "set", index=_index(ipr, ifname, ns), state="up", **extra
        )


def add_address(ns: str, ifname: str, cidr: str) -> None:
    address, _, plen = cidr.partition("/")
    with rtnl(ns) as ipr:
        _call(
            f"address {cidr} on {ifname}",
            ns,
            ipr.addr,
            "add",
            index=_index(ipr, ifname, ns),
            address=address,
            prefixlen=int(plen),
        )


def ipv4_addresses(ns: str, ifname: str) -> list[str]:
    """The IPv4 addresses on `ifname` as "a.b.c.d/len"."""
    with rtnl(ns) as ipr:
        found = ipr.link_lookup(ifname=ifname)
        if not found:
            return []
        return [
            f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}"
            for a in ipr.get_addr(family=2, index=found[0])
        ]


def add_route(ns: str, dst: str, gateway: str) -> None:
    """A route to `dst` ("default" or a CIDR) via one gateway."""
    with rtnl(ns) as ipr:
        _call(f"route {dst} via {gateway}", ns, ipr.route, "add", dst=_dst(dst), gateway=gateway)


def add_multipath_route(ns: str, dst: str, gateways: Sequence[str]) -> None:
    """An ECMP route: one next hop per gateway, equal weights."""
    with rtnl(ns) as ipr:
        _call(
            f"multipath route {dst}",
            ns,
            ipr.route,
            "add",
            dst=_dst(dst),
            multipath=[{"gateway": g} for g in gateways],
        )


def _dst(dst: str) -> str:
    return "0.0.0.0/0" if dst == "default" else dst


def write_sysctl(ns: str, key: str, value: str) -> None:
    """Write a sysctl such as net.ipv4.ip_forward as seen from inside `ns`."""
    path = "/proc/sys/" + key.replace(".", "/")
    with inside(ns), open(path, "w") as f:
        f.write(value)


def read_sysctl(ns: str, key: str) -> str:
    path = "/proc/sys/" + key.replace(".", "/")
    with inside(ns), open(path) as f:
        return f.read().strip()


def add_tap(ns: str, ifname: str, mac: str | None = None) -> None:
    """A persistent TAP (IFF_TAP | IFF_NO_PI) in `ns`, up, with no process attached yet."""
    with rtnl(ns) as ipr, inside(ns):
        # pyroute2 makes tuntap devices with an ioctl in the calling thread's namespace
        _call(
            f"tap {ifname}",
            ns,
            ipr.link,
            "add",
            ifname=ifname,
            kind="tuntap",
            mode="tap",
            ifr={"no_pi": True},
        )
    if mac is not None:
        set_mac(ns, ifname, mac)
    set_up(ns, ifname)


NODE_SIDE_MTU = 65535  # a veth's largest


def add_vm_veth(vm_ns: str, ifname: str, mac: str, node_side: str, mtu: int) -> None:
    """A veth pair: `ifname` with `mac` and `mtu` in `vm_ns`, `node_side` in this thread's
    namespace (the node's), both up. The node side takes any frame (NODE_SIDE_MTU): what a VM
    sends beyond its MTU must reach the vRouter, which answers ICMP fragmentation-needed,
    rather than die in the veth. A node side of that name left by a crash is replaced."""
    with rtnl(None) as ipr:
        stale = ipr.link_lookup(ifname=node_side)
        if stale:
            _call(f"delete stale {node_side}", None, ipr.link, "del", index=stale[0])
    here = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        with rtnl(vm_ns) as ipr:
            _call(
                f"veth {ifname}",
                vm_ns,
                ipr.link,
                "add",
                ifname=ifname,
                kind="veth",
                address=mac,
                mtu=mtu,
                peer={"ifname": node_side, "net_ns_fd": here, "mtu": NODE_SIDE_MTU},
            )
            index = _index(ipr, ifname, vm_ns)
            _call(f"up {ifname}", vm_ns, ipr.link, "set", index=index, state="up")
    finally:
        os.close(here)
    with rtnl(None) as ipr:
        index = _index(ipr, node_side, None)
        _call(f"up {node_side}", None, ipr.link, "set", index=index, state="up")


def set_mac(ns: str, ifname: str, mac: str) -> None:
    with rtnl(ns) as ipr:
        _call(
            f"address {mac} on {ifname}",
            ns,
            ipr.link,
            "set",
            index=_index(ipr, ifname, ns),
            address=mac,
        )


def add_neighbor(ns: str, ifname: str, ip: str, mac: str) -> None:
    """A permanent neighbour (ARP) entry."""
    with rtnl(ns) as ipr:
        _call(
            f"neighbour {ip} on {ifname}",
            ns,
            ipr.neigh,
            "add",
            dst=ip,
            lladdr=mac,
            ifindex=_index(ipr, ifname, ns),
            state="permanent",
        )


def delete_link(ns: str, ifname: str) -> bool:
    """Delete an interface; False if it (or its namespace) is already gone."""
    if not netns_exists(ns):
        return False
    with rtnl(ns) as ipr:
        found = ipr.link_lookup(ifname=ifname)
        if not found:
            return False
        try:
            ipr.link("del", index=found[0])
        except NetlinkError as exc:
            if exc.code == errno.ENODEV:
                return False
            raise NetnsError(f"delete {ifname} in {ns}: {exc}") from exc
    return True


def link_names(ns: str) -> list[str]:
    with rtnl(ns) as ipr:
        return sorted(str(link.get_attr("IFLA_IFNAME")) for link in ipr.get_links())
