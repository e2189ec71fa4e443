"""BPF filters, BPF label rules and the capture writers read view batches where they lie.

A plain pcap file is read into view batches (``FrameBatch.view``); packing one
copies every frame. ``BpfFilter``, ``RuleLabels`` and the pcap/pcapng writers
read frames through ``spans()`` and must never pack a view, with results
identical to those for the same frames packed: the same masks, warnings and
labels, and the same bytes written, checked here against a per-frame reference
encoder and read back by tcpdump and tshark.
"""

from __future__ import annotations

import struct
import subprocess
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import FIXTURES, SHARED_CAPTURES, need_tool, shared_captures_available
from numpy.typing import NDArray

from wirelearn.capture import BpfFilter, FrameBatch, Interface, open_capture
from wirelearn.capture import _writer as writer_module
from wirelearn.capture._batch import gather_frames
from wirelearn.capture._bpf import compile_bpf, run_bpf_values
from wirelearn.capture._writer import (
    PcapngWriter,
    PcapWriter,
    encode_pcap_header,
    encode_pcap_records,
    encode_pcapng_epbs,
    encode_pcapng_idb,
    encode_pcapng_shb,
)
from wirelearn.errors import FilterError, WirelearnError
from wirelearn.features import decode
from wirelearn.models import RuleLabels

EXPRESSIONS = (
    "tcp",
    "udp port 53",
    "ip6 or arp",
    "tcp[tcpflags] & tcp-syn != 0",
    "greater 200",
    "ip[8] < 64",
    "vlan",
)
RULES = (
    ("syn", "tcp[tcpflags] == tcp-syn"),
    ("dns", "udp port 53"),
    ("web", "tcp port 80 or tcp port 443"),
    ("v6", "ip6"),
)
# Damaged files: a record too large after 6 frames, a bad caplen, a cut-off last record.
DAMAGED = ("bad-record-7.pcap", "corrupt-caplen.pcap", "truncated-tail.pcap")
PLAIN_PCAPS = sorted(p for p in (*FIXTURES.glob("*.pcap"), *FIXTURES.glob("bpf/*.pcap")))


# --- batches both ways ----------------------------------------------------------------------


def read_views(path: Path, batch_size: int = 7) -> list[FrameBatch]:
    """The batches of a capture, up to its first error (damaged files stop there)."""
    out: list[FrameBatch] = []
    try:
        with open_capture(path, batch_size=batch_size) as src:
            out.extend(src)
    except WirelearnError:
        assert path.name in DAMAGED, path
    return out


def is_unpacked(batch: FrameBatch) -> bool:
    """The view's private packed cache is still empty (``_batch.py`` keeps it in ``_data``)."""
    return batch.is_view and batch.__dict__["_data"] is None and batch.__dict__["_offsets"] is None


def packed_twin(batch: FrameBatch) -> FrameBatch:
    """The same frames packed back to back, built without packing ``batch`` itself."""
    buf, start, _end = batch.spans()
    offsets = np.zeros(len(batch) + 1, dtype=np.int64)
    np.cumsum(batch.caplen, out=offsets[1:])
    return FrameBatch(
        frame=batch.frame,
        ts_ns=batch.ts_ns,
        caplen=batch.caplen,
        wirelen=batch.wirelen,
        iface=batch.iface,
        data=gather_frames(buf, start, batch.caplen),
        offsets=offsets,
        interfaces=batch.interfaces,
    )


def sparse_view(batch: FrameBatch, seed: int) -> FrameBatch:
    """The same frames as a view into a new buffer, 0 to 60 random bytes apart."""
    rng = np.random.default_rng(seed)
    gaps = rng.integers(0, 61, size=len(batch) + 1)
    start = np.cumsum(gaps[:-1]) + np.concatenate([[0], np.cumsum(batch.caplen)[:-1]])
    buf = rng.integers(0, 256, size=int(batch.nbytes + gaps.sum()), dtype=np.uint8)
    for i in range(len(batch)):
        buf[start[i] : start[i] + batch.caplen[i]] = np.frombuffer(batch.frame_bytes(i), np.uint8)
    buf.setflags(write=False)
    return FrameBatch.view(
        buf,
        start.astype(np.int64),
        frame=batch.frame,
        ts_ns=batch.ts_ns,
        caplen=batch.caplen,
        wirelen=batch.wirelen,
        iface=batch.iface,
        interfaces=batch.interfaces,
    )


