"""Live capture on real veth pairs in throw-away namespaces, checked against tcpdump.

Traffic is a deterministic mix of Ethernet frames (``netns.mixed_frames``,
including 802.1Q and QinQ frames whose outer tag the receiving kernel strips
into metadata) sent by tcpreplay from namespace A; ``LiveSource`` captures in
namespace B. IPv6 is disabled in both namespaces and no frame is addressed to
either host, so the wire carries exactly the frames sent. tcpdump, capturing
on the same interface at the same time, is the oracle for filters and
timestamps (``--time-stamp-precision=nano``: both read the same kernel
timestamp).

Needs root, network namespaces, tcpreplay and tcpdump (CI runs as root).
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, need_tool
from netns import (
    PREFIX,
    Topology,
    cleanup_stale_namespaces,
    enter_netns,
    mixed_frames,
    netns_cmd,
    replay,
    veth,  # noqa: F401  (a fixture)
    veth_topology,
    write_pcap,
)

from wirelearn.capture import (
    BackgroundSource,
    FrameBatch,
    Interface,
    LiveSource,
    MemorySource,
    PcapngWriter,
    Source,
    drop_privileges,
    list_interfaces,
)
from wirelearn.capture._live import _fix_frames, _ring_geometry
from wirelearn.errors import (
    ConfigError,
    FilterError,
    InputError,
    InterfaceError,
    PrivilegeError,
    WirelearnError,
)

PYTHON = sys.executable
live = pytest.mark.live


# --- helpers ------------------------------------------------------------------------------------


@cache
def traffic(count: int = 400, seed: int = 1, max_payload: int = 1400) -> tuple[bytes, ...]:
    return tuple(mixed_frames(count, seed=seed, max_payload=max_payload))


@pytest.fixture
def topo(veth: Topology) -> Topology:  # noqa: F811  (the fixture imported above)
    need_tool("tcpreplay")
    return veth


@pytest.fixture
def topo2() -> Iterator[Topology]:
    need_tool("tcpreplay")
    with veth_topology(links=2) as t:
        yield t


_OPENED: list[LiveSource] = []


@pytest.fixture(autouse=True)
def _close_sources_a_failed_test_left_open() -> Iterator[None]:
    yield
    while _OPENED:
        _OPENED.pop().close()


def open_in(ns: str, interfaces: list[str], **kw: object) -> LiveSource:
    """A LiveSource whose sockets live in namespace ``ns`` (closed after the test)."""
    with enter_netns(ns):
        src = LiveSource(interfaces, **kw)  # type: ignore[arg-type]
    _OPENED.append(src)
    return src


def drain(src: Source, expect: int, *, timeout: float = 10.0, grace: float = 0.3) -> FrameBatch:
    """Iterate ``src`` until ``expect`` frames came, then ``grace`` more seconds to catch
    extras (or until ``timeout``); close it and return every frame."""
    batches: list[FrameBatch] = []
    total = 0
    stop = threading.Timer(timeout, src.close)
    stop.start()
    extra: threading.Timer | None = None
    try:
        for b in src:
            batches.append(b)
            total += len(b)
            if total >= expect and extra is None:
                extra = threading.Timer(grace, src.close)
                extra.start()
    finally:
        stop.cancel()
        if extra is not None:
            extra.cancel()
        src.close()
    return FrameBatch.concat(batches) if batches else FrameBatch.empty()


def consume(src: Source) -> tuple[list[FrameBatch], WirelearnError | None]:
    """Every batch ``src`` yields, and the error that ended it (if any)."""
    got: list[FrameBatch] = []
    try:
        for b in src:
            got.append(b)
    except WirelearnError as exc:
        return got, exc
    return got, None


def frames_of(batch: FrameBatch) -> list[bytes]:
    return [batch.frame_bytes(i) for i in range(len(batch))]


def read_pcap(path: Path) -> list[tuple[int, bytes, int]]:
    """``(ts_ns, bytes, wirelen)`` of each record of a little-endian pcap (µs or ns)."""
    raw = path.read_bytes()
    magic = struct.unpack_from("<I", raw)[0]
    assert magic in (0xA1B2C3D4, 0xA1B23C4D), hex(magic)
    unit = 1 if magic == 0xA1B23C4D else 1000
    out = []
    off = 24
    while off < len(raw):
        sec, frac, caplen, wirelen = struct.unpack_from("<IIII", raw, off)
        off += 16
        out.append((sec * 1_000_000_000 + frac * unit, raw[off : off + caplen], wirelen))
        off += caplen
    return out


class Tcpdump:
    """tcpdump writing a nanosecond pcap on ``iface`` in ``ns`` until ``stop()``."""

    def __init__(
        self, ns: str, iface: str, out: Path, expr: str = "", *, snaplen: int = 262144
    ) -> None:
        argv = [need_tool("tcpdump"), "-i", iface, "-U", "--immediate-mode", "-B", "65536"]
        argv += ["--time-stamp-precision=nano", "-s", str(snaplen), "-w", str(out)]
        self.proc = subprocess.Popen(
            netns_cmd(ns, [*argv, *([expr] if expr else [])]),
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stderr is not None
        first = self.proc.stderr.readline()  # "listening on ..." once the filter is set
        assert "listening on" in first, first
        self.out = out
        self.interrupted = False

    def interrupt(self) -> None:
        if not self.interrupted:
            self.interrupted = True
            self.proc.send_signal(signal.SIGINT)

    def stop(self, *, settle: float = 0.3) -> list[tuple[int, bytes, int]]:
        time.sleep(settle)  # immediate mode still needs a moment to write the last frames
        self.interrupt()
        _, err = self.proc.communicate(timeout=10)
        assert "0 packets dropped by kernel" in err, err
        return read_pcap(self.out)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _namespaces() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return [line.split()[0] for line in out.stdout.splitlines() if line.strip()]


@live
def test_namespaces_are_removed_even_when_the_test_fails() -> None:
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    with pytest.raises(RuntimeError, match="the body failed"), veth_topology() as t:  # noqa: PT012
        assert {t.ns_a, t.ns_b} <= set(_namespaces())
        raise RuntimeError("the body failed")
    assert not {t.ns_a, t.ns_b} & set(_namespaces())


@live
def test_namespaces_left_by_a_crashed_run_are_cleaned_up() -> None:
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    dead = subprocess.Popen(["true"])
    dead.wait()  # a pid that no longer runs
    name = f"{PREFIX}{dead.pid}-0-a"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        assert name in cleanup_stale_namespaces()
        assert name not in _namespaces()
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


# --- capture equals what was sent -----------------------------------------------------------------


@live
@pytest.mark.parametrize("ring", [True, False], ids=["tpacket_v3", "recv-fallback"])
def test_frames_captured_equal_frames_sent(topo: Topology, tmp_path: Path, ring: bool) -> None:
    sent = list(traffic())
    pcap = write_pcap(tmp_path / "sent.pcap", sent)
    src = open_in(topo.ns_b, ["vb0"], timeout_ms=50, ring=ring)
    assert src.mode == ("tpacket_v3" if ring else "recv")
    before = time.time_ns()
    replay(topo.ns_a, "va0", pcap, pps=5000)
    after = time.time_ns()
    got = drain(src, len(sent))
    # Byte for byte and in order, VLAN and QinQ tags back in place, nothing extra.
    assert frames_of(got) == sent
    assert np.array_equal(got.caplen, got.wirelen)
    assert np.array_equal(got.frame, np.arange(1, len(sent) + 1))
    assert (got.iface == 0).all()
    assert got.interfaces == (Interface(linktype=1, snaplen=262144, name="vb0", tsresol=10**9),)
    assert (np.diff(got.ts_ns) >= 0).all()
    assert before <= got.ts_ns[0] and got.ts_ns[-1] <= after
    assert src.stats.frames == len(sent)
    assert src.stats.bytes == sum(map(len, sent))
    assert src.stats.kernel_drops == 0


@live
def test_filter_and_timestamps_match_tcpdump_on_the_same_traffic(
    topo: Topology, tmp_path: Path
) -> None:
    sent = list(traffic())
    pcap = write_pcap(tmp_path / "sent.pcap", sent)
    exprs = [
        "",
        "udp",
        "tcp[tcpflags] & tcp-syn != 0 or icmp",
        "not arp and greater 600",
        "ip6",
        "vlan",  # needs libpcap's live-handle code: the kernel stripped the outer tags
        "vlan and udp",
        "ether broadcast",
    ]
    dumps: list[Tcpdump] = []
    try:
        for i, e in enumerate(exprs):
            dumps.append(Tcpdump(topo.ns_b, "vb0", tmp_path / f"td{i}.pcap", e))
        sources = [open_in(topo.ns_b, ["vb0"], bpf=e or None, timeout_ms=50) for e in exprs]
        replay(topo.ns_a, "va0", pcap, pps=5000)
        time.sleep(0.3)
        for td in dumps:
            td.interrupt()
        for e, src, td in zip(exprs, sources, dumps, strict=True):
            want = td.stop(settle=0)
            got = drain(src, len(want), grace=0.15)
            mine = [
                (int(got.ts_ns[i]), got.frame_bytes(i), int(got.wirelen[i]))
                for i in range(len(got))
            ]
            assert mine == want, f"filter {e!r}: {len(mine)} frames vs tcpdump's {len(want)}"
            assert want, f"filter {e!r} selects nothing: a weak check"
    finally:
        for td in dumps:
            td.kill()


@live
def test_snaplen_cuts_frames_like_tcpdump(topo: Topology, tmp_path: Path) -> None:
    sent = list(traffic())
    pcap = write_pcap(tmp_path / "sent.pcap", sent)
    td = Tcpdump(topo.ns_b, "vb0", tmp_path / "td.pcap", snaplen=100)
    try:
        src = open_in(topo.ns_b, ["vb0"], snaplen=100, timeout_ms=50)
        replay(topo.ns_a, "va0", pcap, pps=5000)
        want = td.stop()
        got = drain(src, len(sent))
    finally:
        td.kill()
    assert frames_of(got) == [f[:100] for f in sent]
    assert got.wirelen.tolist() == [len(f) for f in sent]
    assert [
        (int(t), b, int(w)) for t, b, w in zip(got.ts_ns, frames_of(got), got.wirelen, strict=True)
    ] == want


@live
def test_several_interfaces_record_the_interface_of_each_frame(
    topo2: Topology, tmp_path: Path
) -> None:
    sets = [list(traffic(300, seed=10)), list(traffic(200, seed=11))]
    pcaps = [write_pcap(tmp_path / f"s{i}.pcap", s) for i, s in enumerate(sets)]
    src = open_in(topo2.ns_b, ["vb0", "vb1"], timeout_ms=50, batch_size=128)
    # Both links at once, so batches mix interfaces.
    threads = [
        threading.Thread(target=replay, args=(topo2.ns_a, f"va{i}", p), kwargs={"pps": 4000})
        for i, p in enumerate(pcaps)
    ]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    got = drain(src, 500)
    assert [i.name for i in got.interfaces] == ["vb0", "vb1"]
    for i, s in enumerate(sets):
        assert frames_of(got.take(got.iface == i)) == s  # per-interface order kept
    assert len(got) == 500
    # A pcapng written from the batches names each frame's interface (tshark reads it back).
    out = tmp_path / "both.pcapng"
    with PcapngWriter(out) as w:
        w.write(got)
    fields = subprocess.run(
        [need_tool("tshark"), "-r", str(out), "-T", "fields", "-e", "frame.interface_name"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert fields == [f"vb{i}" for i in got.iface.tolist()]


@live
def test_loopback_frames_appear_once_like_tcpdump(topo: Topology, tmp_path: Path) -> None:
    td = Tcpdump(topo.ns_b, "lo", tmp_path / "lo.pcap")
    try:
        src = open_in(topo.ns_b, ["lo"], timeout_ms=50)
        with enter_netns(topo.ns_b):
            rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            rx.bind(("127.0.0.1", 0))
            tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            for i in range(50):
                tx.sendto(bytes([i]) * (i * 20), rx.getsockname())
            rx.close()
            tx.close()
        want = td.stop()
        got = drain(src, 50)
    finally:
        td.kill()
    assert len(got) == 50  # not 100: the outgoing copy of each loopback frame is skipped
    assert got.interfaces[0].linktype == 1
    mine = [(int(got.ts_ns[i]), got.frame_bytes(i), int(got.wirelen[i])) for i in range(len(got))]
    assert mine == want


TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000


@live
def test_raw_ip_interface_mixed_with_ethernet(topo: Topology, tmp_path: Path) -> None:
    from scapy.layers.inet import IP, UDP
    from scapy.layers.inet6 import IPv6

    ns = topo.ns_b
    subprocess.run(["ip", "-n", ns, "tuntap", "add", "mode", "tun", "name", "t0"], check=True)
    with enter_netns(ns):
        tun = os.open("/dev/net/tun", os.O_RDWR)
        fcntl.ioctl(tun, TUNSETIFF, struct.pack("16sH22x", b"t0", IFF_TUN | IFF_NO_PI))
    try:
        subprocess.run(["ip", "-n", ns, "addr", "add", "10.99.0.1/24", "dev", "t0"], check=True)
        subprocess.run(["ip", "-n", ns, "link", "set", "t0", "up"], check=True)
        # Raw IPv4 and IPv6 packets to addresses nobody owns: the kernel drops them silently.
        packets = [
            bytes(
                IP(src="198.51.100.7", dst="203.0.113.9")
                / UDP(sport=1000 + i, dport=53)
                / (b"q" * i)
            )
            if i % 3
            else bytes(IPv6(src="2001:db8::1", dst="2001:db8::2") / UDP(sport=i, dport=9))
            for i in range(60)
        ]
        ethernet = list(traffic())
        pcap = write_pcap(tmp_path / "sent.pcap", ethernet)
        td = Tcpdump(ns, "t0", tmp_path / "t0.pcap", "udp")
        try:
            src = open_in(ns, ["vb0", "t0"], bpf="udp", timeout_ms=50)
            assert [(i.name, i.linktype) for i in src.interfaces] == [("vb0", 1), ("t0", 101)]
            for p in packets:
                os.write(tun, p)
            replay(topo.ns_a, "va0", pcap, pps=5000)
            want = td.stop()
            udp_eth = [f for f in ethernet if _is_udp(f)]
            got = drain(src, len(packets) + len(udp_eth))
        finally:
            td.kill()
    finally:
        os.close(tun)
    raw = got.take(got.iface == 1)
    assert frames_of(raw) == packets
    assert (raw.linktype == 101).all()
    assert [
        (int(t), b, int(w)) for t, b, w in zip(raw.ts_ns, frames_of(raw), raw.wirelen, strict=True)
    ] == want
    assert frames_of(got.take(got.iface == 0)) == udp_eth


def _is_udp(frame: bytes) -> bool:
    """Whether tcpdump's live ``udp`` selects this Ethernet frame (VLAN tags stripped first)."""
    from scapy.layers.inet import UDP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Dot1AD, Ether

    pkt = Ether(frame)
    if pkt.haslayer(Dot1AD):
        return False  # the inner 802.1Q tag stays in the frame: the kernel sees 0x8100
    return (pkt.haslayer(UDP) and not pkt.haslayer(IPv6)) or (
        pkt.haslayer(IPv6) and pkt.haslayer(UDP)
    )


