"""Structure-aware fuzz targets for wirelearn's parsers: strategies, references, invariants.

Each target is a hypothesis strategy that draws one case, and a check that runs
the case through the real code and asserts the invariants:

- only ``WirelearnError`` subclasses escape (anything else is a bug);
- no hang: every case runs under a CPU-time limit (``SIGVTALRM``), so a loop
  that never ends fails instead of stalling the run;
- bounded memory: tracemalloc's peak for the case stays under a bound
  proportional to the input size (a length field taken on trust would need MiBs);
- no frame lost: the frames yielded before a fault are exactly those a simple
  reference reader finds before it, whatever the chunking of the input.

Targets:

=============  ============================================================================
``pcap``       pcap files: valid headers, mutated lengths, link types, cuts, garbage
``pcapng``     pcapng: SHB/IDB/EPB/SPB/OPB and unknown blocks, options, byte orders
``gzip``       either of the above gzip'd (several members), cut or bit-flipped
``resync``     pcap streams on a noisy line: ``CaptureDecoder(resync=True)``
``slip``       SLIP streams with noise, bad escapes, oversize and cut frames
``decode``     the feature decoder over frames of every decoded link type, layered
               Ethernet/VLAN/SLL/NULL/IPv4/IPv6/ext/TCP/UDP headers, mutated and cut
=============  ============================================================================

``fuzz/run.py`` runs them for many cases; ``tests/test_fuzz.py`` runs a fixed-seed share.
The pcap/pcapng reference reader follows ``tests/test_reader_props.py``.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import itertools
import random
import signal
import struct
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from hypothesis import strategies as st

from wirelearn.capture import CaptureDecoder, FrameBatch, Interface
from wirelearn.capture._reader import CaptureFileSource
from wirelearn.capture._slip import SlipDecoder
from wirelearn.errors import FormatError, InputError, RecordTooLargeError, WirelearnError
from wirelearn.features._decode import decode

__all__ = ["TARGETS", "Hang", "MemoryBoundExceeded", "Target", "guarded", "warm_up"]

MAX_CAPLEN = 4096
SEC = 1_700_000_000
#: CPU seconds one case may take before it counts as a hang.
CASE_CPU_LIMIT = 5.0
#: Fixed overhead allowed per case (numpy temporaries, batch tables, first-use caches).
MEM_BASE = 4 << 20
#: Bytes of traced memory allowed per byte of input (frames kept for comparison included).
MEM_PER_BYTE = 40

Frame = tuple[int, int, int, bytes]  # ts_ns, wirelen, global interface, bytes


class Rand:
    """Bulk randomness for the structure generators: one seed drawn by hypothesis, the rest
    from ``random.Random`` (drawing every field through hypothesis is 50x slower)."""

    def __init__(self, seed: int) -> None:
        self._r = random.Random(seed)

    def integers(self, lo: int, hi: int) -> int:
        return self._r.randint(lo, hi)

    def choice(self, options: Sequence[Any]) -> Any:
        return options[self._r.randrange(len(options))]

    def boolean(self) -> bool:
        return self._r.random() < 0.5

    def binary(self, min_size: int = 0, max_size: int = 64) -> bytes:
        n = self._r.randint(min_size, max_size)
        # Mostly random bytes, sometimes runs of one byte (zeros, 0xff) that parsers special-case.
        if self._r.random() < 0.2:
            return bytes([self._r.choice((0, 0xFF, 0xC0, 0xDB))]) * n
        return self._r.randbytes(n)


def seeded(gen: Callable[[Rand], Any]) -> st.SearchStrategy[Any]:
    """A strategy of ``gen(Rand(seed))`` for hypothesis-drawn seeds."""
    return st.integers(0, 2**64 - 1).map(lambda s: gen(Rand(s)))


class Hang(BaseException):
    """A case ran past its CPU-time limit (a BaseException so no ``except Exception`` eats it)."""


class MemoryBoundExceeded(AssertionError):
    """A case allocated more than its bound."""


def _on_alarm(signum: int, frame: Any) -> None:
    raise Hang(f"a case ran for more than {CASE_CPU_LIMIT} s of CPU time")


@contextlib.contextmanager
def guarded(input_size: int, *, cpu_limit: float = CASE_CPU_LIMIT) -> Iterator[None]:
    """Run the block under a CPU-time limit and check tracemalloc's peak against the input size.

    A virtual (CPU-time) timer leaves ``SIGALRM`` to pytest-timeout.
    """
    old = signal.signal(signal.SIGVTALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_VIRTUAL, cpu_limit)
    started = tracemalloc.is_tracing()
    if not started:
        tracemalloc.start()
    tracemalloc.reset_peak()
    base, _ = tracemalloc.get_traced_memory()
    try:
        yield
        _, peak = tracemalloc.get_traced_memory()
    finally:
        signal.setitimer(signal.ITIMER_VIRTUAL, 0)
        signal.signal(signal.SIGVTALRM, old)
        if not started:
            tracemalloc.stop()
    bound = MEM_BASE + MEM_PER_BYTE * input_size
    if peak - base > bound:
        raise MemoryBoundExceeded(
            f"peak {peak - base:,} bytes for {input_size:,} bytes of input (bound {bound:,})"
        )


# --- reference pcap/pcapng reader (one record at a time, the decoder's rules) -------------------


@dataclass
class Expected:
    frames: list[Frame] = field(default_factory=list)
    fault: int | None = None  # offset of the first fault, or -1 for a header-level error
    too_large: bool = False
    truncated: bool = False


PCAP = {
    b"\xd4\xc3\xb2\xa1": ("<", 1000, 16),
    b"\xa1\xb2\xc3\xd4": (">", 1000, 16),
    b"\x4d\x3c\xb2\xa1": ("<", 1, 16),
    b"\xa1\xb2\x3c\x4d": (">", 1, 16),
    b"\x34\xcd\xb2\xa1": ("<", 1000, 24),
    b"\xa1\xb2\xcd\x34": (">", 1000, 24),
}
_MAX_SEC = 9_223_372_035


def ref_pcap(data: bytes) -> Expected:
    out = Expected()
    if len(data) < 24 or data[:4] not in PCAP:
        out.fault = -1
        return out
    order, unit, hs = PCAP[data[:4]]
    if struct.unpack_from(order + "H", data, 4)[0] < 2:
        out.fault = -1
        return out
    pos = 24
    while pos + hs <= len(data):
        sec, frac, cap, wl = struct.unpack_from(order + "IIII", data, pos)
        if cap > MAX_CAPLEN:
            out.fault, out.too_large = pos + 8, True
            return out
        if pos + hs + cap > len(data):
            break
        out.frames.append((sec * 10**9 + frac * unit, wl, 0, data[pos + hs : pos + hs + cap]))
        pos += hs + cap
    out.truncated = pos < len(data)
    return out


def _ref_idb(data: bytes, pos: int, blen: int, order: str) -> tuple[int, int, int] | int:
    """(resolution, offset s, snaplen) of an IDB, or the offset of its fault."""
    _lt, _r, snap = struct.unpack_from(order + "HHI", data, pos + 8)
    res, off = 10**6, 0
    o, oend = pos + 16, pos + blen - 4
    while o + 4 <= oend:
        code, olen = struct.unpack_from(order + "HH", data, o)
        if code == 0:
            break
        if o + 4 + olen > oend:
            return o
        if code == 9 and olen >= 1:
            v = data[o + 4]
            if (v & 0x80 and (v & 0x7F) > 63) or (not v & 0x80 and v > 19):
                return o + 4
            res = 1 << (v & 0x7F) if v & 0x80 else 10**v
        elif code == 14 and olen == 8:
            off = struct.unpack_from(order + "q", data, o + 4)[0]
            off = max(-_MAX_SEC, min(_MAX_SEC, off))
        o += 4 + ((olen + 3) & ~3)
    return res, off, snap


def ref_pcapng(data: bytes) -> Expected:
    out = Expected()
    order = "<"
    ifaces: list[tuple[int, int, int, int]] = []  # global id, resolution, offset s, snaplen
    ngl = 0
    last_ts = 0
    pos = 0
    first = True
    while True:
        if len(data) - pos < 12:
            if first:
                out.fault = -1
            out.truncated = pos < len(data)
            return out
        btype = struct.unpack_from(order + "I", data, pos)[0]
        if first or btype == 0x0A0D0D0A:
            if data[pos : pos + 4] != b"\x0a\x0d\x0d\x0a":
                out.fault = pos
                return out
            bom = data[pos + 8 : pos + 12]
            if bom not in (b"\x4d\x3c\x2b\x1a", b"\x1a\x2b\x3c\x4d"):
                out.fault = pos + 8
                return out
            border = "<" if bom == b"\x4d\x3c\x2b\x1a" else ">"
            btype = 0x0A0D0D0A
        else:
            border = order
        blen = struct.unpack_from(border + "I", data, pos + 4)[0]
        if btype in (6, 2) and len(data) - pos >= 28:
            cap = struct.unpack_from(order + "I", data, pos + 20)[0]
            if cap > MAX_CAPLEN:
                out.fault, out.too_large = pos + 20, True
                return out
            if blen >= 32 and cap > blen - 32:
                out.fault = pos + 20
                return out
        minimum = {0x0A0D0D0A: 28, 1: 20, 2: 32, 3: 16, 6: 32}.get(btype, 12)
        if blen % 4 or blen < minimum or blen > 16 << 20:
            out.fault = pos + 4
            return out
        if pos + blen > len(data):
            if first:
                out.fault = -1
            out.truncated = True
            return out
        if struct.unpack_from(border + "I", data, pos + blen - 4)[0] != blen:
            out.fault = pos + blen - 4
            return out
        if btype == 0x0A0D0D0A:
            if struct.unpack_from(border + "H", data, pos + 12)[0] != 1:
                out.fault = pos + 12
                return out
            order, ifaces, first = border, [], False
        elif btype == 1:
            got = _ref_idb(data, pos, blen, order)
            if isinstance(got, int):
                out.fault = got
                return out
            ifaces.append((ngl, *got))
            ngl += 1
        elif btype in (6, 2, 3):
            if btype == 3:
                if not ifaces:
                    out.fault = pos
                    return out
                (wl,) = struct.unpack_from(order + "I", data, pos + 8)
                snap = ifaces[0][3]
                cap = min(wl, blen - 16, snap) if snap else min(wl, blen - 16)
                if cap > MAX_CAPLEN:
                    out.fault, out.too_large = pos + 8, True
                    return out
                out.frames.append((last_ts, wl, ifaces[0][0], data[pos + 12 : pos + 12 + cap]))
            else:
                if btype == 6:
                    ifc, hi, lo, cap, wl = struct.unpack_from(order + "IIIII", data, pos + 8)
                else:
                    ifc, _d, hi, lo, cap, wl = struct.unpack_from(order + "HHIIII", data, pos + 8)
                if ifc >= len(ifaces):
                    out.fault = pos + 8
                    return out
                gid, res, off, _snap = ifaces[ifc]
                q, r = divmod((hi << 32) | lo, res)
                sec = max(-_MAX_SEC, min(_MAX_SEC, min(q, _MAX_SEC) + off))
                # Resolutions finer than 2^-34 s are approximated by the decoder: not compared.
                last_ts = sec * 10**9 + r * 10**9 // res if res <= 1 << 34 else -1
                out.frames.append((last_ts, wl, gid, data[pos + 28 : pos + 28 + cap]))
        pos += blen


def reference(data: bytes) -> Expected:
    """What a careful one-record-at-a-time reader finds in ``data``."""
    if data[:4] == b"\x0a\x0d\x0d\x0a":
        return ref_pcapng(data)
    return ref_pcap(data)


# --- running the real decoders -------------------------------------------------------------------


def rows(batch: FrameBatch) -> list[Frame]:
    return [
        (int(batch.ts_ns[i]), int(batch.wirelen[i]), int(batch.iface[i]), batch.frame_bytes(i))
        for i in range(len(batch))
    ]


def pieces(data: bytes, cuts: list[int]) -> Iterator[bytes]:
    """``data`` split at the (sorted, deduplicated) offsets ``cuts``."""
    at = 0
    for c in sorted({c % (len(data) + 1) for c in cuts}):
        if c > at:
            yield data[at:c]
            at = c
    if at < len(data) or not data:
        yield data[at:]


def run_decoder(
    data: bytes, cuts: list[int], *, resync: bool = False, batch_size: int = 7
) -> tuple[list[Frame], WirelearnError | None, CaptureDecoder]:
    dec = CaptureDecoder(name="fuzz", max_caplen=MAX_CAPLEN, batch_size=batch_size, resync=resync)
    got: list[Frame] = []
    err = None
    try:
        for chunk in pieces(data, cuts):
            dec.feed(chunk)
            for b in dec.batches():
                got.extend(rows(b))
        for b in dec.finish():
            got.extend(rows(b))
    except WirelearnError as exc:
        err = exc
    return got, err, dec


def _blank_unknown_ts(got: list[Frame], exp: list[Frame]) -> list[Frame]:
    # Frames whose timestamp the reference leaves to the decoder (resolutions finer than 2^-34 s).
    head = [(g[0] if e[0] != -1 else -1, *g[1:]) for g, e in zip(got, exp, strict=False)]
    return head + got[len(exp) :]


def check_against_reference(data: bytes, cuts: list[int]) -> None:
    """The decoder yields exactly the reference's frames, then the same fault at the same offset."""
    exp = reference(data)
    with guarded(len(data)):
        got, err, dec = run_decoder(data, cuts)
    got = _blank_unknown_ts(got, exp.frames)
    assert got == exp.frames, f"{len(got)} frames, the reference has {len(exp.frames)}"
    if exp.fault is None:
        assert err is None, err
        assert dec.stats.truncated_records == int(exp.truncated)
    elif exp.fault == -1:
        assert isinstance(err, FormatError), err
    else:
        assert isinstance(err, FormatError), err
        assert err.offset == exp.fault, (err, exp.fault)
        assert isinstance(err, RecordTooLargeError) == exp.too_large, err
        assert str(err).count("\n") == 0


