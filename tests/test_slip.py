"""SLIP framing: the vectorized encoder and the incremental decoder.

Round trips run under hypothesis with frames full of END/ESC bytes and
arbitrary chunk splits; the decoder's noise accounting is checked to the byte
and its memory bound with frames far over ``max_frame``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wirelearn.capture import FrameBatch
from wirelearn.capture._slip import END, ESC, ESC_END, ESC_ESC, SlipDecoder, slip_encode
from wirelearn.errors import ConfigError


def frames_of(batches: Iterable[FrameBatch]) -> list[bytes]:
    return [b.frame_bytes(i) for b in batches for i in range(len(b))]


def decode(
    data: bytes, chunks: Iterable[int] | None = None, **kw: object
) -> tuple[list[bytes], SlipDecoder]:
    dec = SlipDecoder(**kw)  # type: ignore[arg-type]
    out: list[FrameBatch] = []
    pos = 0
    for size in chunks or [len(data)]:
        dec.feed(data[pos : pos + size])
        pos += size
        out.extend(dec.batches())
    dec.feed(data[pos:])
    out.extend(dec.batches())
    out.extend(dec.finish())
    return frames_of(out), dec


def reference_encode(frames: list[bytes]) -> bytes:
    """RFC 1055's send_packet, byte by byte, with an END before each frame too."""
    out = bytearray()
    for f in frames:
        out.append(END)
        for b in f:
            if b == END:
                out += bytes([ESC, ESC_END])
            elif b == ESC:
                out += bytes([ESC, ESC_ESC])
            else:
                out.append(b)
        out.append(END)
    return bytes(out)


# Frames biased towards the special bytes (a quarter of them), at least an Ethernet header long.
_BIAS = bytes([END, ESC, ESC_END, ESC_ESC] * 16) + bytes(range(64, 256))
frame_st = st.binary(min_size=14, max_size=300).map(lambda b: b.translate(_BIAS))


@settings(max_examples=150, deadline=None)
@given(frames=st.lists(frame_st, max_size=12), cuts=st.lists(st.integers(0, 40), max_size=30))
def test_round_trip_with_arbitrary_chunking(frames: list[bytes], cuts: list[int]) -> None:
    encoded = slip_encode(FrameBatch.from_frames(frames))
    assert encoded == reference_encode(frames)
    got, dec = decode(encoded, cuts)
    assert got == frames
    assert dec.stats.discarded_bytes == 0
    assert dec.stats.oversize_dropped == 0
    assert dec.pending == 0


def test_encode_of_a_slice_and_of_nothing() -> None:
    batch = FrameBatch.from_frames([b"\xc0" * 20, b"x" * 15, b"\xdb" * 16])
    assert slip_encode(batch.slice(1, 3)) == reference_encode([b"x" * 15, b"\xdb" * 16])
    assert slip_encode(FrameBatch.empty()) == b""


def test_frames_are_stamped_with_the_arrival_of_their_end_and_never_go_back() -> None:
    now = iter([5_000, 7_000, 6_000])
    dec = SlipDecoder(clock=lambda: next(now))
    a, b, c = (bytes([i]) * 20 for i in (1, 2, 3))
    dec.feed(b"\xc0" + a + b"\xc0\xc0" + b[:5])
    dec.feed(b[5:] + b"\xc0")
    dec.feed(b"\xc0" + c + b"\xc0")
    out = list(dec.batches())
    assert frames_of(out) == [a, b, c]
    assert np.concatenate([x.ts_ns for x in out]).tolist() == [5_000, 7_000, 7_000]
    assert out[0].frame[0] == 1


def test_bytes_before_the_first_end_are_noise() -> None:
    # The line was joined mid-frame: what comes before the first END is a frame's tail.
    tail = b"tail of a frame that started before us"
    frame = bytes(range(20))
    got, dec = decode(tail + reference_encode([frame]), [7, 5])
    assert got == [frame]
    assert dec.stats.discarded_bytes == len(tail)


@pytest.mark.parametrize(
    "chunks", [None, [1] * 400, [3, 100, 17]], ids=["whole", "bytewise", "mixed"]
)
def test_noise_between_frames_is_counted_exactly(chunks: list[int] | None) -> None:
    frames = [bytes([i]) * (14 + i) for i in range(1, 6)]
    noise = [
        b"\x01\x02\x03",  # too short for a frame
        b"\xdb\x41" + b"z" * 30,  # an invalid escape, long enough otherwise
        b"\x13" * 13,  # one byte short of an Ethernet header
        b"abc\xdb",  # ends with a bare ESC
    ]
    data = reference_encode(frames[:1])
    for f, n in zip(frames[1:], noise, strict=True):
        data += n + reference_encode([f])
    got, dec = decode(data, chunks)
    assert got == frames
    assert dec.stats.discarded_bytes == sum(len(n) for n in noise)
    assert dec.stats.oversize_dropped == 0


def test_noise_split_by_end_bytes_counts_every_non_end_byte() -> None:
    frame = b"F" * 20
    noise = b"\x01\xc0\x02\x03\xc0\xc0\xdb"
    got, dec = decode(reference_encode([frame]) + noise + reference_encode([frame]))
    assert got == [frame, frame]
    assert dec.stats.discarded_bytes == len(noise) - noise.count(b"\xc0")


@pytest.mark.parametrize("min_frame", [1, 14, 60])
def test_min_frame_is_configurable(min_frame: int) -> None:
    frames = [b"a" * 1, b"b" * 14, b"c" * 60]
    got, dec = decode(reference_encode(frames), min_frame=min_frame)
    assert got == [f for f in frames if len(f) >= min_frame]
    assert dec.stats.discarded_bytes == sum(len(f) for f in frames if len(f) < min_frame)


@pytest.mark.parametrize("chunk", [1000, 4096, 1 << 20])
def test_oversize_frames_are_dropped_with_bounded_memory(chunk: int) -> None:
    small = [b"s" * 100, b"t" * 200, b"u" * 300]
    # Escaped bytes count once: 600 ENDs are 1200 bytes on the line but 600 in the frame.
    fits = b"\xc0" * 600
    huge = bytes(range(256)) * 4000  # 1 MB, over max_frame whichever way it is cut
    data = reference_encode([small[0], huge, small[1], fits, huge, small[2]])
    dec = SlipDecoder(max_frame=1000)
    out: list[FrameBatch] = []
    for i in range(0, len(data), chunk):
        dec.feed(data[i : i + chunk])
        # Never more than one frame's worth (escaped) plus what a chunk can add.
        assert dec.pending <= 2 * 1000 + 2
        out.extend(dec.batches())
    out.extend(dec.finish())
    assert frames_of(out) == [small[0], small[1], fits, small[2]]
    assert dec.stats.oversize_dropped == 2
    assert dec.stats.discarded_bytes == 0
    assert any("max_frame" in w for w in dec.stats.warnings)


def test_a_run_of_escapes_cannot_grow_the_buffer() -> None:
    dec = SlipDecoder(max_frame=100)
    dec.feed(b"\xc0")
    for _ in range(100):
        dec.feed(b"\xdb" * 50)
        assert dec.pending <= 2 * 100
    dec.feed(b"\xc0" + reference_encode([b"k" * 20]))
    got = frames_of([*dec.batches(), *dec.finish()])
    assert got == [b"k" * 20]
    assert dec.stats.discarded_bytes == 5000


def test_end_of_input_inside_a_frame() -> None:
    frame = b"q" * 30
    got, dec = decode(reference_encode([frame]) + b"\xc0" + b"r" * 20)
    assert got == [frame]
    assert dec.stats.truncated_records == 1
    assert "ended inside a SLIP frame" in dec.stats.warnings[-1]
    got, dec = decode(reference_encode([frame]) + b"\xc0xy")
    assert got == [frame]
    assert dec.stats.truncated_records == 0
    assert dec.stats.discarded_bytes == 2


def test_batches_respect_batch_size_and_regroup_small_feeds() -> None:
    frames = [bytes([i % 256]) * 20 for i in range(50)]
    data = reference_encode(frames)
    dec = SlipDecoder(batch_size=8)
    for i in range(0, len(data), 11):
        dec.feed(data[i : i + 11])
    out = [*dec.batches(), *dec.finish()]
    assert frames_of(out) == frames
    assert max(len(b) for b in out) <= 8
    assert len(out) < 15  # regrouped, not one batch per feed
    assert np.concatenate([b.frame for b in out]).tolist() == list(range(1, 51))


def test_interfaces_and_linktype() -> None:
    dec = SlipDecoder(linktype=101, name="serial:/dev/ttyS0", min_frame=20)
    dec.feed(reference_encode([b"\x45" + b"\x00" * 19]))
    (batch,) = list(dec.batches())
    assert batch.linktype.tolist() == [101]
    assert dec.interfaces[0].name == "serial:/dev/ttyS0"


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"max_frame": 0}, "max_frame must be an integer from 1"),
        ({"max_frame": True}, "max_frame must be an integer"),
        ({"min_frame": 0}, "min_frame must be an integer from 1"),
        ({"min_frame": 100, "max_frame": 50}, "min_frame must be an integer from 1 to 50"),
        ({"linktype": -1}, "linktype must be an integer from 0 to 65535"),
        ({"batch_size": 0}, "batch_size must be an integer from 1"),
    ],
)
def test_configuration_is_validated(kw: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SlipDecoder(**kw)  # type: ignore[arg-type]


def test_feed_after_finish_is_a_bug() -> None:
    dec = SlipDecoder()
    list(dec.finish())
    with pytest.raises(ValueError, match="after finish"):
        dec.feed(b"\xc0")


def test_a_megabyte_stream_decodes_fast() -> None:
    rng = np.random.default_rng(7)
    sizes = rng.integers(60, 1500, 1400)
    frames = [rng.integers(0, 256, int(s), dtype=np.uint8).tobytes() for s in sizes]
    batch = FrameBatch.from_frames(frames)
    t0 = time.perf_counter()
    data = slip_encode(batch)
    t_enc = time.perf_counter() - t0
    assert len(data) > 1_000_000
    t0 = time.perf_counter()
    got, _ = decode(data, [65536] * (len(data) // 65536))
    t_dec = time.perf_counter() - t0
    assert got == frames
    # A byte-by-byte Python loop takes well over a second for this; numpy takes milliseconds.
    assert t_enc < 0.25, t_enc
    assert t_dec < 0.25, t_dec