# --- drops, outgoing, promiscuous mode ------------------------------------------------------------


@live
@pytest.mark.parametrize("ring", [True, False], ids=["tpacket_v3", "recv-fallback"])
def test_kernel_drops_are_counted_exactly(topo: Topology, tmp_path: Path, ring: bool) -> None:
    sent = list(traffic())
    pcap = write_pcap(tmp_path / "sent.pcap", sent)
    loops = 25
    # A 1 MiB ring nobody reads while 10,000 frames arrive: most must be dropped.
    src = open_in(topo.ns_b, ["vb0"], buffer_mb=1, snaplen=2048, timeout_ms=50, ring=ring)
    replay(topo.ns_a, "va0", pcap, loop=loops)
    got = drain(src, 1, grace=1.0)
    assert src.stats.kernel_drops > 0
    assert len(got) + src.stats.kernel_drops == len(sent) * loops
    assert src.stats.frames == len(got)
    # The frames that made it are whole frames from the stream, in order.
    assert set(frames_of(got)) <= set(sent)


@live
def test_outgoing_frames_are_captured_unless_ignored(topo: Topology, tmp_path: Path) -> None:
    sent = list(traffic(100))
    pcap = write_pcap(tmp_path / "sent.pcap", sent)
    both = open_in(topo.ns_a, ["va0"], timeout_ms=50)
    incoming = open_in(topo.ns_a, ["va0"], timeout_ms=50, ignore_outgoing=True)
    replay(topo.ns_a, "va0", pcap, pps=5000)
    assert frames_of(drain(both, len(sent))) == sent
    assert len(drain(incoming, 1, timeout=0.5)) == 0


