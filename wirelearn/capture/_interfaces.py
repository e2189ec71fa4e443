"""Network interfaces of this host: what ``wirelearn interfaces`` prints and live capture opens.

Everything comes from the kernel of the calling thread's network namespace
(``if_nameindex``, ``getifaddrs`` and ``SIOCGIF*`` ioctls), never from
``/sys`` or a shelled-out ``ip``: ``/sys`` shows the namespace that mounted it,
which is wrong inside ``setns`` and ``ip netns exec`` children without a
remount.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import fcntl
import socket
import struct
from dataclasses import dataclass

from wirelearn.errors import CaptureError, InterfaceError

__all__ = ["ARPHRD_TO_LINKTYPE", "InterfaceInfo", "list_interfaces"]

# ioctl request numbers from <linux/sockios.h>.
SIOCGIFFLAGS = 0x8913
SIOCGIFMTU = 0x8921
SIOCGIFHWADDR = 0x8927
SIOCGIFINDEX = 0x8933

# Interface flags from <net/if.h>.
IFF_UP = 0x1
IFF_LOOPBACK = 0x8
IFF_RUNNING = 0x40
IFF_PROMISC = 0x100
IFF_LOWER_UP = 0x10000

#: Link type of the frames an ``AF_PACKET``/``SOCK_RAW`` socket delivers, by ARPHRD type.
#: Mirrors libpcap's ``map_arphrd_to_dlt`` for the types whose raw frames need no cooking.
ARPHRD_TO_LINKTYPE: dict[int, int] = {
    1: 1,  # ARPHRD_ETHER -> EN10MB
    772: 1,  # ARPHRD_LOOPBACK: Linux gives loopback frames a zeroed Ethernet header
    65534: 101,  # ARPHRD_NONE (tun, wireguard) -> RAW: bare IPv4/IPv6 packets
    512: 101,  # ARPHRD_PPP: the kernel strips the PPP header, IP packets remain
    519: 101,  # ARPHRD_RAWIP (cellular modems)
    768: 101,  # ARPHRD_TUNNEL (ipip)
    769: 101,  # ARPHRD_TUNNEL6 (ip6tnl)
    776: 101,  # ARPHRD_SIT
    280: 227,  # ARPHRD_CAN -> CAN_SOCKETCAN
    774: 10,  # ARPHRD_FDDI -> FDDI
    800: 6,  # ARPHRD_IEEE802_TR -> IEEE802 (token ring)
    801: 105,  # ARPHRD_IEEE80211 -> IEEE802_11
    803: 127,  # ARPHRD_IEEE80211_RADIOTAP -> IEEE802_11_RADIOTAP
    804: 230,  # ARPHRD_IEEE802154 -> IEEE802_15_4_NOFCS
    824: 253,  # ARPHRD_NETLINK (nlmon) -> NETLINK
}


@dataclass(frozen=True)
class InterfaceInfo:
    """One network interface, as ``wirelearn interfaces`` shows it.

    Args:
        name: the interface name (``eth0``).
        index: the kernel's interface index.
        mac: the hardware address as ``aa:bb:cc:dd:ee:ff``, or None when it has none.
        ipv4: IPv4 addresses with prefix length (``10.0.0.1/24``).
        ipv6: IPv6 addresses with prefix length (``fe80::1/64``).
        up: administratively up (``IFF_UP``).
        running: up with a carrier (``IFF_RUNNING``).
        arphrd: the kernel's ARPHRD hardware type.
        linktype: the LINKTYPE_* of captured frames, or None when live capture
            does not support this hardware type.
        mtu: the MTU in bytes.
        promisc: promiscuous mode set by an administrator (``ip link set promisc on``);
            the kernel does not show captures' own promiscuous memberships here.
    """

    name: str
    index: int
    mac: str | None
    ipv4: tuple[str, ...]
    ipv6: tuple[str, ...]
    up: bool
    running: bool
    arphrd: int
    linktype: int | None
    mtu: int
    promisc: bool = False

    @property
    def state(self) -> str:
        """``"up"``, ``"no-carrier"`` (up without a link) or ``"down"``."""
        if not self.up:
            return "down"
        return "up" if self.running else "no-carrier"


# --- ioctls -------------------------------------------------------------------------------------


def _ifreq(name: str) -> bytes:
    # struct ifreq: a 16-byte name then a 24-byte union.
    return struct.pack("16s24x", name.encode("utf-8", "replace"))


def _ioctl(sock: socket.socket, request: int, name: str) -> bytes:
    return fcntl.ioctl(sock.fileno(), request, _ifreq(name))


def interface_flags(sock: socket.socket, name: str) -> int | None:
    """The ``IFF_*`` flags of ``name`` in the namespace of ``sock``, or None if it is gone."""
    try:
        raw = _ioctl(sock, SIOCGIFFLAGS, name)
    except OSError as exc:
        if exc.errno in (errno.ENODEV, errno.ENXIO):
            return None
        raise
    return int(struct.unpack_from("=H", raw, 16)[0])


def _hwaddr(sock: socket.socket, name: str) -> tuple[int, bytes]:
    raw = _ioctl(sock, SIOCGIFHWADDR, name)
    family = int(struct.unpack_from("=H", raw, 16)[0])
    return family, raw[18:24]


def _mtu(sock: socket.socket, name: str) -> int:
    return int(struct.unpack_from("=i", _ioctl(sock, SIOCGIFMTU, name), 16)[0])


def _format_mac(raw: bytes) -> str | None:
    if not any(raw):
        return None
    return ":".join(f"{b:02x}" for b in raw)


# --- getifaddrs ---------------------------------------------------------------------------------


class _Sockaddr(ctypes.Structure):
    _fields_ = [("sa_family", ctypes.c_ushort), ("sa_data", ctypes.c_ubyte * 26)]


class _Ifaddrs(ctypes.Structure):
    pass


_Ifaddrs._fields_ = [
    ("ifa_next", ctypes.POINTER(_Ifaddrs)),
    ("ifa_name", ctypes.c_char_p),
    ("ifa_flags", ctypes.c_uint),
    ("ifa_addr", ctypes.POINTER(_Sockaddr)),
    ("ifa_netmask", ctypes.POINTER(_Sockaddr)),
    ("ifa_ifu", ctypes.POINTER(_Sockaddr)),
    ("ifa_data", ctypes.c_void_p),
]


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _sockaddr_ip(sa: _Sockaddr) -> str | None:
    raw = bytes(sa.sa_data)
    if sa.sa_family == socket.AF_INET:
        return socket.inet_ntop(socket.AF_INET, raw[2:6])
    if sa.sa_family == socket.AF_INET6:
        # sockaddr_in6: port(2) flowinfo(4) addr(16) scope(4); sa_data starts after the family.
        return socket.inet_ntop(socket.AF_INET6, raw[6:22])
    return None


def _prefix_len(sa: _Sockaddr) -> int:
    raw = bytes(sa.sa_data)
    addr = raw[2:6] if sa.sa_family == socket.AF_INET else raw[6:22]
    return sum(bin(b).count("1") for b in addr)


def _addresses() -> dict[str, tuple[list[str], list[str]]]:
    """IPv4 and IPv6 addresses per interface name, via the C library's ``getifaddrs``."""
    libc = _libc()
    head = ctypes.POINTER(_Ifaddrs)()
    if libc.getifaddrs(ctypes.byref(head)) != 0:
        err = ctypes.get_errno()
        raise CaptureError(f"cannot list interface addresses: {errno.errorcode.get(err, err)}")
    out: dict[str, tuple[list[str], list[str]]] = {}
    try:
        node = head
        while node:
            item = node.contents
            if item.ifa_name and item.ifa_addr:
                name = item.ifa_name.decode("utf-8", "replace")
                sa = item.ifa_addr.contents
                ip = _sockaddr_ip(sa)
                if ip is not None:
                    plen = _prefix_len(item.ifa_netmask.contents) if item.ifa_netmask else None
                    text = ip if plen is None else f"{ip}/{plen}"
                    v4, v6 = out.setdefault(name, ([], []))
                    (v4 if sa.sa_family == socket.AF_INET else v6).append(text)
            node = item.ifa_next
    finally:
        libc.freeifaddrs(head)
    return out


