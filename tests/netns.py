"""Throw-away network namespaces joined by veth pairs, for live-capture tests and benchmarks.

``veth_topology()`` creates two namespaces, ``A`` (the sender side) and ``B``
(the capture side), joined by one or more veth pairs with IPv4 addresses, and
deletes both namespaces on exit even when the body raised. Names carry the
pid (``wlt-<pid>-<n>-a``) so parallel runs never collide, and namespaces left
behind by a crashed earlier run (their pid is gone) are removed on the next
setup.

IPv6 is disabled in both namespaces before the links exist, so the kernel's
own router solicitations and DAD probes never appear on the wire: a capture
then sees exactly what a test sends.

Code runs inside a namespace either as a subprocess (``netns_cmd(ns, argv)``,
i.e. ``ip netns exec``) or on the calling thread (``with enter_netns(ns):``,
which uses ``setns(2)``; sockets opened inside keep their namespace after the
block ends, so a capture socket can be opened in ``B`` and read anywhere).

Usage in a test module::

    from netns import veth  # noqa: F401  (the fixture: one link; F811 where used)
    from netns import veth_topology

    @pytest.fixture
    def topo():
        with veth_topology(links=2) as t:
            yield t
"""

from __future__ import annotations

import ctypes
import ctypes.util
import itertools
import json
import os
import random
import re
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from wirelearn.capture import FrameBatch, PcapWriter

__all__ = [
    "PREFIX",
    "Link",
    "Topology",
    "cleanup_stale_namespaces",
    "enter_netns",
    "mixed_frames",
    "netns_cmd",
    "replay",
    "veth",
    "veth_topology",
    "write_pcap",
]

PREFIX = "wlt-"
_NAME_RE = re.compile(rf"^{re.escape(PREFIX)}(\d+)-\d+-[ab]$")
_counter = itertools.count()
CLONE_NEWNET = 0x40000000


@dataclass(frozen=True)
class Link:
    """One veth pair: ``if_a`` lives in namespace A, ``if_b`` in namespace B."""

    if_a: str
    if_b: str
    addr_a: str
    addr_b: str
    mac_a: str
    mac_b: str


@dataclass(frozen=True)
class Topology:
    """Two namespaces and the veth links between them."""

    ns_a: str
    ns_b: str
    links: tuple[Link, ...]

    @property
    def link(self) -> Link:
        """The first link."""
        return self.links[0]


def _ip() -> str:
    path = shutil.which("ip")
    if path is None:
        pytest.fail("iproute2 (`ip`) is not installed; live tests need it")
    return path


def _run(argv: Sequence[str]) -> str:
    proc = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def netns_cmd(ns: str, argv: Sequence[str]) -> list[str]:
    """The argv that runs ``argv`` inside namespace ``ns`` (``ip netns exec``)."""
    return [_ip(), "netns", "exec", ns, *argv]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cleanup_stale_namespaces() -> list[str]:
    """Delete namespaces with our prefix whose creating process is gone; return their names."""
    removed = []
    for line in _run([_ip(), "netns", "list"]).splitlines():
        name = line.split()[0] if line.strip() else ""
        m = _NAME_RE.match(name)
        if m and not _pid_alive(int(m.group(1))):
            subprocess.run([_ip(), "netns", "del", name], capture_output=True, check=False)
            removed.append(name)
    return removed


def _mac(link: int, side: str) -> str:
    # Locally administered unicast, distinct per link and side.
    return f"02:77:00:00:{link:02x}:{0x0A if side == 'a' else 0x0B:02x}"