@live
@pytest.mark.parametrize("promisc", [True, False])
def test_promiscuous_mode_is_set_while_open(topo: Topology, promisc: bool) -> None:
    def flag() -> bool:
        # The kernel's promiscuity count (ip -d link); IFF_PROMISC only shows `ip link set promisc`.
        argv = ["ip", "-n", topo.ns_b, "-d", "-j", "link", "show", "vb0"]
        out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
        return bool(json.loads(out)[0]["promiscuity"])

    assert not flag()
    src = open_in(topo.ns_b, ["vb0"], promisc=promisc)
    assert flag() is promisc
    src.close()
    assert not flag()


# --- the interface going away -----------------------------------------------------------------------


@live
@pytest.mark.parametrize("ring", [True, False], ids=["tpacket_v3", "recv-fallback"])
@pytest.mark.parametrize("how", ["down", "delete"])
def test_interface_going_down_yields_frames_then_raises(
    topo: Topology, tmp_path: Path, how: str, ring: bool
) -> None:
    sent = list(traffic(150))
    pcap = write_pcap(tmp_path / "sent.pcap", sent)
    src = open_in(topo.ns_b, ["vb0"], timeout_ms=100, ring=ring)
    replay(topo.ns_a, "va0", pcap, pps=5000)
    action = ["set", "vb0", "down"] if how == "down" else ["del", "vb0"]
    subprocess.run(["ip", "-n", topo.ns_b, "link", *action], check=True)
    watchdog = threading.Timer(10, src.close)
    watchdog.start()
    t0 = time.monotonic()
    try:
        got, error = consume(src)
    finally:
        watchdog.cancel()
    assert isinstance(error, InterfaceError)
    assert str(error) == "vb0 went down"
    assert time.monotonic() - t0 < 2
    assert frames_of(FrameBatch.concat(got)) == sent  # everything captured before it went down