# --- strategies: captures --------------------------------------------------------------------------

orders = st.sampled_from(["<", ">"])
split_points = st.lists(st.integers(0, 1 << 16), max_size=12)


def pcap_capture(r: Rand) -> bytes:
    order = r.choice("<>")
    magic, hs = r.choice([(0xA1B2C3D4, 16), (0xA1B23C4D, 16), (0xA1B2CD34, 24)])
    snaplen = r.choice([0, 64, 65535, 262144, 0xFFFFFFFF])
    linktype = r.choice([0, 1, 101, 113, 228, 276, 0x04000001, 65535, 0xFFFFFFFF])
    major = r.choice([2, 2, 2, 1, 0, 0xFFFF])
    out = [struct.pack(order + "IHHiIII", magic, major, 4, 0, 0, snaplen, linktype)]
    # Long captures (over 4 KiB) take the vectorized candidate path, short ones the careful one.
    for _ in range(r.integers(0, r.choice([12, 250]))):
        data = r.binary(max_size=120)
        sec = r.choice([SEC, SEC + 1, 0, 0xFFFFFFFF])
        frac = r.integers(0, 1_000_000_010)
        wl = len(data) if r.boolean() else r.integers(0, 0xFFFFFFFF)
        out.append(struct.pack(order + "IIII", sec, frac, len(data), wl) + bytes(hs - 16) + data)
    return b"".join(out)


def _block(order: str, btype: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    return (
        struct.pack(order + "II", btype, len(body) + 12)
        + body
        + struct.pack(order + "I", len(body) + 12)
    )


_TSRESOL = [0, 3, 6, 9, 12, 19, 20, 0x80 | 10, 0x80 | 30, 0x80 | 40, 0x80 | 63, 0xC0, 0xFF]


def idb(r: Rand, order: str) -> bytes:
    opts = b""
    for _ in range(r.integers(0, 3)):
        kind = r.choice(["tsresol", "tsoffset", "name", "odd", "overflow"])
        if kind == "tsresol":
            opts += struct.pack(order + "HH", 9, 1) + bytes([r.choice(_TSRESOL)])
            opts += b"\0\0\0"
        elif kind == "tsoffset":
            opts += struct.pack(order + "HHq", 14, 8, r.integers(-(2**63), 2**63 - 1))
        elif kind == "name":
            name = r.binary(max_size=11)
            opts += struct.pack(order + "HH", 2, len(name)) + name + b"\0" * (-len(name) % 4)
        elif kind == "odd":
            value = r.binary(max_size=9)
            code = r.integers(0, 0xFFFF)
            opts += struct.pack(order + "HH", code, len(value)) + value + b"\0" * (-len(value) % 4)
        else:
            opts += struct.pack(order + "HH", r.integers(1, 20), 0xFFFF)
    if r.boolean():
        opts += struct.pack(order + "HH", 0, 0)
    snap = r.choice([0, 50, 65535, 0xFFFFFFFF])
    lt = r.choice([1, 101, 105, 113, 276, 0xFFFF])
    return _block(order, 1, struct.pack(order + "HHI", lt, 0, snap) + opts)


def pcapng_capture(r: Rand) -> bytes:
    out = []
    for _section in range(r.integers(1, 3)):
        order = r.choice("<>")
        major = r.choice([1, 1, 1, 2, 0])
        shb_opts = r.choice([b"", struct.pack(order + "HH", 4, 4) + b"test"])
        out.append(
            _block(
                order, 0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, major, 0, -1) + shb_opts
            )
        )
        nif = 0
        for _ in range(r.integers(0, r.choice([10, 200]))):
            kind = r.choice(["idb", "epb", "epb", "epb", "spb", "opb", "other"])
            if kind == "idb":
                out.append(idb(r, order))
                nif += 1
            elif kind in ("epb", "opb"):
                data = r.binary(max_size=120)
                ifc = r.integers(0, nif)  # sometimes one too far
                units = r.integers(0, 2**64 - 1)
                wl = len(data) if r.boolean() else r.integers(0, 0xFFFFFFFF)
                if kind == "epb":
                    head = struct.pack(
                        order + "IIIII", ifc, units >> 32, units & 0xFFFFFFFF, len(data), wl
                    )
                else:
                    head = struct.pack(
                        order + "HHIIII", ifc, 0, units >> 32, units & 0xFFFFFFFF, len(data), wl
                    )
                out.append(_block(order, 6 if kind == "epb" else 2, head + data))
            elif kind == "spb":
                data = r.binary(max_size=120)
                wl = r.integers(0, 200)
                out.append(_block(order, 3, struct.pack(order + "I", wl) + data))
            else:
                btype = r.choice([4, 5, 9, 10, 0x0BAD, 0x40000BAD, 0x80000001])
                out.append(_block(order, btype, r.binary(max_size=40)))
    return b"".join(out)


_U32_VALUES = [0, 1, 3, 12, 13, 16, 28, 32, 0xFFFFFFFF, 1 << 31, MAX_CAPLEN + 1, 16 << 20, 2 << 30]


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[bytes]) -> bytes:
    """A capture from ``base`` with a few length fields, bytes, cuts or insertions changed."""
    data = bytearray(draw(base))
    for _ in range(draw(st.integers(0, 4))):
        if not data:
            break
        what = draw(st.sampled_from(["u32", "u32", "byte", "cut", "insert", "dup"]))
        at = draw(st.integers(0, len(data) - 1))
        if what == "u32" and at + 4 <= len(data):
            value = draw(st.one_of(st.sampled_from(_U32_VALUES), st.integers(0, 0xFFFFFFFF)))
            data[at : at + 4] = struct.pack(draw(orders) + "I", value)
        elif what == "byte":
            data[at] = draw(st.integers(0, 255))
        elif what == "cut":
            del data[at:]
        elif what == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=9))
        else:
            span = draw(st.integers(1, 64))
            data[at:at] = data[at : at + span]
    return bytes(data)


random_heads = st.sampled_from(
    [
        b"",
        b"\xd4\xc3\xb2\xa1",
        b"\xa1\xb2\x3c\x4d",
        b"\x34\xcd\xb2\xa1",
        b"\x0a\x0d\x0d\x0a",
        b"\x0a\x0d\x0d\x0a\x1c\0\0\0\x4d\x3c\x2b\x1a",
        b"\x1f\x8b",
    ]
)


@st.composite
def random_capture(draw: st.DrawFn) -> bytes:
    return draw(random_heads) + draw(st.binary(max_size=600))


# --- target: pcap / pcapng ---------------------------------------------------------------------------


@st.composite
def pcap_case(draw: st.DrawFn) -> tuple[bytes, list[int]]:
    base = st.one_of(seeded(pcap_capture), seeded(pcap_capture).map(lambda d: d + b"\0" * 5))
    data = draw(st.one_of(mutated(base), random_capture().filter(lambda d: d[:1] != b"\x0a")))
    return data, draw(split_points)


@st.composite
def pcapng_case(draw: st.DrawFn) -> tuple[bytes, list[int]]:
    data = draw(
        st.one_of(
            mutated(seeded(pcapng_capture)), random_capture().filter(lambda d: d[:1] == b"\x0a")
        )
    )
    return data, draw(split_points)


def check_capture(case: tuple[bytes, list[int]]) -> None:
    data, cuts = case
    check_against_reference(data, cuts)


# --- target: gzip ------------------------------------------------------------------------------------


@st.composite
def gzip_case(draw: st.DrawFn) -> tuple[bytes, bytes, str, int]:
    """(compressed bytes, the capture inside, how it was damaged, chunk size)."""
    plain = draw(
        st.one_of(seeded(pcap_capture), seeded(pcapng_capture), mutated(seeded(pcap_capture)))
    )
    members = draw(st.integers(1, 3))
    cuts = sorted(
        draw(st.lists(st.integers(0, len(plain)), min_size=members - 1, max_size=members - 1))
    )
    bounds = [0, *cuts, len(plain)]
    gz = b"".join(
        gzip.compress(plain[a:b], compresslevel=draw(st.sampled_from([1, 9])), mtime=0)
        for a, b in itertools.pairwise(bounds)
    )
    damage = draw(st.sampled_from(["none", "none", "cut", "flip", "trailer", "zeros"]))
    if damage == "cut" and len(gz) > 1:
        gz = gz[: draw(st.integers(1, len(gz) - 1))]
    elif damage == "flip" and gz:
        at = draw(st.integers(0, len(gz) - 1))
        gz = gz[:at] + bytes([gz[at] ^ (1 << draw(st.integers(0, 7)))]) + gz[at + 1 :]
    elif damage == "trailer":
        gz += draw(st.binary(min_size=1, max_size=20))
    elif damage == "zeros":
        gz += b"\0" * draw(st.integers(1, 600))
    # Tiny reads cost a Python step per read: only for small captures (split points are
    # covered at length by the pcap and pcapng targets).
    sizes = [64, 512, 4096, 1 << 20] + ([1, 7] if len(plain) < 2000 else [])
    return gz, plain, damage, draw(st.sampled_from(sizes))


def check_gzip(case: tuple[bytes, bytes, str, int]) -> None:
    gz, plain, damage, chunk = case
    got: list[Frame] = []
    err: WirelearnError | None = None
    with guarded(len(gz) + len(plain)):
        try:
            with CaptureFileSource(io.BytesIO(gz), chunk_size=chunk, max_caplen=MAX_CAPLEN) as src:
                for b in src:
                    got.extend(rows(b))
        except WirelearnError as exc:
            err = exc
    if damage == "flip":
        return  # deflate data is not checked until the member's CRC: only "no crash" holds
    exp = reference(plain)
    got = _blank_unknown_ts(got, exp.frames)
    if damage in ("none", "trailer", "zeros"):
        assert got == exp.frames
        if exp.fault is None:
            if damage == "trailer" and gz[-1:] and err is not None:
                # Trailing bytes that start like a gzip member are a corrupt member.
                assert isinstance(err, InputError), err
            else:
                assert err is None, err
    else:
        # A cut stream yields a prefix of the frames, then says the gzip data ends early.
        assert got == exp.frames[: len(got)]
        assert err is None or isinstance(err, InputError)


# --- target: resync (pcap streams over a noisy serial line) -----------------------------------------