def view_shapes(path: Path) -> Iterator[tuple[str, FrameBatch]]:
    """Views as the reader makes them, sliced, joined, and laid out sparsely."""
    # Small batches (many buffer stretches) for small files; the gzip'd fixture has 1811 frames.
    views = read_views(path, batch_size=7 if path.stat().st_size < 20_000 else 300)
    for i, b in enumerate(views):
        yield f"read {i}", b
        if len(b) > 2:
            yield f"slice {i}", b.slice(1, len(b) - 1)
    if len(views) > 1:
        joined = FrameBatch.concat(views)
        assert joined.is_view == all(b.is_view for b in views)
        yield "joined", joined
        yield "sparse", sparse_view(joined, seed=len(joined))


def frames_of(batch: FrameBatch) -> list[bytes]:
    return [batch.frame_bytes(i) for i in range(len(batch))]


# --- a per-frame reference encoder ----------------------------------------------------------


def ref_pcap_records(batch: FrameBatch, *, nanosecond: bool = True) -> bytes:
    out = []
    for i, data in enumerate(frames_of(batch)):
        sec, ns = divmod(int(batch.ts_ns[i]), 1_000_000_000)
        frac = ns if nanosecond else ns // 1000
        out.append(struct.pack("<IIII", sec, frac, len(data), int(batch.wirelen[i])) + data)
    return b"".join(out)


def ref_pcapng_epbs(batch: FrameBatch, ids: list[int]) -> bytes:
    out = []
    for i, data in enumerate(frames_of(batch)):
        ts = int(batch.ts_ns[i])
        body = data + b"\0" * (-len(data) % 4)
        total = 32 + len(body)
        head = struct.pack(
            "<IIIIIII", 6, total, ids[int(batch.iface[i])], ts >> 32, ts & 0xFFFFFFFF,
            len(data), int(batch.wirelen[i]),
        )  # fmt: skip
        out.append(head + body + struct.pack("<I", total))
    return b"".join(out)


def ref_pcapng_file(batches: list[FrameBatch]) -> bytes:
    out = encode_pcapng_shb()
    known: dict[Interface, int] = {}
    for b in batches:
        ids = []
        for itf in b.interfaces or (Interface(linktype=1),):
            if itf not in known:
                known[itf] = len(known)
                out += encode_pcapng_idb(itf)
            ids.append(known[itf])
        out += ref_pcapng_epbs(b, ids)
    return out


# --- filters and label rules ----------------------------------------------------------------


def masks(batches: list[FrameBatch], expression: str) -> tuple[list[object], list[str]]:
    """Each batch's mask (or the error) through one fresh filter, and the warnings it gave."""
    out: list[object] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        filt = BpfFilter(expression)
        for b in batches:
            try:
                out.append(filt.mask(b).tolist())
            except FilterError as exc:  # no link type of the capture compiles
                out.append(str(exc))
    return out, [str(w.message) for w in caught]


def labels(batches: list[FrameBatch]) -> list[object]:
    """Each batch's labels (or the error) by one set of rules."""
    out: list[object] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # rules that cannot run on a link type
        rules = RuleLabels(list(RULES), default="other")
        for b in batches:
            try:
                out.append(rules.labels(decode(b), b).tolist())
            except FilterError as exc:
                out.append(str(exc))
    return out


@pytest.mark.parametrize("path", PLAIN_PCAPS, ids=lambda p: str(p.relative_to(FIXTURES)))
def test_filters_and_label_rules_read_views_without_packing(path: Path) -> None:
    shapes = list(view_shapes(path))
    views = [b for _, b in shapes]
    plain = path.read_bytes()[:2] != b"\x1f\x8b"
    if plain:
        assert views and all(is_unpacked(b) for b in views), path
    twins = [packed_twin(b) for b in views]
    for expression in EXPRESSIONS:
        assert masks(views, expression) == masks(twins, expression), expression
    assert labels(views) == labels(twins)
    # run_bpf_values on a subset of frames, in an order of its own.
    prog = compile_bpf("ip or ip6 or arp", 1, byte_order="little")
    for v, t in zip(views, twins, strict=True):
        sel = np.arange(len(v), dtype=np.int64)[::-2]
        assert np.array_equal(run_bpf_values(prog, v, sel), run_bpf_values(prog, t, sel))
    if plain:
        assert all(is_unpacked(b) for b in views), "a filter or rule packed a view"


def test_fixtures_cover_snaplen_cut_frames_link_types_and_damage() -> None:
    cut = 0
    linktypes: set[int] = set()
    for path in PLAIN_PCAPS:
        for b in read_views(path):
            cut += int((b.caplen < b.wirelen).sum())
            linktypes |= set(b.linktype.tolist())
    assert cut >= 30
    assert {0, 1, 101, 104, 108, 113, 228, 229, 276} <= linktypes
    for name in DAMAGED:
        assert read_views(FIXTURES / name, batch_size=4)  # frames before the damage


# --- writers --------------------------------------------------------------------------------


def write_pcap(tmp: Path, batches: list[FrameBatch], *, nanosecond: bool = True) -> bytes:
    with PcapWriter(tmp, nanosecond=nanosecond) as w:
        for b in batches:
            w.write(b)
    return tmp.read_bytes()


def write_pcapng(tmp: Path, batches: list[FrameBatch]) -> bytes:
    with PcapngWriter(tmp) as w:
        for b in batches:
            w.write(b)
    return tmp.read_bytes()


@pytest.mark.parametrize("path", PLAIN_PCAPS, ids=lambda p: str(p.relative_to(FIXTURES)))
def test_writers_write_views_bit_identically_without_packing(path: Path, tmp_path: Path) -> None:
    plain = path.read_bytes()[:2] != b"\x1f\x8b"
    for what, view in view_shapes(path):
        twin = packed_twin(view)
        lt = int(view.linktype[0]) if len(view) else 1
        for ns in (True, False):
            ref = encode_pcap_header(lt, nanosecond=ns) + ref_pcap_records(twin, nanosecond=ns)
            assert write_pcap(tmp_path / "v.pcap", [view], nanosecond=ns) == ref, what
            assert write_pcap(tmp_path / "p.pcap", [twin], nanosecond=ns) == ref, what
            assert encode_pcap_records(view, nanosecond=ns) == ref[24:], what
        ref_ng = ref_pcapng_file([twin])
        assert write_pcapng(tmp_path / "v.pcapng", [view]) == ref_ng, what
        assert write_pcapng(tmp_path / "p.pcapng", [twin]) == ref_ng, what
        assert encode_pcapng_epbs(view) == ref_pcapng_epbs(twin, list(range(8))), what
        if plain:
            assert is_unpacked(view), f"{what}: a writer packed a view"


def test_writers_over_many_batches_and_several_link_types(tmp_path: Path) -> None:
    names = ("null.pcap", "sll-nanosecond.pcap", "snaplen-chdlc.pcap", "truncated-tail.pcap")
    batches: list[FrameBatch] = []
    table: tuple[Interface, ...] = ()
    for name in names:
        for b in read_views(FIXTURES / name, batch_size=5):
            # One growing interface table, as a ConcatSource gives: new interfaces appear late.
            itf = b.interfaces[0]
            if itf not in table:
                table = (*table, itf)
            batches.append(b.with_interfaces(table, np.full(len(b), table.index(itf), np.int32)))
    assert len(table) == 4 and all(b.is_view for b in batches)
    written = write_pcapng(tmp_path / "all.pcapng", batches)
    assert written == ref_pcapng_file([packed_twin(b) for b in batches])
    assert write_pcapng(tmp_path / "twins.pcapng", [packed_twin(b) for b in batches]) == written
    assert all(is_unpacked(b) for b in batches)
    # Read back: the same frames, lengths and times.
    with open_capture(tmp_path / "all.pcapng") as src:
        back = FrameBatch.concat(list(src))
    assert frames_of(back) == [f for b in batches for f in frames_of(b)]
    assert back.wirelen.tolist() == [w for b in batches for w in b.wirelen.tolist()]
    assert back.ts_ns.tolist() == [t for b in batches for t in b.ts_ns.tolist()]