@live
def test_down_interface_is_refused(topo: Topology) -> None:
    subprocess.run(["ip", "-n", topo.ns_b, "link", "set", "vb0", "down"], check=True)
    with pytest.raises(InterfaceError, match=r"^vb0 is down$"):
        open_in(topo.ns_b, ["vb0"])


# --- close ------------------------------------------------------------------------------------------


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@live
def test_close_from_another_thread_stops_capture_promptly(topo: Topology) -> None:
    fds = _open_fds()
    src = open_in(topo.ns_b, ["vb0"], timeout_ms=100)
    assert _open_fds() > fds
    closer = threading.Timer(0.3, src.close)
    t0 = time.monotonic()
    closer.start()
    assert list(src) == []  # no traffic: the loop only ends through close()
    assert time.monotonic() - t0 < 0.3 + 0.15
    assert _open_fds() == fds  # socket, ring and wake-up fd released
    src.close()  # twice is fine
    assert list(src) == []


@live
def test_close_from_a_signal_handler_in_the_capturing_thread(topo: Topology) -> None:
    # What the CLI's SIGTERM handler does: close() runs inside the capture loop's thread.
    fds = _open_fds()
    src = open_in(topo.ns_b, ["vb0"], timeout_ms=1000)
    old = signal.signal(signal.SIGALRM, lambda *_: src.close())
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        t0 = time.monotonic()
        assert list(src) == []
        assert time.monotonic() - t0 < 0.5  # woken at once, not after timeout_ms
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert _open_fds() == fds


@live
def test_close_between_batches_releases_and_ends_iteration(topo: Topology, tmp_path: Path) -> None:
    fds = _open_fds()
    pcap = write_pcap(tmp_path / "sent.pcap", list(traffic(100)))
    src = open_in(topo.ns_b, ["vb0"], timeout_ms=20, batch_size=10)
    replay(topo.ns_a, "va0", pcap, pps=5000)
    it = iter(src)
    assert len(next(it)) == 10
    src.close()
    assert _open_fds() == fds
    assert list(it) == []


# --- errors -------------------------------------------------------------------------------------------


@live
def test_unknown_interface_lists_the_existing_ones(topo: Topology) -> None:
    with pytest.raises(InterfaceError) as info:
        open_in(topo.ns_b, ["vb9"])
    assert str(info.value) == "no such interface 'vb9'; interfaces: lo, vb0"


@live
@pytest.mark.parametrize("expr", ["tcp prt 80", "host 999.1.1.1", "ether proto nosuch"])
def test_bad_filter_shows_libpcaps_message(topo: Topology, expr: str) -> None:
    td = subprocess.run(
        netns_cmd(topo.ns_b, [need_tool("tcpdump"), "-i", "vb0", "-d", expr]),
        capture_output=True,
        text=True,
    )
    assert td.returncode != 0
    message = td.stderr.strip().removeprefix("tcpdump: ")
    with pytest.raises(FilterError) as info:
        open_in(topo.ns_b, ["vb0"], bpf=expr)
    assert str(info.value) == f"bad filter {expr!r}: {message}"


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"interfaces": []}, "interfaces must be a non-empty list"),
        ({"interfaces": "eth0"}, "interfaces must be a non-empty list"),
        ({"interfaces": ["lo", "lo"]}, "interfaces repeats a name"),
        ({"snaplen": 0}, r"snaplen must be an integer from 1 to 262144, not 0"),
        ({"snaplen": 262145}, r"snaplen must be an integer from 1 to 262144"),
        ({"buffer_mb": 0}, r"buffer_mb must be an integer from 1 to 4096, not 0"),
        ({"batch_size": 0}, r"batch_size must be an integer from 1 to 1048576"),
        ({"timeout_ms": 1.5}, r"timeout_ms must be an integer from 1 to 60000, not 1.5"),
    ],
)
def test_bad_configuration_is_refused_before_opening(kw: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"interfaces": ["lo"], **kw}
    with pytest.raises(ConfigError, match=message):
        LiveSource(**args)  # type: ignore[arg-type]