@st.composite
def resync_case(draw: st.DrawFn) -> tuple[bytes, list[int], list[bytes] | None]:
    """(stream, split points, the records when only non-record garbage was added)."""
    kind = draw(st.sampled_from(["clean-garbage", "random-garbage", "mutated", "random"]))
    if kind == "random":
        return draw(st.binary(max_size=800)), draw(split_points), None
    if kind == "mutated":
        return draw(mutated(seeded(pcap_capture))), draw(split_points), None
    records = draw(st.lists(st.binary(max_size=80), min_size=1, max_size=10))
    order = draw(orders)
    parts = [struct.pack(order + "IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for i, rec in enumerate(records):
        parts.append(struct.pack(order + "IIII", SEC + i, i, len(rec), len(rec)) + rec)
        if draw(st.booleans()):
            if kind == "clean-garbage":
                # 0xff never reads as a plausible record header (caplen 0xffffffff).
                parts.append(b"\xff" * draw(st.integers(1, 40)))
            else:
                parts.append(draw(st.binary(min_size=1, max_size=40)))
    data = b"".join(parts)
    clean = kind == "clean-garbage"
    if draw(st.booleans()):
        data = draw(st.binary(max_size=30)) + data  # joined mid-stream
        # Random bytes in front can forge a whole header of either byte order (the fuzzer
        # finds "d4 c3 b2 a1 02 00 04 00" quickly): the real header is then garbage by
        # design, and only the invariants that hold for any input are checked.
        clean = False
    return data, draw(split_points), records if clean else None


def check_resync(case: tuple[bytes, list[int], list[bytes] | None]) -> None:
    data, cuts, records = case
    with guarded(len(data)):
        got, err, dec = run_decoder(data, cuts, resync=True)
    if data[:4] != b"\x0a\x0d\x0d\x0a":
        # A pcap stream is resynchronised, never refused.
        assert err is None, err
    for f in got:
        assert f[3] in data, "a frame whose bytes are not in the input"
    assert dec.stats.discarded_bytes <= len(data)
    if records is not None:
        # The stream starts with its header and only 0xff runs were added between records.
        assert [f[3] for f in got] == records


# --- target: SLIP ------------------------------------------------------------------------------------

END, ESC, ESC_END, ESC_ESC = 0xC0, 0xDB, 0xDC, 0xDD
SLIP_MAX = 300
SLIP_MIN = 14


def _slip_escape(frame: bytes) -> bytes:
    return frame.replace(b"\xdb", b"\xdb\xdd").replace(b"\xc0", b"\xdb\xdc")


def _slip_unescape(seg: bytes) -> bytes | None:
    out = bytearray()
    i = 0
    while i < len(seg):
        c = seg[i]
        if c == ESC:
            if i + 1 >= len(seg) or seg[i + 1] not in (ESC_END, ESC_ESC):
                return None
            out.append(END if seg[i + 1] == ESC_END else ESC)
            i += 2
        else:
            out.append(c)
            i += 1
    return bytes(out)


def ref_slip(data: bytes) -> tuple[list[bytes], int]:
    """The frames RFC 1055 framing gives under the decoder's rules, and whether a frame was cut."""
    segs = data.split(b"\xc0")
    if len(segs) == 1:
        return [], 0  # no END yet: all of it is before the first frame
    frames = []
    for seg in segs[1:-1]:
        if not seg:
            continue
        out = _slip_unescape(seg)
        if out is not None and SLIP_MIN <= len(out) <= SLIP_MAX:
            frames.append(out)
    tail = _slip_unescape(segs[-1]) if segs[-1] else None
    return frames, int(tail is not None and SLIP_MIN <= len(tail) <= SLIP_MAX)


def slip_stream(r: Rand) -> bytes:
    parts = [r.choice([b"", b"\xc0", b"noise\xdb"])]
    kinds = ["frame", "frame", "frame", "noise", "bad-escape", "long", "short", "ends"]
    for _ in range(r.integers(0, 12)):
        kind = r.choice(kinds)
        if kind == "frame":
            body = r.binary(min_size=SLIP_MIN, max_size=120)
            parts.append(b"\xc0" + _slip_escape(body) + b"\xc0")
        elif kind == "noise":
            parts.append(r.binary(max_size=60))
        elif kind == "bad-escape":
            body = bytearray(_slip_escape(r.binary(min_size=SLIP_MIN, max_size=60)))
            body.insert(r.integers(0, len(body)), ESC)
            parts.append(b"\xc0" + bytes(body) + b"\xc0")
        elif kind == "long":
            n = r.choice([SLIP_MAX, SLIP_MAX + 1, 2 * SLIP_MAX + 5, 5000])
            fill = r.choice([b"\x00", b"\xdb\xdd", b"\xdb", b"\xdb\xdc"])
            parts.append(b"\xc0" + fill * n + b"\xc0")
        elif kind == "short":
            parts.append(b"\xc0" + _slip_escape(r.binary(max_size=SLIP_MIN)) + b"\xc0")
        else:
            parts.append(b"\xc0" * r.integers(1, 4))
    data = b"".join(parts)
    if data and r.boolean():
        data = data[: r.integers(0, len(data))]
    return data


@st.composite
def slip_case(draw: st.DrawFn) -> tuple[bytes, list[int]]:
    return draw(st.one_of(seeded(slip_stream), st.binary(max_size=300))), draw(split_points)


def check_slip(case: tuple[bytes, list[int]]) -> None:
    data, cuts = case
    got: list[bytes] = []
    with guarded(len(data)):
        dec = SlipDecoder(max_frame=SLIP_MAX, min_frame=SLIP_MIN, batch_size=5, clock=lambda: 1)
        most = 0
        for chunk in pieces(data, cuts):
            dec.feed(chunk)
            most = max(most, dec.pending)
            for b in dec.batches():
                got.extend(b.frame_bytes(i) for i in range(len(b)))
        for b in dec.finish():
            got.extend(b.frame_bytes(i) for i in range(len(b)))
    frames, cut = ref_slip(data)
    assert got == frames, f"{len(got)} frames, the reference has {len(frames)}"
    assert dec.stats.truncated_records == cut
    # Only the frame in progress is held, and never more than its escaped maximum.
    assert most <= 2 * SLIP_MAX + max((len(c) for c in pieces(data, cuts)), default=0)


# --- target: the feature decoder ----------------------------------------------------------------------

_ETHERTYPES = [
    0x0800,
    0x86DD,
    0x0806,
    0x88CC,
    0x8100,
    0x88A8,
    0x9100,
    0x8847,
    0x0000,
    0x05DC,
    0x05DD,
    0xFFFF,
]
_IP_PROTOS = [6, 17, 1, 58, 132, 33, 136, 0, 43, 44, 50, 51, 59, 60, 135, 4, 41, 255]
_EXT = [0, 43, 44, 60, 51, 135, 139, 140, 253, 254, 50, 59]


def _mac(r: Rand) -> bytes:
    return r.binary(min_size=6, max_size=6)


def transport(r: Rand, proto: int) -> bytes:
    sport, dport = r.integers(0, 65535), r.integers(0, 65535)
    payload = r.binary(max_size=40)
    if proto == 6:
        off = r.choice([5, 5, 6, 15, 0, 4])
        flags = r.integers(0, 0xFFF)
        opts = bytes(max(0, off - 5) * 4)
        return (
            struct.pack(">HHIIHHHH", sport, dport, 1, 2, (off << 12) | flags, 512, 0, 0)
            + opts
            + payload
        )
    if proto in (17, 136):
        length = r.choice([8 + len(payload), 0, 7, 8, 0xFFFF])
        return struct.pack(">HHHH", sport, dport, length, 0) + payload
    if proto == 33:
        return (
            struct.pack(">HHBBBB", sport, dport, r.integers(0, 255), 0, 0, 0) + bytes(8) + payload
        )
    if proto == 132:
        return struct.pack(">HHII", sport, dport, 0, 0) + payload
    return r.binary(max_size=40)


def ipv4(r: Rand) -> bytes:
    proto = r.choice(_IP_PROTOS)
    ihl = r.choice([5, 5, 6, 15, 4, 0])
    frag = r.choice([0, 0, 0x2000, 0x0001, 0x4000])
    body = transport(r, proto)
    opts = bytes(max(0, ihl - 5) * 4)
    total = r.choice([4 * max(ihl, 5) + len(body), 0, 19, 20, 0xFFFF, 4 * max(ihl, 5)])
    version = r.choice([4, 4, 4, 6, 0, 15])
    head = struct.pack(
        ">BBHHHBBH4s4s",
        (version << 4) | ihl,
        0,
        total,
        1,
        frag,
        r.integers(0, 255),
        proto,
        0,
        _mac(r)[:4],
        _mac(r)[:4],
    )
    return head + opts + body


def ipv6(r: Rand) -> bytes:
    chain = [r.choice(_EXT) for _ in range(r.integers(0, 10))]
    last = r.choice(_IP_PROTOS)
    nhs = [*chain, last]
    ext = b""
    for i, kind in enumerate(chain):
        nh = nhs[i + 1]
        if kind == 44:
            ext += struct.pack(">BBHI", nh, 0, r.choice([0, 1, 8, 0xFFF9]), 7)
        elif kind == 51:
            plen = r.choice([1, 2, 4, 255])
            ext += struct.pack(">BB", nh, plen) + bytes(max(0, (plen + 2) * 4 - 2))
        elif kind in (50, 59):
            ext += r.binary(max_size=16)
            break
        else:
            hlen = r.choice([0, 1, 2, 255])
            ext += struct.pack(">BB", nh, hlen) + bytes((hlen + 1) * 8 - 2)
    body = ext + transport(r, last)
    plen = r.choice([len(body), 0, 1, 0xFFFF])
    version = r.choice([6, 6, 6, 4, 0])
    head = struct.pack(
        ">IHBB16s16s", version << 28, plen, nhs[0], 64, bytes(16), b"\x20\x01" + bytes(14)
    )
    return head + body


def network(r: Rand) -> tuple[int, bytes]:
    kind = r.choice(["ipv4", "ipv6", "arp", "raw"])
    if kind == "ipv4":
        return 0x0800, ipv4(r)
    if kind == "ipv6":
        return 0x86DD, ipv6(r)
    if kind == "arp":
        return 0x0806, struct.pack(">HHBBH", 1, 0x0800, 6, 4, 1) + bytes(20)
    return r.choice(_ETHERTYPES), r.binary(max_size=60)


def frame_with_linktype(r: Rand) -> tuple[int, bytes]:
    linktype = r.choice([1, 1, 1, 0, 12, 14, 101, 108, 113, 228, 229, 276, 105, 0xFFFF])
    ethertype, net = network(r)
    if linktype == 1:
        tags = b""
        for _ in range(r.integers(0, 10)):
            tags += struct.pack(">HH", r.choice([0x8100, 0x88A8, 0x9100]), r.integers(0, 0xFFFF))
        frame = _mac(r) + _mac(r) + tags + struct.pack(">H", ethertype) + net
    elif linktype == 113:
        halen = r.choice([6, 0, 8, 20])
        hatype = r.choice([1, 772, 824, 0xFFFF])
        proto = r.choice([ethertype, 0x0004, 0x0003, 0x0600])
        frame = struct.pack(">HHH8sH", 0, hatype, halen, _mac(r) + b"\0\0", proto) + net
    elif linktype == 276:
        halen = r.choice([6, 0, 8, 20])
        hatype = r.choice([1, 772, 824])
        proto = r.choice([ethertype, 0x0004])
        frame = struct.pack(">HHIHBB8s", proto, 0, 2, hatype, 0, halen, _mac(r) + b"\0\0") + net
    elif linktype in (0, 108):
        family = r.choice([2, 10, 24, 28, 30, 0, 0xFFFFFFFF])
        fmt = r.choice(["<I", ">I"]) if linktype == 0 else ">I"
        frame = struct.pack(fmt, family) + net
    else:
        frame = net
    return linktype, frame


def decode_frames(r: Rand) -> list[tuple[int, bytes, int]]:
    """Frames as (link type, bytes, wire length)."""
    out = []
    for _ in range(r.integers(1, 12)):
        if r.integers(0, 9) == 0:
            lt = r.choice([0, 1, 12, 14, 101, 108, 113, 228, 229, 276, 999])
            frame = r.binary(max_size=80)
        else:
            lt, frame = frame_with_linktype(r)
        b = bytearray(frame)
        for _ in range(r.integers(0, 2)):
            if b:
                b[r.integers(0, len(b) - 1)] = r.integers(0, 255)
        if r.boolean():
            del b[r.integers(0, len(b)) :]
        wl = r.choice([len(b), len(b) + r.integers(0, 2000), 0])
        out.append((lt, bytes(b), wl))
    return out


decode_case = seeded(decode_frames)


_INT_COLUMNS = {
    "ethertype": 0xFFFF,
    "vlan": 4095,
    "ip_proto": 255,
    "ttl": 255,
    "sport": 0xFFFF,
    "dport": 0xFFFF,
    "tcp_flags": 0xFFF,
}


def _batch(frames: list[tuple[int, bytes, int]]) -> FrameBatch:
    lts = sorted({lt for lt, _, _ in frames})
    return FrameBatch.from_frames(
        [f for _, f, _ in frames],
        wirelen=[w for _, _, w in frames],
        interfaces=tuple(Interface(linktype=lt) for lt in lts),
        iface=[lts.index(lt) for lt, _, _ in frames],
    )


_COMPARED = (
    "linktype",
    "cap_len",
    "frame_len",
    "dst_mac",
    "src_mac",
    "ethertype",
    "vlan",
    "payload_len",
    "ip_version",
    "ip_src",
    "ip_dst",
    "ip_proto",
    "ttl",
    "sport",
    "dport",
    "tcp_flags",
    "status",
    "ip_src_valid",
    "ip_dst_valid",
)


def check_decode(frames: list[tuple[int, bytes, int]]) -> None:
    batch = _batch(frames)
    size = sum(len(f) for _, f, _ in frames)
    with guarded(size):
        fb = decode(batch)
        # The same frames in the opposite order, next to other neighbours: a read that
        # strays into a neighbouring frame gives another answer.
        rev = decode(_batch(frames[::-1]))
    n = len(frames)
    assert len(fb) == n
    assert np.array_equal(fb.frame, batch.frame)
    assert np.array_equal(fb.cap_len, batch.caplen)
    assert set(fb.status.tolist()) <= {0, 1, 2, 3}
    assert ((fb.ip_version == -1) | (fb.ip_version == 4) | (fb.ip_version == 6)).all()
    for name, top in _INT_COLUMNS.items():
        col = getattr(fb, name).astype(np.int64)
        assert ((col == -1) | ((col >= 0) & (col <= top))).all(), name
    pl = fb.payload_len.astype(np.int64)
    assert ((pl == -1) | ((pl >= 0) & (pl <= fb.cap_len))).all()
    assert ((fb.dst_mac >= -1) & (fb.dst_mac < 1 << 48)).all()
    for name in _COMPARED:
        a, b = getattr(fb, name), getattr(rev, name)[::-1]
        assert np.array_equal(a, b), f"{name} depends on the neighbouring frames"
    if n <= 4:
        for i in range(n):
            one = decode(_batch([frames[i]]))
            for name in _COMPARED:
                assert np.array_equal(getattr(one, name)[0], getattr(fb, name)[i]), name


# --- the registry --------------------------------------------------------------------------------------


def _warm_gzip() -> tuple[bytes, bytes, str, int]:
    plain = pcap_capture(Rand(1))
    return gzip.compress(plain, mtime=0), plain, "none", 7


@dataclass(frozen=True)
class Target:
    """A fuzz target: a strategy of cases, the check that runs one, and a first case.

    ``warm()`` builds a fixed case that ``warm_up`` runs once before measuring, so
    that first-use allocations (imports, numpy and zlib caches) do not count against
    the memory bound of whichever case happens to come first.
    """

    name: str
    strategy: st.SearchStrategy[Any]
    check: Callable[[Any], None]
    warm: Callable[[], Any]
    description: str


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target(
            "pcap",
            pcap_case(),
            check_capture,
            lambda: (pcap_capture(Rand(0)), [5, 99]),
            "pcap files against the reference reader",
        ),
        Target(
            "pcapng",
            pcapng_case(),
            check_capture,
            lambda: (pcapng_capture(Rand(0)), [5, 99]),
            "pcapng files against the reference reader",
        ),
        Target("gzip", gzip_case(), check_gzip, _warm_gzip, "gzip'd captures, cut and corrupted"),
        Target(
            "resync",
            resync_case(),
            check_resync,
            lambda: (pcap_capture(Rand(2)), [7], None),
            "pcap streams with noise, resync=True",
        ),
        Target(
            "slip",
            slip_case(),
            check_slip,
            lambda: (slip_stream(Rand(0)), [3]),
            "SLIP streams against the reference framer",
        ),
        Target(
            "decode",
            decode_case,
            check_decode,
            lambda: decode_frames(Rand(0)),
            "the feature decoder on layered frames",
        ),
    )
}


def warm_up(target: Target) -> None:
    """Run ``target`` once on its fixed first case (see ``Target``)."""
    target.check(target.warm())
