"""BPF filters: libpcap compiles, wirelearn runs the program over whole batches.

The oracles are real: tcpdump (``-ddd`` for the compiled code, ``-w`` for the
frames it selects), libpcap's own ``bpf_filter``/``bpf_image`` through ctypes,
and a small scalar interpreter written here straight from libpcap's
``bpf_filter.c``.
"""

from __future__ import annotations

import csv
import ctypes
import ctypes.util
import socket
import struct
import subprocess
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from conftest import FIXTURES, SHARED_CAPTURES, need_tool, shared_captures_available
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wirelearn.capture import (
    BpfFilter,
    BpfProgram,
    FrameBatch,
    Interface,
    _bpf,
    compile_bpf,
    encode_pcap_header,
    encode_pcap_records,
    open_capture,
    run_bpf,
)
from wirelearn.capture._bpf import SO_ATTACH_FILTER, VALID_CODES, run_bpf_values
from wirelearn.errors import ConfigError, DependencyError, FilterError

BPF_FIXTURES = FIXTURES / "bpf"

# --- reading captures -----------------------------------------------------------------------


@cache
def load(path: Path) -> FrameBatch:
    """Every frame of a capture file, in one batch."""
    with open_capture(path) as source:
        batches = list(source)
    return FrameBatch.concat(batches) if batches else FrameBatch.empty()


# --- tcpdump as the oracle --------------------------------------------------------------------


def _parse_pcap(raw: bytes) -> list[tuple[bytes, int]]:
    """(bytes, wire length) of each record of a pcap stream, as tcpdump -w writes it."""
    if not raw:
        return []
    magic = raw[:4]
    endian = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    out = []
    pos = 24
    while pos + 16 <= len(raw):
        _, _, caplen, wirelen = struct.unpack_from(endian + "IIII", raw, pos)
        out.append((raw[pos + 16 : pos + 16 + caplen], wirelen))
        pos += 16 + caplen
    return out


class Refused(Exception):
    """tcpdump could not compile the expression; the argument is its message."""


def tcpdump_select(path: Path, expression: str) -> list[tuple[bytes, int]]:
    """The frames ``tcpdump -r path -w - expression`` writes, in order."""
    tool = need_tool("tcpdump")
    proc = subprocess.run(
        [tool, "-r", str(path), "-w", "-", expression], capture_output=True, timeout=60
    )
    if proc.returncode != 0 and not proc.stdout:
        message = proc.stderr.decode().strip().splitlines()[-1]
        raise Refused(message.removeprefix("tcpdump: "))
    return _parse_pcap(proc.stdout)


def ours_select(batch: FrameBatch, expression: str, linktype: int) -> list[tuple[bytes, int]]:
    """The frames BpfFilter keeps, in the same form as ``tcpdump_select``."""
    kept = BpfFilter(expression, linktype=linktype).filter(batch)
    return [(kept.frame_bytes(i), int(kept.wirelen[i])) for i in range(len(kept))]


def readable_alike(path: Path) -> FrameBatch | None:
    """The file's frames if tcpdump reads exactly the same frames as our loader, else None."""
    try:
        batch = load(path)
    except Exception:
        return None
    if len({i.linktype for i in batch.interfaces}) != 1:
        return None
    try:
        theirs = tcpdump_select(path, "")
    except Refused:
        return None
    mine = [(batch.frame_bytes(i), int(batch.wirelen[i])) for i in range(len(batch))]
    return batch if theirs == mine else None


def compare_with_tcpdump(path: Path, batch: FrameBatch, expression: str) -> str | None:
    """None when wirelearn and tcpdump agree on ``expression`` for this file, else why not."""
    linktype = batch.interfaces[0].linktype
    try:
        theirs = tcpdump_select(path, expression)
    except Refused as refused:
        try:
            BpfFilter(expression, linktype=linktype)
        except FilterError as exc:
            # The message is libpcap's, verbatim, as tcpdump prints it.
            if str(exc) != f"bad filter '{expression}': {refused.args[0]}":
                return f"{path.name} {expression!r}: message {exc} vs tcpdump's {refused}"
            return None
        return f"{path.name} {expression!r}: tcpdump refused ({refused}), wirelearn did not"
    try:
        mine = ours_select(batch, expression, linktype)
    except FilterError as exc:
        return f"{path.name} {expression!r}: wirelearn refused ({exc}), tcpdump did not"
    if mine != theirs:
        return f"{path.name} {expression!r}: wirelearn kept {len(mine)}, tcpdump {len(theirs)}"
    return None


EXPRESSIONS = [
    "",
    "tcp",
    "udp",
    "icmp",
    "icmp6",
    "arp",
    "ip",
    "ip6",
    "not arp",
    "tcp port 80",
    "port 53",
    "udp port 67 or udp port 68",
    "portrange 1-1023",
    "tcp portrange 170-200",
    "tcp dst portrange 1024-65535",
    "host 10.0.0.1",
    "host 10.0.0.1 and (udp or icmp)",
    "net 192.168.0.0/16",
    "src net 10.0.0.0/8 or dst net 172.16.0.0/12",
    "vlan",
    "vlan and tcp",
    "vlan 100",
    "vlan and vlan",
    "tcp[tcpflags] & tcp-syn != 0",
    "tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn",
    "ip[8] < 64",
    "ip[2:2] > 500",
    "ip[0] & 0xf != 5",
    "ether host ff:ff:ff:ff:ff:ff",
    "ether broadcast",
    "ether multicast",
    "greater 100",
    "less 60",
    "len >= 200 and len <= 800",
    "ip6 and tcp",
    "ip6 protochain 6",
    "ip6 multicast",
    "ip and not (tcp or udp)",
    "not (tcp port 179 or udp)",
    "ip proto 47",
    "icmp[icmptype] = icmp-echo or icmp[icmptype] = icmp-echoreply",
    "icmp6 and ip6[40] = 135",
    "udp[8:2] = 0x1234 or udp[4:2] / 2 > 100",
    "ip[2:2] % 7 = 3",
    "ip[1] ^ 0xff = 0xff",
    "ip[2:2] * 3 > 1000",
    "tcp[2:2] - tcp[0:2] > 10000",
    "tcp and (((ip[2:2] - ((ip[0]&0xf)<<2)) - ((tcp[12]&0xf0)>>2)) != 0)",
    "mpls",
    "pppoed or pppoes",
    "ip host 10.1.1.1 or ip6 host fe80::1",
]

FIXTURE_FILES = sorted(p.name for p in BPF_FIXTURES.glob("*.pcap*"))


def test_fixture_set_covers_the_link_types() -> None:
    linktypes = {load(BPF_FIXTURES / name).interfaces[0].linktype for name in FIXTURE_FILES}
    # Ethernet (incl. VLAN, QinQ), NULL, RAW, SLL, SLL2, IPV4, IPV6.
    assert {0, 1, 101, 113, 228, 229, 276} <= linktypes


@pytest.mark.parametrize("name", FIXTURE_FILES)
def test_fixture_selection_equals_tcpdump(name: str) -> None:
    path = BPF_FIXTURES / name
    batch = readable_alike(path)
    assert batch is not None, f"tcpdump and the loader read {name} differently"
    with ThreadPoolExecutor(4) as pool:
        problems = [
            p
            for p in pool.map(lambda e: compare_with_tcpdump(path, batch, e), EXPRESSIONS)
            if p is not None
        ]
    assert problems == []


def generated_traffic(seed: int = 1) -> tuple[list[bytes], list[int]]:
    """Ethernet frames of many kinds, built with scapy; some cut short (caplen < len)."""
    from scapy.contrib.mpls import MPLS
    from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_NOP
    from scapy.layers.inet6 import (
        ICMPv6ND_NS,
        IPv6,
        IPv6ExtHdrDestOpt,
        IPv6ExtHdrFragment,
        IPv6ExtHdrHopByHop,
        IPv6ExtHdrRouting,
    )
    from scapy.layers.l2 import ARP, GRE, Dot1AD, Dot1Q, Ether
    from scapy.layers.ppp import PPP, PPPoE, PPPoED
    from scapy.packet import Raw

    rng = np.random.default_rng(seed)
    hosts = ["10.0.0.1", "10.0.0.2", "192.168.1.7", "172.16.5.4", "8.8.8.8"]
    hosts6 = ["fe80::1", "2001:db8::2", "ff02::1", "2001:db8::99"]
    macs = ["02:00:00:00:00:01", "ff:ff:ff:ff:ff:ff", "01:00:5e:00:00:fb", "33:33:00:00:00:01"]
    ports = [80, 53, 22, 179, 443, 67, 68, 1000, 1500, 40000]

    def pick(seq: Sequence[object]) -> object:
        return seq[int(rng.integers(len(seq)))]

    def payload() -> Raw:
        return Raw(
            bytes(rng.integers(0, 256, int(rng.choice([0, 4, 30, 200, 700])), dtype=np.uint8))
        )

    def l4() -> object:
        kind = int(rng.integers(4))
        if kind == 3:
            return GRE() / IP(src=pick(hosts), dst=pick(hosts)) / UDP() / payload()
        if kind == 0:
            flags = str(pick(["S", "SA", "A", "FA", "R", "PA"]))
            return TCP(sport=pick(ports), dport=pick(ports), flags=flags) / payload()
        if kind == 1:
            return UDP(sport=pick(ports), dport=pick(ports)) / payload()
        return ICMP(type=pick([0, 8, 3, 11])) / payload()

    def ip() -> object:
        extra: dict[str, object] = {} if rng.random() < 0.9 else {"frag": 100}
        if rng.random() < 0.1:
            extra["options"] = [IPOption_NOP()] * 4  # a 24-byte header
        return IP(src=pick(hosts), dst=pick(hosts), ttl=int(rng.integers(1, 256)), **extra) / l4()

    def ip6() -> object:
        ext = [IPv6ExtHdrHopByHop(), IPv6ExtHdrRouting(), IPv6ExtHdrDestOpt(), IPv6ExtHdrFragment()]
        pkt = IPv6(src=pick(hosts6), dst=pick(hosts6))
        for _ in range(int(rng.integers(3))):
            pkt = pkt / pick(ext)
        if rng.random() < 0.2:
            return pkt / ICMPv6ND_NS(tgt=pick(hosts6))
        inner = l4()
        return pkt / (inner if not isinstance(inner, ICMP) else UDP() / payload())

    def frame() -> object:
        eth = Ether(src=pick(macs[:1]), dst=pick(macs))
        kind = int(rng.integers(9))
        if kind in (0, 1, 2):
            return eth / ip()
        if kind == 3:
            return eth / ip6()
        if kind == 4:
            return eth / ARP(pdst=pick(hosts), psrc=pick(hosts))
        if kind == 5:
            return eth / Dot1Q(vlan=pick([100, 200])) / (ip() if rng.random() < 0.7 else ip6())
        if kind == 6:
            return eth / Dot1AD(vlan=300) / Dot1Q(vlan=pick([100, 7])) / ip()
        if kind == 7:
            return eth / MPLS(label=16, s=1) / ip()
        if rng.random() < 0.5:
            return eth / PPPoED()
        return eth / PPPoE() / PPP(proto=0x0021) / ip()

    frames: list[bytes] = []
    wirelen: list[int] = []
    for _ in range(400):
        raw = bytes(frame())  # type: ignore[call-overload]
        cut = len(raw) if rng.random() < 0.85 else int(rng.integers(0, len(raw) + 1))
        frames.append(raw[:cut])
        wirelen.append(len(raw))
    return frames, wirelen


def test_generated_traffic_selection_equals_tcpdump(tmp_path: Path) -> None:
    frames, wirelen = generated_traffic()
    batch = FrameBatch.from_frames(frames, wirelen=wirelen)
    path = tmp_path / "generated.pcap"
    path.write_bytes(encode_pcap_header(1, 65535) + encode_pcap_records(batch))
    assert readable_alike(path) is not None
    with ThreadPoolExecutor(4) as pool:
        problems = [
            p
            for p in pool.map(lambda e: compare_with_tcpdump(path, batch, e), EXPRESSIONS)
            if p is not None
        ]
    assert problems == []
    # Every expression selects some but not all of these frames.
    flat = [e for e in EXPRESSIONS if e and e not in ("not arp", "ip6 multicast")]
    empty = [e for e in flat if not BpfFilter(e).mask(batch).any()]
    full = [e for e in flat if BpfFilter(e).mask(batch).all()]
    assert (empty, full) == ([], [])


def test_fixtures_select_something() -> None:
    """The comparisons above are not all empty-vs-empty."""
    path = BPF_FIXTURES / "ldp-common-session.pcap"
    batch = load(path)
    counts = {e: len(ours_select(batch, e, 1)) for e in ("vlan", "udp", "tcp port 646")}
    assert all(0 < c < len(batch) for c in counts.values()), counts


@pytest.mark.corpus
@pytest.mark.slow
def test_corpus_selection_equals_tcpdump() -> None:
    if not shared_captures_available():
        pytest.skip(f"no shared captures at {SHARED_CAPTURES}")
    with open(SHARED_CAPTURES / "MANIFEST.tsv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh, delimiter="\t") if r["format"] in ("pcap", "pcapng")]
    exprs = [
        "",
        "tcp port 80",
        "host 10.0.0.1 and (udp or icmp)",
        "vlan and tcp",
        "tcp[tcpflags] & tcp-syn != 0",
        "ip[8] < 64",
        "ip6 and tcp",
        "not arp",
        "greater 100",
        "udp portrange 50-600",
        "ip6 protochain 17",
        "ether src 00:00:00:00:00:00 or wlan host 00:00:00:00:00:00",
    ]

    def one(row: dict[str, str]) -> tuple[int, list[str]]:
        path = SHARED_CAPTURES / row["local_file"]
        batch = readable_alike(path)
        if batch is None:
            return 0, []
        return 1, [p for e in exprs if (p := compare_with_tcpdump(path, batch, e)) is not None]

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(one, rows))
    compared = sum(r[0] for r in results)
    problems = [p for r in results for p in r[1]]
    assert compared >= 0.8 * len(rows), f"only {compared} of {len(rows)} files compared"
    assert problems == []


# --- compiling ---------------------------------------------------------------------------------


def _tcpdump_program(path: Path, expression: str, flag: str) -> str:
    proc = subprocess.run(
        [need_tool("tcpdump"), flag, "-r", str(path), expression],
        capture_output=True,
        text=True,
        check=True,
    )
    return proc.stdout


# One file per link type, and a pcapng.
COMPILE_FILES = [
    "ldp-common-session.pcap",
    "babel.pcap",
    "decode-sll2-01.pcap",
    "payload-syn.pcap",
    "dns-badcookie.pcap",
    "ipv6_mobility_1.pcap",
    "scps_invalid.pcap",
    "OSPFv2_Capture_FINAL.pcapng",
]


@pytest.mark.parametrize("name", COMPILE_FILES)
@pytest.mark.parametrize("expression", ["tcp port 80", "ip6 protochain 6", "udp or arp", ""])
def test_compiled_program_and_dump_equal_tcpdumps(name: str, expression: str) -> None:
    path = BPF_FIXTURES / name
    with open(path, "rb") as fh:
        head = fh.read(24)
    if head[:4] == b"\x0a\x0d\x0d\x0a":  # pcapng: the section header's byte-order magic
        little = head[8:12] == b"\x4d\x3c\x2b\x1a"
        order = "little" if little else "big"
        e = "<" if little else ">"
        raw = path.read_bytes()
        idb = struct.unpack_from(e + "I", raw, 4)[0]  # the first interface follows the SHB
        linktype, _, snaplen = struct.unpack_from(e + "HHI", raw, idb + 8)
    else:
        little = head[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1")
        order = "little" if little else "big"
        snaplen, linktype = struct.unpack(("<" if little else ">") + "II", head[16:24])
    try:
        program = compile_bpf(expression, linktype, snaplen, byte_order=order)
    except FilterError:
        with pytest.raises(subprocess.CalledProcessError):
            _tcpdump_program(path, expression, "-ddd")
        return
    lines = _tcpdump_program(path, expression, "-ddd").split("\n")
    expected = [[int(v) for v in line.split()] for line in lines[1 : 1 + int(lines[0])]]
    assert program.instructions.tolist() == expected
    assert program.dump() == _tcpdump_program(path, expression, "-d").rstrip("\n")


def test_bad_expression_raises_filter_error_with_libpcaps_message() -> None:
    with pytest.raises(FilterError) as info:
        compile_bpf("tcp prt 80", 1)
    proc = subprocess.run(
        [need_tool("tcpdump"), "-d", "-y", "EN10MB", "tcp prt 80"], capture_output=True, text=True
    )
    libpcap_message = proc.stderr.strip().removeprefix("tcpdump: ")
    assert str(info.value) == f"bad filter 'tcp prt 80': {libpcap_message}"
    assert "syntax error" in str(info.value)
    assert info.value.exit_code == 2
    with pytest.raises(FilterError, match="NUL"):
        compile_bpf("tcp\x00 or udp", 1)
    with pytest.raises(ConfigError, match="link type"):
        compile_bpf("tcp", -1)


def test_bpffilter_validates_eagerly_against_ethernet() -> None:
    with pytest.raises(FilterError, match=r"bad filter 'ip hots 1\.2\.3\.4'"):
        BpfFilter("ip hots 1.2.3.4")
    with pytest.raises(FilterError, match=r"802\.11"):
        BpfFilter("wlan type mgt")
    # The capture's own link type can be given for link-type-specific expressions.
    assert BpfFilter("wlan type mgt", linktype=127).program(127) is not None


def test_live_and_file_compilation_differ_where_libpcap_does() -> None:
    # A live Linux handle reads the packet type from the kernel; files have none.
    assert len(compile_bpf("inbound", 1)) > 0
    with pytest.raises(FilterError, match="savefiles"):
        compile_bpf("inbound", 1, byte_order="little")
    with pytest.raises(FilterError, match="savefiles"):
        BpfFilter("inbound")
    # NULL: the address family is in the capturing host's byte order, and a file is
    # matched against every BSD's AF_INET6 (24, 28, 30) rather than this host's.
    live = compile_bpf("ip6", 0).instructions[:, 3].tolist()
    little = compile_bpf("ip6", 0, byte_order="little").instructions[:, 3].tolist()
    big = compile_bpf("ip6", 0, byte_order="big").instructions[:, 3].tolist()
    assert 0x0A000000 in live
    assert {0x18000000, 0x1C000000, 0x1E000000} <= set(little)
    assert {24, 28, 30} <= set(big)
    with pytest.raises(ConfigError, match="byte_order"):
        compile_bpf("ip", 0, byte_order="middle")  # type: ignore[arg-type]


def test_null_frames_of_either_byte_order(tmp_path: Path) -> None:
    """NULL frames from a little- and a big-endian host: each matched in its own order."""
    path = BPF_FIXTURES / "dns-badcookie.pcap"  # little-endian
    batch = load(path)
    frames = [batch.frame_bytes(i) for i in range(len(batch))]
    swapped = [f[3::-1] + f[4:] for f in frames]  # the AF word as a big-endian host writes it
    big_path = tmp_path / "big-endian.pcap"
    records = b"".join(struct.pack(">IIII", 0, 0, len(f), len(f)) + f for f in swapped)
    big_path.write_bytes(struct.pack(">IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 0) + records)
    both = FrameBatch.from_frames(frames + swapped, linktype=0)
    for expression in ("ip", "udp port 53", "not ip6", "ip6"):
        mask = BpfFilter(expression).mask(both)
        mine = [(f, len(f)) for f, m in zip(frames + swapped, mask, strict=True) if m]
        assert mine == tcpdump_select(path, expression) + tcpdump_select(big_path, expression)
        assert mask[: len(frames)].tolist() == mask[len(frames) :].tolist()


def test_linktype_values_map_to_libpcaps_dlt() -> None:
    raw = compile_bpf("tcp", 12)
    assert compile_bpf("tcp", 101) == raw  # LINKTYPE_RAW is DLT_RAW on Linux
    assert compile_bpf("tcp", 14) == raw  # OpenBSD's DLT_RAW, in files written there
    assert compile_bpf("tcp", 1 | 0x10000000) == compile_bpf("tcp", 1)  # FCS bits ignored
    assert compile_bpf("tcp", 101).linktype == 101
    with pytest.raises(FilterError, match="147"):
        compile_bpf("tcp", 147)  # USER0: libpcap has no filtering for it
    # Snaplen 0 (unlimited) compiles to libpcap's maximum, as when it reads such a file.
    assert compile_bpf("", 1, 0).instructions.tolist() == [[6, 0, 0, 262144]]


def test_libpcap_missing_is_a_dependency_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_lib(name: str, *args: object, **kwargs: object) -> ctypes.CDLL:
        raise OSError(f"{name}: cannot open shared object file")

    _bpf._libpcap.cache_clear()
    monkeypatch.setattr(_bpf.ctypes, "CDLL", no_lib)
    try:
        with pytest.raises(DependencyError, match=r"libpcap0\.8"):
            compile_bpf("tcp", 1)
    finally:
        monkeypatch.undo()
        _bpf._libpcap.cache_clear()
    assert len(compile_bpf("tcp", 1)) > 0


# --- BpfFilter over batches ---------------------------------------------------------------------


def _mixed_batch(names: Sequence[str]) -> tuple[FrameBatch, list[int]]:
    """One batch holding every frame of several files, one interface per file."""
    parts = [load(BPF_FIXTURES / n) for n in names]
    frames = [b.frame_bytes(i) for b in parts for i in range(len(b))]
    wirelen = np.concatenate([b.wirelen for b in parts])
    iface = np.repeat(np.arange(len(parts)), [len(b) for b in parts])
    interfaces = tuple(b.interfaces[0] for b in parts)
    return FrameBatch.from_frames(frames, wirelen=wirelen, interfaces=interfaces, iface=iface), [
        len(b) for b in parts
    ]


MIXED = [
    "ldp-common-session.pcap",  # EN10MB with VLAN
    "babel.pcap",  # LINUX_SLL
    "decode-sll2-01.pcap",  # LINUX_SLL2
    "payload-syn.pcap",  # RAW (101)
    "dns-badcookie.pcap",  # NULL
    "ipv6_mobility_1.pcap",  # IPV6
    "bgp-4byte-asn.pcap",  # EN10MB again: a second interface of the same link type
]


@pytest.mark.parametrize("expression", ["tcp", "udp and ip6", "ip[8] < 64", "greater 90", ""])
def test_multi_linktype_batch_equals_tcpdump_per_file(expression: str) -> None:
    batch, sizes = _mixed_batch(MIXED)
    # Shuffle the frames so that link types interleave within the batch.
    order = np.random.default_rng(7).permutation(len(batch))
    shuffled = batch.take(order)
    mask = BpfFilter(expression).mask(shuffled)
    unshuffled = np.empty_like(mask)
    unshuffled[order] = mask
    start = 0
    for name, size in zip(MIXED, sizes, strict=True):
        part = batch.slice(start, start + size)
        mine = [
            (part.frame_bytes(i), int(part.wirelen[i]))
            for i in np.flatnonzero(unshuffled[start : start + size])
        ]
        try:
            theirs = tcpdump_select(BPF_FIXTURES / name, expression)
        except Refused as refused:
            # "ip[8] < 64" on IPv6 frames: libpcap says the expression rejects them all.
            reason = str(refused)
            theirs = []
            assert "rejects all packets" in reason
        assert mine == theirs, name
        start += size


def test_unsupported_linktype_frames_are_rejected_with_one_warning() -> None:
    eth = load(BPF_FIXTURES / "ldp-common-session.pcap")
    frames = [eth.frame_bytes(i) for i in range(len(eth))]
    # Interface 1 is USER0 (147), for which libpcap has no "vlan"/"tcp" code.
    batch = FrameBatch.from_frames(
        frames + frames,
        interfaces=(Interface(linktype=1), Interface(linktype=147)),
        iface=[0] * len(frames) + [1] * len(frames),
    )
    flt = BpfFilter("vlan and tcp")
    with pytest.warns(RuntimeWarning, match=r"147.*rejected") as record:
        mask = flt.mask(batch)
    assert len(record) == 1
    expected = ours_select(eth, "vlan and tcp", 1)
    assert [(batch.frame_bytes(i), int(batch.wirelen[i])) for i in np.flatnonzero(mask)] == expected
    assert not mask[len(frames) :].any()
    assert set(flt.unsupported) == {147}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.array_equal(flt.mask(batch), mask)  # no second warning


def test_expression_rejecting_a_whole_linktype() -> None:
    v6 = load(BPF_FIXTURES / "ipv6_mobility_1.pcap")  # link type IPV6: no IPv4 at all
    with pytest.raises(FilterError, match="rejects all packets"):
        compile_bpf("ip[8] < 64", 229)
    # Alone, like tcpdump on this file, it is refused ...
    with pytest.raises(FilterError, match="rejects all packets"):
        BpfFilter("ip[8] < 64").mask(v6)
    # ... but once another link type compiled, its frames are just rejected, silently.
    flt = BpfFilter("ip[8] < 64")
    eth = load(BPF_FIXTURES / "bgp-4byte-asn.pcap")
    assert flt.mask(eth).any()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not flt.mask(v6).any()
    assert flt.unsupported == {}


def test_no_linktype_compiling_is_a_filter_error() -> None:
    sll = load(BPF_FIXTURES / "babel.pcap")
    flt = BpfFilter("vlan")  # fine on Ethernet, refused on Linux cooked captures
    with pytest.raises(FilterError, match="no VLAN support for Linux cooked v1"):
        flt.mask(sll)
    user = FrameBatch.from_frames([b"\x00" * 40], linktype=147)
    with pytest.raises(FilterError, match="147"):
        BpfFilter("tcp").mask(user)


def test_empty_batch() -> None:
    empty = FrameBatch.empty((Interface(linktype=1),))
    program = compile_bpf("tcp", 1)
    assert run_bpf(program, empty).shape == (0,)
    assert run_bpf(program, empty).dtype == np.bool_
    flt = BpfFilter("tcp")
    assert flt.mask(empty).shape == (0,)
    assert len(flt.filter(empty)) == 0
    assert len(flt.filter(FrameBatch.empty())) == 0


def test_filter_keeps_frame_numbers() -> None:
    batch = load(BPF_FIXTURES / "dhcp-rfc4388.pcap")
    kept = BpfFilter("arp or icmp").filter(batch)
    assert 0 < len(kept) < len(batch)
    for i, number in enumerate(kept.frame.tolist()):
        assert kept.frame_bytes(i) == batch.frame_bytes(number - 1)


def test_run_bpf_refuses_a_batch_of_another_linktype() -> None:
    sll = load(BPF_FIXTURES / "babel.pcap")
    with pytest.raises(ConfigError, match="LINUX_SLL"):
        run_bpf(compile_bpf("udp", 1), sll)
    # Same DLT, different LINKTYPE spelling: fine.
    raw = load(BPF_FIXTURES / "payload-syn.pcap")
    assert run_bpf(compile_bpf("tcp", 12), raw).all()


def test_truncated_capture_matches_tcpdump() -> None:
    path = BPF_FIXTURES / "icmp-payload-trunc.pcap"
    batch = load(path)
    assert (batch.caplen < batch.wirelen).any()
    for expression in ("icmp[8:4] != 0", "icmp[40] = 0", "greater 100", "ip[2:2] > 40"):
        assert ours_select(batch, expression, 1) == tcpdump_select(path, expression)


# --- the interpreter against a scalar reference and libpcap's bpf_filter -----------------------


def reference(prog: Sequence[Sequence[int]], pkt: bytes, wirelen: int) -> int:
    """libpcap's bpf_filter, one frame at a time, written plainly (scratch memory zeroed)."""
    a = x = 0
    mem = [0] * 16
    pc = 0
    m32 = 0xFFFFFFFF

    def get(off: int, size: int) -> int | None:
        if off + size > len(pkt):
            return None
        return int.from_bytes(pkt[off : off + size], "big")

    for _ in range(1_000_000):
        code, jt, jf, k = prog[pc]
        pc += 1
        cls = code & 7
        if cls == 6:  # ret
            return k if code == 0x06 else a
        if cls in (0, 1):  # ld, ldx
            mode, size = code & 0xE0, {0: 4, 8: 2, 0x10: 1}[code & 0x18]
            if mode == 0x00:
                v: int | None = k
            elif mode == 0x60:
                v = mem[k]
            elif mode == 0x80:
                v = wirelen & m32
            elif mode == 0xA0:
                v = get(k, 1)
                v = None if v is None else (v & 0xF) << 2
            else:
                v = get(k + (x if mode == 0x40 else 0), size)
            if v is None:
                return 0
            if cls == 0:
                a = v
            else:
                x = v
        elif cls == 2:
            mem[k] = a
        elif cls == 3:
            mem[k] = x
        elif cls == 4:  # alu
            op = code & 0xF0
            r = x if code & 8 else k
            if op == 0x80:
                a = -a & m32
            elif op in (0x30, 0x90) and r == 0:
                return 0
            elif op == 0x00:
                a = (a + r) & m32
            elif op == 0x10:
                a = (a - r) & m32
            elif op == 0x20:
                a = (a * r) & m32
            elif op == 0x30:
                a = a // r
            elif op == 0x90:
                a = a % r
            elif op == 0x40:
                a = a | r
            elif op == 0x50:
                a = a & r
            elif op == 0xA0:
                a = a ^ r
            elif op == 0x60:
                a = (a << r) & m32 if r < 32 else 0
            else:
                a = a >> r if r < 32 else 0
        elif cls == 5:  # jmp
            if code == 0x05:
                pc += k - (1 << 32) if k & 0x80000000 else k
                continue
            r = x if code & 8 else k
            cond = {0x10: a == r, 0x20: a > r, 0x30: a >= r, 0x40: (a & r) != 0}[code & 0xF0]
            pc += jt if cond else jf
        else:  # misc
            if code == 0x07:
                x = a
            else:
                a = x
    return 0


class _Insn(ctypes.Structure):
    _fields_ = (
        ("code", ctypes.c_ushort),
        ("jt", ctypes.c_ubyte),
        ("jf", ctypes.c_ubyte),
        ("k", ctypes.c_uint32),
    )


@cache
def _pcap() -> ctypes.CDLL:
    lib = ctypes.CDLL(ctypes.util.find_library("pcap") or "libpcap.so.0.8")
    lib.bpf_filter.restype = ctypes.c_uint
    lib.bpf_filter.argtypes = (ctypes.POINTER(_Insn), ctypes.c_char_p, ctypes.c_uint, ctypes.c_uint)
    lib.bpf_validate.restype = ctypes.c_int
    lib.bpf_validate.argtypes = (ctypes.POINTER(_Insn), ctypes.c_int)
    lib.bpf_image.restype = ctypes.c_char_p
    lib.bpf_image.argtypes = (ctypes.POINTER(_Insn), ctypes.c_int)
    return lib


# Zero the scratch memory first: libpcap leaves it uninitialised.
MEM_PROLOGUE = [[0x00, 0, 0, 0]] + [[0x02, 0, 0, i] for i in range(16)]


def libpcap_filter(prog: Sequence[Sequence[int]], pkt: bytes, wirelen: int) -> int:
    full = MEM_PROLOGUE + [list(r) for r in prog]
    array = (_Insn * len(full))(*(_Insn(*r) for r in full))
    assert _pcap().bpf_validate(array, len(full)) == 1
    return int(_pcap().bpf_filter(array, pkt, wirelen, len(pkt)))


def check_all_agree(
    prog: Sequence[Sequence[int]], frames: Sequence[bytes], wirelen: Sequence[int]
) -> None:
    batch = FrameBatch.from_frames(list(frames), wirelen=list(wirelen))
    got = run_bpf_values(BpfProgram(prog), batch).tolist()
    want = [reference(prog, f, w) for f, w in zip(frames, wirelen, strict=True)]
    assert got == want
    assert [libpcap_filter(prog, f, w) for f, w in zip(frames, wirelen, strict=True)] == want
    assert run_bpf(BpfProgram(prog), batch).tolist() == [v != 0 for v in want]


FRAMES = [bytes((i * 37 + j * 11) % 256 for j in range(n)) for i, n in enumerate(range(0, 40, 3))]
WIRELEN = [len(f) + (i % 3) * 50 for i, f in enumerate(FRAMES)]


def _program_using(code: int) -> list[list[int]]:
    """A small program that runs ``code`` with interesting operands and returns A."""
    cls = code & 7
    setup = [[0x30, 0, 0, 3], [0x07, 0, 0, 0], [0x20, 0, 0, 4]]  # x = pkt[3]; a = pkt[4:8]
    if cls == 6:
        return [*setup, [code, 0, 0, 0xDEAD]]
    if cls == 5:
        if code == 0x05:
            return [*setup, [code, 0, 0, 1], [0x06, 0, 0, 1], [0x06, 0, 0, 2]]
        return [*setup, [code, 1, 0, 0x00FF00FF], [0x06, 0, 0, 1], [0x06, 0, 0, 2]]
    if cls == 4:
        k = {0x30: 7, 0x90: 7, 0x60: 5, 0x70: 9}.get(code & 0xF0, 0x12345678)
        return [*setup, [code, 0, 0, k], [0x16, 0, 0, 0]]
    if cls in (2, 3):
        return [*setup, [code, 0, 0, 9], [0x60, 0, 0, 9], [0x16, 0, 0, 0]]
    if code & 0xE0 == 0x60:
        return [*setup, [0x02, 0, 0, 4], [code, 0, 0, 4], [0x87, 0, 0, 0], [0x16, 0, 0, 0]]
    # Loads: offsets near the end of short frames, and indexed by x.
    tail = [[0x87, 0, 0, 0]] if cls == 1 else []
    return [*setup, [code, 0, 0, 6], *tail, [0x16, 0, 0, 0]]


@pytest.mark.parametrize("code", sorted(VALID_CODES), ids=lambda c: f"{c:#04x}")
def test_every_opcode_agrees_with_reference_and_libpcap(code: int) -> None:
    check_all_agree(_program_using(code), FRAMES, WIRELEN)


def test_loads_past_the_captured_bytes_reject() -> None:
    frames = [bytes(range(n)) for n in range(20)]
    wirelen = [1500] * len(frames)  # the wire length never helps a load
    for code, k in [(0x20, 10), (0x28, 12), (0x30, 13), (0x40, 8), (0x48, 10), (0x50, 11)]:
        prog = [[0x01, 0, 0, 2], [code, 0, 0, k], [0x06, 0, 0, 1]]
        mask = run_bpf(BpfProgram(prog), FrameBatch.from_frames(frames, wirelen=wirelen))
        size = {0x00: 4, 0x08: 2, 0x10: 1}[code & 0x18]
        last = k + size + (2 if code & 0x40 else 0)
        assert mask.tolist() == [len(f) >= last for f in frames], hex(code)
    # x + k must not wrap around 2**32 into the packet.
    prog = [[0x01, 0, 0, 0xFFFFFFFF], [0x50, 0, 0, 2], [0x06, 0, 0, 1]]
    check_all_agree(prog, frames, wirelen)
    assert not run_bpf(BpfProgram(prog), FrameBatch.from_frames(frames)).any()


def test_division_and_modulo_by_zero_reject_that_frame() -> None:
    frames = [bytes([b, 200]) for b in (0, 1, 0, 3, 7, 0)]
    for op in (0x3C, 0x9C):  # div x, mod x
        prog = [
            [0x30, 0, 0, 0],
            [0x07, 0, 0, 0],
            [0x30, 0, 0, 1],
            [op, 0, 0, 0],
            [0x04, 0, 0, 1],
            [0x16, 0, 0, 0],
        ]
        mask = run_bpf(BpfProgram(prog), FrameBatch.from_frames(frames))
        assert mask.tolist() == [f[0] != 0 for f in frames]
        check_all_agree(prog, frames, [len(f) for f in frames])


def test_shifts_by_32_or_more_give_zero() -> None:
    frames = [bytes([s]) for s in (0, 1, 31, 32, 33, 200)]
    for op in (0x6C, 0x7C):  # lsh x, rsh x
        prog = [
            [0x30, 0, 0, 0],
            [0x07, 0, 0, 0],
            [0x00, 0, 0, 0x80000001],
            [op, 0, 0, 0],
            [0x16, 0, 0, 0],
        ]
        check_all_agree(prog, frames, [1] * len(frames))
        values = run_bpf_values(BpfProgram(prog), FrameBatch.from_frames(frames)).tolist()
        assert values[3:] == [0, 0, 0]


def test_arithmetic_wraps_at_32_bits() -> None:
    prog = [
        [0x00, 0, 0, 0xFFFFFFFF],
        [0x04, 0, 0, 2],
        [0x24, 0, 0, 0x80000000],
        [0x84, 0, 0, 0],
        [0x16, 0, 0, 0],
    ]
    assert run_bpf_values(BpfProgram(prog), FrameBatch.from_frames([b"x"])).tolist() == [
        reference(prog, b"x", 1)
    ]
    check_all_agree(prog, [b"x"], [1])


def test_backward_jumps_and_runaway_loops() -> None:
    # Count down x from pkt[0] with a backward ja; return the iterations made.
    prog = [
        [0x30, 0, 0, 0],  # 0: a = pkt[0]
        [0x07, 0, 0, 0],  # 1: x = a
        [0x00, 0, 0, 0],  # 2: a = 0
        [0x02, 0, 0, 0],  # 3: M[0] = a
        [0x87, 0, 0, 0],  # 4: a = x
        [0x15, 6, 0, 0],  # 5: if a == 0 goto 12
        [0x14, 0, 0, 1],  # 6: a -= 1
        [0x07, 0, 0, 0],  # 7: x = a
        [0x60, 0, 0, 0],  # 8: a = M[0]
        [0x04, 0, 0, 1],  # 9: a += 1
        [0x02, 0, 0, 0],  # 10: M[0] = a
        [0x05, 0, 0, (-8) & 0xFFFFFFFF],  # 11: goto 4
        [0x60, 0, 0, 0],  # 12: a = M[0]
        [0x04, 0, 0, 1],  # 13: a += 1
        [0x16, 0, 0, 0],  # 14: ret a
    ]
    frames = [bytes([n]) for n in (0, 1, 5, 200, 3)]
    program = BpfProgram(prog)
    assert program.has_backward_jumps
    assert run_bpf_values(program, FrameBatch.from_frames(frames)).tolist() == [1, 2, 6, 201, 4]
    check_all_agree(prog, frames, [1] * len(frames))
    # A loop that never ends: libpcap would hang; wirelearn gives up and rejects.
    spin = BpfProgram([[0x05, 0, 0, 0xFFFFFFFF], [0x06, 0, 0, 1]])
    assert not run_bpf(spin, FrameBatch.from_frames([b"a", b"b"])).any()


@st.composite
def programs(draw: st.DrawFn) -> list[list[int]]:
    """Random valid classic-BPF programs that only jump forward."""
    n = draw(st.integers(1, 24))
    codes = sorted(VALID_CODES)
    prog = []
    for pc in range(n - 1):
        code = draw(st.sampled_from(codes))
        room = n - 2 - pc  # instructions after the next one
        cls, mode, op = code & 7, code & 0xE0, code & 0xF0
        jt = jf = 0
        if cls == 5 and code != 0x05:
            jt, jf = draw(st.integers(0, min(room, 255))), draw(st.integers(0, min(room, 255)))
            k = draw(
                st.sampled_from([0, 1, 6, 0x800, 0xFF, 0xFFFFFFFF]) | st.integers(0, 2**32 - 1)
            )
        elif code == 0x05:
            k = draw(st.integers(0, room))
        elif code in (0x60, 0x61, 0x02, 0x03):
            k = draw(st.integers(0, 15))
        elif cls == 4 and op in (0x30, 0x90) and not code & 8:
            k = draw(st.integers(1, 2**32 - 1))
        elif cls == 4 and op in (0x60, 0x70) and not code & 8:
            k = draw(st.integers(0, 31))
        elif cls in (0, 1) and mode in (0x20, 0x40, 0xA0):
            k = draw(st.integers(0, 70) | st.just(0xFFFFFFFF))
        else:
            k = draw(st.integers(0, 40) | st.integers(0, 2**32 - 1))
        prog.append([code, jt, jf, k])
    prog.append(draw(st.sampled_from([[0x16, 0, 0, 0], [0x06, 0, 0, 0], [0x06, 0, 0, 65535]])))
    return prog


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    prog=programs(),
    frames=st.lists(
        st.tuples(st.binary(min_size=0, max_size=80), st.integers(0, 3000)), min_size=1, max_size=12
    ),
)
def test_random_programs_agree_with_reference_and_libpcap(
    prog: list[list[int]], frames: list[tuple[bytes, int]]
) -> None:
    data = [f for f, _ in frames]
    wirelen = [len(f) + extra for f, extra in frames]
    check_all_agree(prog, data, wirelen)


# --- the program object ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prog", "message"),
    [
        ([], "shape"),
        ([[0x06, 0, 0]], "shape"),
        ([[0x99, 0, 0, 0], [0x06, 0, 0, 0]], "unknown opcode 0x99"),
        ([[0x15, 1, 0, 0], [0x06, 0, 0, 0]], "outside the program"),
        ([[0x05, 0, 0, 5], [0x06, 0, 0, 0]], "outside the program"),
        ([[0x60, 0, 0, 16], [0x06, 0, 0, 0]], "scratch memory index 16"),
        ([[0x34, 0, 0, 0], [0x06, 0, 0, 0]], "division by zero"),
        ([[0x94, 0, 0, 0], [0x06, 0, 0, 0]], "division by zero"),
        ([[0x64, 0, 0, 32], [0x06, 0, 0, 0]], "shift by 32"),
        ([[0x06, 0, 0, 0], [0x04, 0, 0, 1]], "must end with ret"),
        ([[0x06, 0, 0, -1]], "integers"),
        ([[0x06, 0, 0, 2**32]], "integers"),
    ],
)
def test_invalid_programs_are_refused(prog: list[list[int]], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        BpfProgram(prog)


def test_program_holds_uint32_instructions() -> None:
    program = compile_bpf("tcp port 80", 1)
    assert program.instructions.dtype == np.uint32
    assert program.instructions.shape == (len(program), 4)
    assert not program.instructions.flags.writeable
    assert program.expression == "tcp port 80"
    assert "tcp port 80" in repr(program)
    assert BpfProgram(program.instructions) == program


@pytest.mark.parametrize("code", sorted(VALID_CODES - {0x81}), ids=lambda c: f"{c:#04x}")
def test_dump_is_libpcaps_bpf_image(code: int) -> None:
    for k in (0, 5, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF):
        row = [code, 3, 1, k]
        want = _pcap().bpf_image(ctypes.byref(_Insn(*row)), 7).decode()
        assert _bpf._image(7, row) == want


def test_sock_fprog_layout() -> None:
    program = compile_bpf("udp port 53", 1)
    fprog = program.sock_fprog()
    assert fprog.len == len(program)
    assert len(bytes(fprog)) == ctypes.sizeof(fprog)
    got = [
        [fprog.filter[i].code, fprog.filter[i].jt, fprog.filter[i].jf, fprog.filter[i].k]
        for i in range(fprog.len)
    ]
    assert got == program.instructions.tolist()
    too_long = BpfProgram([[0x04, 0, 0, 1]] * 5000 + [[0x06, 0, 0, 1]])
    with pytest.raises(FilterError, match="4096"):
        too_long.sock_fprog()


@pytest.mark.live
def test_sock_fprog_attaches_to_a_packet_socket_on_loopback() -> None:
    try:
        # Protocol 0 receives nothing until bound, so no frame slips in before the filter.
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    except PermissionError:
        pytest.skip("needs root or CAP_NET_RAW")
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with sock, sender, receiver:
        receiver.bind(("127.0.0.1", 0))
        port = receiver.getsockname()[1]
        fprog = compile_bpf(f"udp dst port {port}", 1).sock_fprog()
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, bytes(fprog))
        sock.bind(("lo", 0x0003))  # ETH_P_ALL
        sock.settimeout(0.5)
        for dst in (port + 1 if port < 65535 else port - 1, port, port):
            sender.sendto(b"wirelearn-bpf", ("127.0.0.1", dst))
        got = []
        try:
            while True:
                got.append(sock.recv(65535))
        except TimeoutError:
            pass
    assert len(got) >= 2
    # Each kept frame is the datagram to our port, and our own filter agrees.
    batch = FrameBatch.from_frames(got)
    assert run_bpf(compile_bpf(f"udp dst port {port}", 1), batch).all()
    assert all(f.endswith(b"wirelearn-bpf") for f in got)


def test_public_names_are_exported() -> None:
    import wirelearn.capture as capture

    for name in ("compile_bpf", "BpfProgram", "BpfFilter", "run_bpf"):
        assert name in capture.__all__
        assert getattr(capture, name) is getattr(_bpf, name)