@contextmanager
def veth_topology(links: int = 1, *, mtu: int = 1500) -> Iterator[Topology]:
    """Create namespaces A and B joined by ``links`` veth pairs; delete them on exit.

    Link ``i`` is ``va<i>`` (10.77.<i>.1/24, in A) <-> ``vb<i>`` (10.77.<i>.2/24, in B).

    Args:
        links: how many veth pairs.
        mtu: the MTU of every veth.
    """
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    cleanup_stale_namespaces()
    n = next(_counter)
    ns_a = f"{PREFIX}{os.getpid()}-{n}-a"
    ns_b = f"{PREFIX}{os.getpid()}-{n}-b"
    created: list[str] = []
    try:
        for ns in (ns_a, ns_b):
            _run([_ip(), "netns", "add", ns])
            created.append(ns)
            _run(
                netns_cmd(
                    ns,
                    [
                        "sysctl",
                        "-q",
                        "-w",
                        "net.ipv6.conf.all.disable_ipv6=1",
                        "net.ipv6.conf.default.disable_ipv6=1",
                    ],
                )
            )
            _run([_ip(), "-n", ns, "link", "set", "lo", "up"])
        made = []
        for i in range(links):
            link = Link(
                if_a=f"va{i}",
                if_b=f"vb{i}",
                addr_a=f"10.77.{i}.1",
                addr_b=f"10.77.{i}.2",
                mac_a=_mac(i, "a"),
                mac_b=_mac(i, "b"),
            )
            _run(
                [_ip(), "-n", ns_a, "link", "add", link.if_a, "address", link.mac_a, "mtu", str(mtu),
                 "type", "veth", "peer", "name", link.if_b, "address", link.mac_b, "mtu", str(mtu),
                 "netns", ns_b]
            )  # fmt: skip
            _run([_ip(), "-n", ns_a, "addr", "add", f"{link.addr_a}/24", "dev", link.if_a])
            _run([_ip(), "-n", ns_b, "addr", "add", f"{link.addr_b}/24", "dev", link.if_b])
            _run([_ip(), "-n", ns_a, "link", "set", link.if_a, "up"])
            _run([_ip(), "-n", ns_b, "link", "set", link.if_b, "up"])
            made.append(link)
        _wait_for_carrier([(ns_a, lk.if_a) for lk in made] + [(ns_b, lk.if_b) for lk in made])
        yield Topology(ns_a=ns_a, ns_b=ns_b, links=tuple(made))
    finally:
        for ns in created:
            subprocess.run([_ip(), "netns", "del", ns], capture_output=True, check=False)


def _wait_for_carrier(links: Sequence[tuple[str, str]], timeout: float = 5.0) -> None:
    """Wait until every ``(namespace, interface)`` reports a carrier (operstate UP)."""
    deadline = time.monotonic() + timeout
    for ns, iface in links:
        while True:
            out = _run([_ip(), "-n", ns, "-j", "link", "show", iface])
            if json.loads(out)[0].get("operstate") == "UP":
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{iface} in {ns} has no carrier after {timeout} s")
            time.sleep(0.01)


@pytest.fixture
def veth() -> Iterator[Topology]:
    """One veth link between fresh namespaces A and B (``from netns import veth``)."""
    with veth_topology() as topo:
        yield topo


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _setns(fd: int) -> None:
    if _libc().setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@contextmanager
def enter_netns(ns: str) -> Iterator[None]:
    """Move the calling thread into namespace ``ns`` for the block, then back.

    Only this thread moves; sockets created inside stay in ``ns`` for their lifetime.
    """
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(f"/run/netns/{ns}", os.O_RDONLY)
        try:
            _setns(target)
        finally:
            os.close(target)
        try:
            yield
        finally:
            _setns(own)
    finally:
        os.close(own)


# --- traffic ------------------------------------------------------------------------------------