def count_gathers(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the writer's calls of ``gather_frames`` (the frame-by-frame fallback)."""
    calls: list[int] = []
    real: Callable[..., NDArray[np.uint8]] = gather_frames

    def counted(*args: object, **kw: object) -> NDArray[np.uint8]:
        calls.append(1)
        return real(*args, **kw)

    monkeypatch.setattr(writer_module, "gather_frames", counted)
    return calls


def test_each_way_of_placing_frames_is_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    views = read_views(FIXTURES / "dhcp-arp-icmp.pcap", batch_size=20)
    joined = FrameBatch.concat(views)
    calls = count_gathers(monkeypatch)
    # pcap records written as pcap: runs of records, copied whole (one run per read buffer).
    ref = encode_pcap_header(1) + ref_pcap_records(joined)
    assert write_pcap(tmp_path / "a.pcap", [joined]) == ref and not calls
    # pcapng: the stretch of buffer scattered in one pass, headers landing in the EPB headers.
    assert write_pcapng(tmp_path / "a.pcapng", [joined]) == ref_pcapng_file([joined])
    assert not calls
    # Frames farther apart in their buffer than in the output: gathered first.
    sparse = sparse_view(joined, seed=3)
    assert write_pcap(tmp_path / "s.pcap", [sparse]) == ref and calls
    assert is_unpacked(joined) and is_unpacked(sparse)


# --- tools as oracles -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "vlan-ipv4-tcp-udp.pcap",
        "bpf/bgp-4byte-asn.pcap",
        "bpf/icmp-payload-trunc.pcap",
        "null.pcap",
    ],
)
def test_filtered_views_written_equal_tcpdump_and_tshark_reads(name: str, tmp_path: Path) -> None:
    tcpdump = need_tool("tcpdump")
    tshark = need_tool("tshark")
    path = FIXTURES / name
    expression = "ip and (tcp or udp or icmp)"
    views = read_views(path, batch_size=6)
    filt = BpfFilter(expression)
    kept = [b.take(filt.mask(b)) for b in views]
    assert all(is_unpacked(b) for b in views)
    ours = tmp_path / "ours.pcap"
    write_pcap(ours, kept, nanosecond=False)
    theirs = tmp_path / "theirs.pcap"
    subprocess.run([tcpdump, "-r", str(path), "-w", str(theirs), expression], check=True,
                   capture_output=True)  # fmt: skip
    # tcpdump copies the file's header (snaplen, byte order): the records must match.
    with open_capture(theirs) as src:
        ref = FrameBatch.concat(list(src))
    assert len(ref) > 0
    assert ours.read_bytes()[24:] == ref_pcap_records(ref, nanosecond=False)

    def fields(p: Path) -> list[str]:
        cmd = [tshark, "-r", str(p), "-T", "fields", "-e", "frame.len", "-e", "frame.cap_len",
               "-e", "frame.time_epoch", "-e", "frame.protocols"]  # fmt: skip
        return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()

    assert fields(ours) == fields(theirs)


# --- the shared captures --------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(not shared_captures_available(), reason="shared captures not present")
def test_shared_plain_pcaps_filter_label_and_write_the_same(tmp_path: Path) -> None:
    manifest = (SHARED_CAPTURES / "MANIFEST.tsv").read_text().splitlines()[1:]
    paths = [
        SHARED_CAPTURES / line.split("\t")[0]
        for line in manifest
        if line.split("\t")[4] == "pcap"
        and int(line.split("\t")[3]) < 2_000_000
        and (SHARED_CAPTURES / line.split("\t")[0]).is_file()
    ]
    assert len(paths) > 100
    checked = cut = 0
    for path in paths:
        views: list[FrameBatch] = []
        try:
            with open_capture(path, batch_size=256) as src:
                views.extend(src)
        except WirelearnError:
            pass  # damaged files: the batches before the damage
        if not views:
            continue
        twins = [packed_twin(b) for b in views]
        for expression in ("tcp", "udp port 53 or ip6"):
            assert masks(views, expression) == masks(twins, expression), (path, expression)
        assert labels(views) == labels(twins), path
        ref = b"".join(ref_pcap_records(t) for t in twins)
        assert b"".join(encode_pcap_records(b) for b in views) == ref, path
        assert encode_pcapng_epbs(views[0]) == ref_pcapng_epbs(twins[0], list(range(64))), path
        assert all(is_unpacked(b) for b in views), path
        checked += 1
        cut += sum(int((b.caplen < b.wirelen).sum()) for b in views)
    assert checked > 100 and cut > 100