def test_ring_geometry_holds_a_full_frame_in_every_block() -> None:
    assert _ring_geometry(64 << 20, 262144) == (1 << 20, 64)
    assert _ring_geometry(1 << 20, 262144) == (512 << 10, 2)
    assert _ring_geometry(1 << 20, 2048) == (128 << 10, 8)
    for mb in (1, 3, 64, 1000):
        for snap in (64, 1500, 65535, 262144):
            block, nr = _ring_geometry(mb << 20, snap)
            assert block & (block - 1) == 0 and block % 4096 == 0
            assert block >= snap + 256 and nr >= 2


def test_vlan_tags_are_reinserted_and_frames_cut_to_snaplen() -> None:
    frames = [bytes(range(i, i + 40)) for i in range(3)]
    data = np.frombuffer(b"".join(frames), dtype=np.uint8).copy()
    caplen = np.array([40, 40, 40], dtype=np.int64)
    vlan = np.array([False, True, True])
    tags = np.array([0, 0x8100_0123, 0x88A8_0FFF], dtype=np.uint32)
    out, cl, wl, off = _fix_frames(data, caplen, caplen + 1, vlan, tags, 42)
    got = [out[off[i] : off[i + 1]].tobytes() for i in range(3)]
    assert got == [
        frames[0],
        (frames[1][:12] + b"\x81\x00\x01\x23" + frames[1][12:])[:42],
        (frames[2][:12] + b"\x88\xa8\x0f\xff" + frames[2][12:])[:42],
    ]
    assert cl.tolist() == [40, 42, 42]
    assert wl.tolist() == [41, 45, 45]


# --- privileges -------------------------------------------------------------------------------------

_DROP_CHILD = """
import sys, threading
from wirelearn.capture import LiveSource, drop_privileges
src = LiveSource(["vb0"], timeout_ms=50)
drop_privileges("nobody")
print("ready", __import__("os").getpid(), flush=True)
sys.stdin.readline()
watchdog = threading.Timer(10, src.close)
watchdog.daemon = True
watchdog.start()
n = 0
for b in src:
    n += len(b)
    if n >= int(sys.argv[1]):
        break
print(n, flush=True)
watchdog.cancel()
src.close()
"""