def mixed_frames(
    count: int, *, seed: int = 0, max_payload: int = 1400, vlan: bool = True
) -> list[bytes]:
    """``count`` valid Ethernet frames of mixed kinds, the same for the same arguments.

    TCP, UDP and ICMP over IPv4, ARP, TCP and UDP over IPv6 and (with ``vlan``)
    802.1Q and QinQ-tagged UDP. Addresses are documentation ranges and
    locally administered unicast MACs that no test interface owns, so a
    receiving kernel never answers them and a capture sees only these frames.

    Args:
        count: how many frames.
        seed: the random seed.
        max_payload: the largest L4 payload (frames stay within a 1500-byte MTU).
        vlan: include VLAN-tagged frames.
    """
    from scapy.layers.inet import ICMP, IP, TCP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import ARP, Dot1AD, Dot1Q, Ether
    from scapy.packet import Raw

    rng = random.Random(seed)

    def mac() -> str:
        return "02:" + ":".join(f"{rng.randrange(256):02x}" for _ in range(5))

    def ip4() -> str:
        return f"{rng.choice(('198.51.100', '203.0.113'))}.{rng.randrange(1, 255)}"

    def ip6() -> str:
        return f"2001:db8::{rng.randrange(1, 0xFFFF):x}"

    def payload() -> Raw:
        return Raw(rng.randbytes(rng.randrange(0, max_payload + 1)))

    kinds = ["tcp", "udp", "icmp", "arp", "tcp6", "udp6", "tcp", "udp"]
    if vlan:
        kinds += ["vlan", "qinq"]
    frames: list[bytes] = []
    for i in range(count):
        kind = kinds[i % len(kinds)]
        eth = Ether(src=mac(), dst=mac())
        sport, dport = rng.randrange(1024, 65535), rng.choice((53, 80, 443, 8080, 5000))
        if kind == "tcp":
            pkt = (
                eth
                / IP(src=ip4(), dst=ip4(), ttl=rng.choice((64, 128)))
                / TCP(sport=sport, dport=dport, flags=rng.choice(("S", "SA", "A", "PA", "FA", "R")))
                / payload()
            )
        elif kind == "udp":
            pkt = eth / IP(src=ip4(), dst=ip4()) / UDP(sport=sport, dport=dport) / payload()
        elif kind == "icmp":
            pkt = eth / IP(src=ip4(), dst=ip4()) / ICMP(id=i & 0xFFFF, seq=i & 0xFFFF) / payload()
        elif kind == "arp":
            pkt = Ether(src=eth.src, dst="ff:ff:ff:ff:ff:ff") / ARP(
                op=1, hwsrc=eth.src, psrc=ip4(), pdst=ip4()
            )
        elif kind == "tcp6":
            pkt = eth / IPv6(src=ip6(), dst=ip6()) / TCP(sport=sport, dport=dport) / payload()
        elif kind == "udp6":
            pkt = eth / IPv6(src=ip6(), dst=ip6()) / UDP(sport=sport, dport=dport) / payload()
        elif kind == "vlan":
            pkt = (
                eth
                / Dot1Q(vlan=rng.randrange(1, 4095), prio=rng.randrange(8))
                / IP(src=ip4(), dst=ip4())
                / UDP(sport=sport, dport=dport)
                / payload()
            )
        else:
            pkt = (
                eth
                / Dot1AD(vlan=rng.randrange(1, 4095))
                / Dot1Q(vlan=rng.randrange(1, 4095))
                / IP(src=ip4(), dst=ip4())
                / UDP(sport=sport, dport=dport)
                / payload()
            )
        frames.append(bytes(pkt))
    return frames


def write_pcap(path: Path, frames: Sequence[bytes]) -> Path:
    """Write Ethernet ``frames`` to a nanosecond pcap with wirelearn's writer."""
    with PcapWriter(path) as w:
        w.write(FrameBatch.from_frames(list(frames)))
    return path


def replay(
    ns: str, iface: str, pcap: Path, *, pps: int | None = None, loop: int = 1
) -> subprocess.CompletedProcess[str]:
    """Send ``pcap`` out of ``iface`` in namespace ``ns`` with tcpreplay; wait until done.

    Args:
        ns: the namespace.
        iface: the interface to send on.
        pcap: the capture to send.
        pps: frames per second, or None for as fast as possible.
        loop: send the file this many times.
    """
    tool = shutil.which("tcpreplay")
    if tool is None:
        pytest.fail("tcpreplay is not installed; live tests need it")
    rate = [f"--pps={pps}"] if pps else ["--topspeed"]
    argv = netns_cmd(
        ns, [tool, "-q", "-i", iface, *rate, f"--loop={loop}", "--preload-pcap", str(pcap)]
    )
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"tcpreplay failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc
