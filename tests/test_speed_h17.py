"""Zero-copy reading of plain pcap files: batches that point into the read buffer.

A plain pcap file opened by path is read in large buffers and each batch is a
view into one of them (``FrameBatch.view``); everything else (streams, gzip,
pcapng) packs frames back to back as before. The reference here is the packed
path itself: the same bytes read through a ``BytesIO`` stream in small chunks.
Every frame's bytes, times and lengths, the decoded columns, the warnings and
counters, and the error raised on a damaged file must be the same both ways.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterable
from dataclasses import FrozenInstanceError
from pathlib import Path

import numpy as np
import pytest
from conftest import FIXTURES, SHARED_CAPTURES, shared_captures_available

from wirelearn.capture import FrameBatch, Interface, open_capture
from wirelearn.capture._multi import ConcatSource
from wirelearn.errors import WirelearnError
from wirelearn.features import decode

SEC = 1_700_000_000


def pcap_header(*, snaplen: int = 262144, linktype: int = 1) -> bytes:
    return struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, snaplen, linktype)


def pcap_record(data: bytes, *, sec: int = SEC, frac: int = 0, wirelen: int | None = None) -> bytes:
    wl = len(data) if wirelen is None else wirelen
    return struct.pack("<IIII", sec, frac, len(data), wl) + data


def frame(i: int, size: int) -> bytes:
    """An Ethernet/IPv4/UDP frame of ``size`` bytes whose payload names it."""
    eth = bytes.fromhex("0200000000020200000000010800")
    ip_len = size - 14
    ip = struct.pack(
        ">BBHHHBBH4s4s", 0x45, 0, ip_len, i & 0xFFFF, 0, 64, 17, 0, b"\x0a\0\0\1", b"\x0a\0\0\2"
    )
    udp = struct.pack(">HHHH", 1000 + i % 50, 53, ip_len - 20, 0)
    body = struct.pack(">I", i) + bytes((i + k) % 256 for k in range(max(size - 46, 0)))
    return (eth + ip + udp + body)[:size]


def synthetic(n: int, *, seed: int = 1, cut: int = 0) -> bytes:
    """A pcap of ``n`` frames of varied sizes; ``cut`` bytes removed from its end."""
    rng = np.random.default_rng(seed)
    sizes = rng.choice([60, 64, 98, 590, 1514], size=n, p=[0.3, 0.2, 0.2, 0.2, 0.1])
    body = pcap_header() + b"".join(
        pcap_record(frame(i, int(s)), sec=SEC + i // 1000, frac=i % 1000)
        for i, s in enumerate(sizes)
    )
    return body[: len(body) - cut] if cut else body


# --- reading both ways ----------------------------------------------------------------------


class Read:
    """What one way of reading a capture gave: frames, bytes, counters, and the error."""

    def __init__(self, batches: list[FrameBatch], stats: object, error: WirelearnError | None):
        self.batches = batches
        self.error = error
        self.warnings = list(getattr(stats, "warnings", []))
        self.truncated = getattr(stats, "truncated_records", 0)
        self.bytes_read = getattr(stats, "bytes_read", 0)

    def column(self, name: str) -> list[int]:
        return [int(v) for b in self.batches for v in getattr(b, name)]

    def frames(self) -> list[bytes]:
        return [b.frame_bytes(i) for b in self.batches for i in range(len(b))]


def read(src: str | Path | io.BytesIO, **kw: int) -> Read:
    batches: list[FrameBatch] = []
    error: WirelearnError | None = None
    source = open_capture(src, **kw)  # type: ignore[arg-type]
    try:
        with source:
            for b in source:
                batches.append(b)
    except WirelearnError as exc:
        error = exc
    return Read(batches, source.stats, error)


def assert_same(direct: Read, packed: Read, what: str) -> None:
    """The zero-copy read of a file equals the packed read of the same bytes."""
    for name in ("frame", "ts_ns", "caplen", "wirelen", "iface"):
        assert direct.column(name) == packed.column(name), f"{what}: {name}"
    assert direct.frames() == packed.frames(), f"{what}: frame bytes"
    assert direct.warnings == packed.warnings, what
    assert direct.truncated == packed.truncated, what
    assert (direct.error is None) == (packed.error is None), (what, direct.error, packed.error)
    if direct.error is not None and packed.error is not None:
        assert type(direct.error) is type(packed.error), what
        assert str(direct.error) == str(packed.error), what
    # Packing on demand gives the old contract: frames back to back, offsets from 0.
    data = b"".join(b.data[b.offsets[0] : b.offsets[-1]].tobytes() for b in direct.batches)
    ref = b"".join(b.data[b.offsets[0] : b.offsets[-1]].tobytes() for b in packed.batches)
    assert data == ref, what
    for b in direct.batches:
        assert int(b.offsets[0]) == 0 and len(b.data) == b.nbytes
        assert np.array_equal(np.diff(b.offsets), b.caplen)


def decoded_equal(a: Iterable[FrameBatch], b: Iterable[FrameBatch]) -> None:
    fa = [decode(x) for x in a]
    fb = [decode(x) for x in b]
    for name in fa[0].__dataclass_fields__ if fa else ():
        left = np.concatenate([getattr(f, name) for f in fa])
        right = np.concatenate([getattr(f, name) for f in fb])
        assert np.array_equal(left, right), name


def stream(body: bytes, name: str | Path) -> io.BytesIO:
    """``body`` as a stream named like the file, so that messages compare equal."""
    f = io.BytesIO(body)
    f.name = str(name)  # type: ignore[misc]
    return f


def both_ways(path: Path, **kw: int) -> tuple[Read, Read]:
    direct = read(path, **kw)
    packed = read(stream(path.read_bytes(), path), chunk_size=4093, **kw)
    return direct, packed


# --- real captures --------------------------------------------------------------------------

FIXTURE_PCAPS = sorted(p for p in FIXTURES.glob("*.pcap"))


@pytest.mark.parametrize("path", FIXTURE_PCAPS, ids=lambda p: p.name)
def test_fixture_pcaps_read_the_same_zero_copy(path: Path) -> None:
    direct, packed = both_ways(path)
    # gzip'd content (whatever the name) is inflated in chunks and packed as before.
    plain = path.read_bytes()[:2] != b"\x1f\x8b"
    assert all(b.is_view == plain for b in direct.batches)
    assert not any(b.is_view for b in packed.batches)
    assert_same(direct, packed, path.name)
    # Decoding reads through the view; the columns equal those of the packed bytes.
    fresh = read(path)
    assert all(b.is_view == plain for b in fresh.batches)
    decoded_equal(fresh.batches, [b.compact() for b in fresh.batches])
    assert all(b.is_view == plain for b in fresh.batches)  # decoding did not pack them
    decoded_equal(fresh.batches, packed.batches)


def test_fixtures_include_snaplen_cut_and_damaged_files() -> None:
    cut = damaged = 0
    for path in FIXTURE_PCAPS:
        r = read(path)
        cut += sum(int((b.caplen < b.wirelen).sum()) for b in r.batches)
        damaged += r.error is not None
    assert cut > 0 and damaged >= 2


@pytest.mark.skipif(not shared_captures_available(), reason="shared captures not present")
def test_every_shared_plain_pcap_reads_the_same_zero_copy() -> None:
    manifest = (SHARED_CAPTURES / "MANIFEST.tsv").read_text().splitlines()[1:]
    paths = [
        SHARED_CAPTURES / line.split("\t")[0] for line in manifest if line.split("\t")[4] == "pcap"
    ]
    assert len(paths) > 100
    checked = damaged = 0
    for path in paths:
        if not path.is_file():
            continue
        direct, packed = both_ways(path, batch_size=512)
        assert_same(direct, packed, str(path))
        if direct.batches:
            decoded_equal(direct.batches, packed.batches)
        checked += 1
        damaged += direct.error is not None or direct.truncated > 0
    assert checked > 100 and damaged >= 3


# --- buffer boundaries ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("batch_size", "hold"), [(7, 0), (100, 3000), (1000, 50_000), (65536, 1 << 20)]
)
@pytest.mark.parametrize("cut", [0, 5, 16, 700])
def test_batches_never_span_buffers(tmp_path: Path, batch_size: int, hold: int, cut: int) -> None:
    # Small buffers force frames held for a fuller batch to be read again with the next.
    body = synthetic(3000, cut=cut)
    path = tmp_path / "s.pcap"
    path.write_bytes(body)
    src = open_capture(path, batch_size=batch_size)
    if hold:
        src.decoder.hold_bytes = hold
    with src:
        direct = Read(list(src), src.stats, None)
    packed = read(stream(body, path), batch_size=batch_size, chunk_size=997)
    assert all(b.is_view for b in direct.batches)
    assert_same(direct, packed, f"{batch_size}/{hold}/{cut}")
    assert direct.bytes_read == len(body)
    assert (sum(len(b) for b in direct.batches) == 3000) == (cut == 0)
    assert direct.truncated == (1 if cut else 0)
    if hold >= 50_000:
        # A batch is full, or about ``hold`` bytes of frames (its buffer was cut there).
        full = direct.batches[:-1]
        assert all(len(b) == batch_size or 0.8 * hold <= b.nbytes <= 1.1 * hold for b in full)


def test_a_batch_keeps_no_much_larger_buffer_alive(tmp_path: Path) -> None:
    body = synthetic(20_000, seed=3)
    path = tmp_path / "big.pcap"
    path.write_bytes(body)
    with open_capture(path, batch_size=2000) as src:
        batches = list(src)
    assert len(batches) == 10
    for b in batches[1:]:
        buf, start, _end = b.spans()
        records = b.nbytes + 16 * len(b)
        # The buffer is read for one batch: its frames, their headers and a small margin.
        assert len(buf) <= 1.1 * records + (1 << 16) + 1514 + 16
        assert int(start[0]) == 0  # each buffer starts at its batch's first frame
    decoded_equal(batches, read(io.BytesIO(body), batch_size=2000).batches)


def test_buffers_are_read_only_and_never_reused(tmp_path: Path) -> None:
    body = synthetic(4000, seed=5)
    path = tmp_path / "r.pcap"
    path.write_bytes(body)
    with open_capture(path, batch_size=500) as src:
        batches = list(src)
    first = batches[0].frame_bytes(0)
    buf, _start, _end = batches[0].spans()
    assert not buf.flags.writeable
    # Later batches were read into other memory: the first batch's bytes are unchanged.
    assert batches[0].frame_bytes(0) == first == body[24 + 16 : 24 + 16 + len(first)]


def test_over_snaplen_and_big_endian_and_concat_source(tmp_path: Path) -> None:
    # Frames longer than the snaplen are kept (and counted once), as in the packed path.
    body = pcap_header(snaplen=100) + b"".join(
        pcap_record(frame(i, 60 if i % 3 else 200), sec=SEC, frac=i) for i in range(500)
    )
    path = tmp_path / "over.pcap"
    path.write_bytes(body)
    direct = read(path, batch_size=64)
    packed = read(stream(body, path), batch_size=64, chunk_size=333)
    assert_same(direct, packed, "over-snaplen")
    assert direct.warnings and "exceeds the snaplen" in direct.warnings[0]
    src = ConcatSource([str(path), str(FIXTURES / "big-endian.pcap")], batch_size=64)
    with src:
        out = list(src)
    assert all(b.is_view for b in out)
    assert {int(i) for b in out for i in b.iface} == {0, 1}
    ref = (
        read(io.BytesIO(body), batch_size=64).frames() + read(FIXTURES / "big-endian.pcap").frames()
    )
    assert [b.frame_bytes(i) for b in out for i in range(len(b))] == ref


def test_finished_and_closed_sources_keep_no_buffer(tmp_path: Path) -> None:
    # ConcatSource keeps its finished sources: they must not keep a batch's buffer alive.
    body = synthetic(3000, seed=7)
    path = tmp_path / "a.pcap"
    path.write_bytes(body)
    src = ConcatSource([str(path), str(path)], batch_size=1000)
    with src:
        for b in src:
            del b
        for inner in src.sources:
            dec = inner.decoder
            assert len(dec._buf) == 0 and dec._zsrc is None and not dec._zrecs
            assert getattr(dec._parser, "_cache", None) is None
    half = open_capture(path, batch_size=1000)
    it = iter(half)
    kept = next(it)
    half.close()
    assert half.decoder._zsrc is None and len(half.decoder._buf) == 0
    assert kept.frame_bytes(0) == body[40 : 40 + int(kept.caplen[0])]  # the batch still has it


# --- FrameBatch views -----------------------------------------------------------------------


def view_and_packed() -> tuple[FrameBatch, FrameBatch]:
    frames = [frame(i, s) for i, s in enumerate([60, 98, 1514, 64, 590, 60, 77])]
    buf = b"".join(struct.pack("<IIII", 0, 0, len(f), len(f)) + f for f in frames)
    start = np.cumsum([0] + [16 + len(f) for f in frames[:-1]]) + 16
    common = {
        "frame": np.arange(10, 17, dtype=np.int64),
        "ts_ns": np.arange(7, dtype=np.int64) * 1000,
        "caplen": np.array([len(f) for f in frames], dtype=np.int64),
        "wirelen": np.array([len(f) + 4 for f in frames], dtype=np.int64),
        "iface": np.zeros(7, dtype=np.int32),
        "interfaces": (Interface(linktype=1),),
    }
    view = FrameBatch.view(np.frombuffer(buf, dtype=np.uint8), start.astype(np.int64), **common)  # type: ignore[arg-type]
    packed = FrameBatch.from_frames(
        frames,
        ts_ns=common["ts_ns"],  # type: ignore[arg-type]
        wirelen=common["wirelen"],  # type: ignore[arg-type]
        first_frame=10,
    )
    return view, packed


def same(a: FrameBatch, b: FrameBatch) -> None:
    assert len(a) == len(b)
    for name in ("frame", "ts_ns", "caplen", "wirelen", "iface"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert [a.frame_bytes(i) for i in range(len(a))] == [b.frame_bytes(i) for i in range(len(b))]


def test_view_operations_equal_packed_ones() -> None:
    view, packed = view_and_packed()
    same(view, packed)
    assert view.nbytes == packed.nbytes
    s = view.slice(2, 6)
    assert s.is_view
    same(s, packed.slice(2, 6))
    same(view.take(np.array([5, 0, 3])), packed.take(np.array([5, 0, 3])))
    same(view.take(view.caplen > 64), packed.take(packed.caplen > 64))
    same(view.renumber(100), packed.renumber(100))
    assert view.renumber(100).is_view
    other = view.with_interfaces(
        (Interface(linktype=1), Interface(linktype=101)), np.ones(7, np.int32)
    )
    assert other.is_view and other.linktype.tolist() == [101] * 7
    joined = FrameBatch.concat([view.slice(0, 3), packed.slice(3, 5), view.slice(5, 7)])
    same(joined, packed)
    # Joining views copies their stretches of buffer (a view again), not frame by frame.
    assert joined.is_view and len(joined.spans()[0]) == packed.nbytes + 16 * 3  # 2 + 0 + 1
    assert joined.offsets.tolist() == packed.offsets.tolist()
    same(FrameBatch.concat([packed.slice(0, 4), packed.slice(4, 7)]), packed)
    part = view.slice(2, 5)
    small = part.compact()
    same(small, packed.slice(2, 5))
    buf, start, end = small.spans()
    # Its own buffer, exactly its frames' stretch (record headers between them).
    assert small.is_view and int(start[0]) == 0 and int(end[-1]) == len(buf)
    assert len(buf) < len(part.spans()[0]) and small.compact() is small
    assert view.is_view
    decoded_equal([view], [packed])
    # Packing on demand: the old data/offsets, once, and the batch is packed from then on.
    assert view.data.tobytes() == packed.data.tobytes()
    assert view.offsets.tolist() == packed.offsets.tolist()
    assert not view.is_view
    same(view, packed)


def test_a_view_batch_is_immutable_and_checked() -> None:
    view, _packed = view_and_packed()
    with pytest.raises(FrozenInstanceError):
        view.frame = view.frame  # type: ignore[misc]
    with pytest.raises(ValueError, match="start has 2 items"):
        FrameBatch.view(
            np.zeros(10, np.uint8),
            np.array([0, 5]),
            frame=np.arange(3),
            ts_ns=np.zeros(3, np.int64),
            caplen=np.ones(3, np.int64),
            wirelen=np.ones(3, np.int64),
            iface=np.zeros(3, np.int32),
        )
    assert "view" in repr(view)