@live
def test_capture_keeps_working_after_dropping_to_nobody(topo: Topology, tmp_path: Path) -> None:
    sent = list(traffic(100))
    pcap = write_pcap(tmp_path / "sent.pcap", sent)
    child = subprocess.Popen(
        netns_cmd(topo.ns_b, [PYTHON, "-c", _DROP_CHILD, str(len(sent))]),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert child.stdout is not None and child.stdin is not None
        ready = child.stdout.readline().split()
        assert ready[0] == "ready", child.stderr.read() if child.stderr else ""
        status = Path(f"/proc/{ready[1]}/status").read_text()
        fields = dict(line.split(":", 1) for line in status.splitlines())
        assert fields["Uid"].split() == ["65534"] * 4
        assert fields["Gid"].split() == ["65534"] * 4
        assert fields["Groups"].split() == ["65534"]
        for cap in ("CapEff", "CapPrm", "CapInh", "CapAmb"):
            assert int(fields[cap], 16) == 0, cap
        replay(topo.ns_a, "va0", pcap, pps=5000)
        child.stdin.write("go\n")
        child.stdin.flush()
        out, err = child.communicate(timeout=20)
        assert child.returncode == 0, err
        assert int(out.split()[-1]) == len(sent)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_unknown_user_is_a_config_error() -> None:
    with pytest.raises(
        ConfigError, match=r"^unknown user 'no-such-user-x' for dropping privileges$"
    ):
        drop_privileges("no-such-user-x")


_AS_NOBODY = """
import sys
from wirelearn.capture import LiveSource, drop_privileges
from wirelearn.errors import WirelearnError
try:
    {call}
except WirelearnError as exc:
    print(f"wirelearn: {{exc}}", file=sys.stderr)
    sys.exit(exc.exit_code)
"""


def _as_nobody(call: str) -> subprocess.CompletedProcess[str]:
    setpriv = need_tool("setpriv")
    argv = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"]
    return subprocess.run(
        [*argv, PYTHON, "-c", _AS_NOBODY.format(call=call)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )


@live
def test_without_privileges_the_message_is_clear_and_has_no_traceback() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to become nobody")
    proc = _as_nobody('LiveSource(["lo"])')
    assert proc.stderr == "wirelearn: needs root or CAP_NET_RAW: run with sudo\n"
    assert proc.returncode == PrivilegeError.exit_code == 4
    proc = _as_nobody('drop_privileges("root")')
    assert proc.stderr == "wirelearn: cannot switch to user 'root': needs root\n"
    assert proc.returncode == 4


# --- list_interfaces ----------------------------------------------------------------------------------


def _ip_json(ns: str | None) -> list[dict[str, object]]:
    argv = ["ip", "-j", "addr", "show"] if ns is None else ["ip", "-n", ns, "-j", "addr", "show"]
    data: list[dict[str, object]] = json.loads(
        subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    )
    return data


def _compare_with_ip(ns: str | None) -> None:
    if ns is None:
        mine = list_interfaces()
    else:
        with enter_netns(ns):
            mine = list_interfaces()
    theirs = _ip_json(ns)
    assert [i.name for i in mine] == [t["ifname"] for t in theirs]
    for m, t in zip(mine, theirs, strict=True):
        assert m.index == t["ifindex"]
        assert m.mtu == t["mtu"]
        flags = t["flags"]
        assert isinstance(flags, list)
        assert m.up == ("UP" in flags)
        assert m.promisc == ("PROMISC" in flags)
        if t.get("link_type") == "ether":
            assert m.mac == t["address"] and m.linktype == 1
        addr_info = t.get("addr_info", [])
        assert isinstance(addr_info, list)
        v4 = [f"{a['local']}/{a['prefixlen']}" for a in addr_info if a["family"] == "inet"]
        v6 = [f"{a['local']}/{a['prefixlen']}" for a in addr_info if a["family"] == "inet6"]
        assert sorted(m.ipv4) == sorted(v4)
        assert sorted(m.ipv6) == sorted(v6)


def test_list_interfaces_agrees_with_ip() -> None:
    _compare_with_ip(None)


@live
def test_list_interfaces_inside_a_namespace(topo: Topology) -> None:
    _compare_with_ip(topo.ns_b)
    with enter_netns(topo.ns_b):
        vb0 = next(i for i in list_interfaces() if i.name == "vb0")
        lo = next(i for i in list_interfaces() if i.name == "lo")
    assert (vb0.mac, vb0.ipv4, vb0.state, vb0.linktype) == (
        topo.link.mac_b,
        ("10.77.0.2/24",),
        "up",
        1,
    )
    assert (lo.arphrd, lo.linktype, lo.ipv4) == (772, 1, ("127.0.0.1/8",))
    subprocess.run(["ip", "-n", topo.ns_b, "link", "set", "vb0", "down"], check=True)
    with enter_netns(topo.ns_b):
        assert next(i for i in list_interfaces() if i.name == "vb0").state == "down"
    subprocess.run(["ip", "-n", topo.ns_a, "link", "set", "va0", "down"], check=True)
    subprocess.run(["ip", "-n", topo.ns_b, "link", "set", "vb0", "up"], check=True)
    with enter_netns(topo.ns_b):
        assert next(i for i in list_interfaces() if i.name == "vb0").state == "no-carrier"


# --- BackgroundSource -------------------------------------------------------------------------------


def _batches(n: int, size: int = 5) -> list[FrameBatch]:
    return [
        FrameBatch.from_frames([bytes([i, j]) * 10 for j in range(size)], first_frame=1 + i * size)
        for i in range(n)
    ]


class _Failing(Source):
    """Yields its batches, then raises."""

    def __init__(self, batches: list[FrameBatch], error: Exception) -> None:
        super().__init__()
        self._items, self._error = batches, error

    def _batches(self) -> Iterator[FrameBatch]:
        yield from self._items
        raise self._error


class _Endless(Source):
    """Yields a batch every millisecond until closed."""

    def _batches(self) -> Iterator[FrameBatch]:
        while not self.closed:
            time.sleep(0.001)
            yield FrameBatch.from_frames([b"x" * 60])


def test_background_keeps_order() -> None:
    batches = _batches(50)
    bg = BackgroundSource(MemorySource(batches), max_batches=64)
    got = list(bg)
    assert [frames_of(b) for b in got] == [frames_of(b) for b in batches]
    assert FrameBatch.concat(got).frame.tolist() == list(range(1, 251))
    assert bg.stats.frames == 250 and bg.stats.queue_dropped == 0
    assert not bg.running


def test_background_raises_after_the_batches_before_the_error() -> None:
    batches = _batches(3)
    bg = BackgroundSource(_Failing(batches, InputError("boom", path="x.pcap")), max_batches=2)
    bg.start()
    while bg.running:  # let the producer finish: with room for 2, one batch is dropped
        time.sleep(0.01)
    got, error = consume(bg)
    assert isinstance(error, InputError)
    assert str(error) == "x.pcap: boom"
    assert [frames_of(b) for b in got] == [frames_of(b) for b in batches[:2]]
    assert bg.stats.queue_dropped == 1


def test_background_never_blocks_on_a_slow_consumer_and_counts_drops() -> None:
    batches = _batches(100, size=7)
    bg = BackgroundSource(MemorySource(batches), max_batches=4)
    bg.start()
    deadline = time.monotonic() + 5
    while bg.running and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not bg.running  # the capture side finished although nobody consumed
    assert bg.depth() == 4 == bg.stats.queue_depth
    assert bg.stats.queue_dropped == 96
    assert bg.dropped_frames == 96 * 7
    assert bg.stats.frames == 700  # the inner source counted everything it captured
    assert any("dropped 1 batches (7 frames)" in w for w in bg.stats.warnings)
    got = list(bg)
    assert [frames_of(b) for b in got] == [frames_of(b) for b in batches[:4]]
    assert bg.depth() == 0


def test_background_close_stops_the_thread_and_the_inner_source() -> None:
    inner = _Endless()
    bg = BackgroundSource(inner, max_batches=8)
    it = iter(bg)
    assert len(next(it)) == 1
    t0 = time.monotonic()
    bg.close()
    assert time.monotonic() - t0 < 1
    assert not bg.running and inner.closed
    assert list(it) == []
    bg.close()


def test_background_validates_max_batches() -> None:
    with pytest.raises(ConfigError, match="max_batches must be an integer of at least 1, not 0"):
        BackgroundSource(MemorySource([]), max_batches=0)


@live
def test_background_live_capture_and_prompt_close(topo: Topology, tmp_path: Path) -> None:
    sent = list(traffic())
    pcap = write_pcap(tmp_path / "sent.pcap", sent)
    bg = BackgroundSource(open_in(topo.ns_b, ["vb0"], timeout_ms=50), max_batches=64)
    bg.start()
    replay(topo.ns_a, "va0", pcap, pps=5000)
    got = drain(bg, len(sent))
    assert frames_of(got) == sent
    assert bg.interfaces[0].name == "vb0"
    assert not bg.running and bg.inner.closed