# --- public -------------------------------------------------------------------------------------


def list_interfaces() -> list[InterfaceInfo]:
    """Every network interface of the calling thread's namespace, in kernel index order.

    Needs no privileges.

    Returns:
        one ``InterfaceInfo`` per interface.

    Raises:
        CaptureError: the kernel refused to list interfaces.
    """
    addrs = _addresses()
    infos: list[InterfaceInfo] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for index, name in sorted(socket.if_nameindex()):
            flags = interface_flags(sock, name)
            if flags is None:  # removed while we were listing
                continue
            try:
                arphrd, hw = _hwaddr(sock, name)
                mtu = _mtu(sock, name)
            except OSError:
                continue  # removed while we were listing
            v4, v6 = addrs.get(name, ([], []))
            infos.append(
                InterfaceInfo(
                    name=name,
                    index=index,
                    mac=_format_mac(hw),
                    ipv4=tuple(v4),
                    ipv6=tuple(v6),
                    up=bool(flags & IFF_UP),
                    running=bool(flags & IFF_RUNNING),
                    arphrd=arphrd,
                    linktype=ARPHRD_TO_LINKTYPE.get(arphrd),
                    mtu=mtu,
                    promisc=bool(flags & IFF_PROMISC),
                )
            )
    return infos


def interface_names() -> list[str]:
    """The names of the interfaces of the calling thread's namespace, in index order."""
    return [name for _, name in sorted(socket.if_nameindex())]


def lookup_interface(name: str) -> InterfaceInfo:
    """The ``InterfaceInfo`` of ``name``.

    Raises:
        InterfaceError: no such interface; the message lists the ones that exist.
    """
    for info in list_interfaces():
        if info.name == name:
            return info
    existing = ", ".join(interface_names()) or "none"
    raise InterfaceError(f"no such interface {name!r}; interfaces: {existing}")
