"""Property tests of the capture decoder against a small reference reader.

The reference (``fuzz/fuzz_targets.py``, shared with the fuzzer) walks pcap and
pcapng one record at a time, in the simplest way, with the decoder's rules. Hypothesis builds valid captures,
mutates their length fields, options and link types, cuts them and sprinkles
garbage in them, and checks that the decoder:

- only ever raises ``WirelearnError`` subclasses (and never hangs: a timeout guards it);
- yields exactly the frames the reference finds before the first fault, whatever the
  chunking, and reports the fault at the same offset;
- never allocates from a bogus length (tracemalloc peak bounded by the input size).
"""

from __future__ import annotations

import struct
import sys
import tracemalloc

import pytest
from conftest import ROOT
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from wirelearn.capture import CaptureDecoder, FrameBatch
from wirelearn.errors import FormatError, RecordTooLargeError, WirelearnError

sys.path.insert(0, str(ROOT / "fuzz"))
from fuzz_targets import MAX_CAPLEN, SEC, Frame, reference

PROFILE = settings(
    derandomize=True,
    deadline=None,
    max_examples=200,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# --- running the decoder --------------------------------------------------------------------------


def run(data: bytes, chunk: int) -> tuple[list[Frame], WirelearnError | None, CaptureDecoder]:
    dec = CaptureDecoder(name="prop", max_caplen=MAX_CAPLEN, batch_size=7)
    batches: list[FrameBatch] = []
    err = None
    try:
        for i in range(0, max(len(data), 1), chunk):
            dec.feed(data[i : i + chunk])
            batches.extend(dec.batches())
        batches.extend(dec.finish())
    except WirelearnError as exc:
        err = exc
    got = [
        (int(b.ts_ns[i]), int(b.wirelen[i]), int(b.iface[i]), b.frame_bytes(i))
        for b in batches
        for i in range(len(b))
    ]
    return got, err, dec


def check(data: bytes, chunk: int) -> None:
    exp = reference(data)
    got, err, dec = run(data, chunk)
    # Frames whose timestamp the reference leaves to the decoder (resolutions finer than 2^-34 s).
    got = [
        (g[0] if e[0] != -1 else -1, *g[1:]) for g, e in zip(got, exp.frames, strict=False)
    ] + got[len(exp.frames) :]
    assert got == exp.frames
    if exp.fault is None:
        assert err is None, err
        assert dec.stats.truncated_records == int(exp.truncated)
    elif exp.fault == -1:
        assert isinstance(err, FormatError)
    else:
        assert isinstance(err, FormatError), err
        assert err.offset == exp.fault
        assert isinstance(err, RecordTooLargeError) == exp.too_large


# --- strategies -----------------------------------------------------------------------------------

orders = st.sampled_from(["<", ">"])
payloads = st.binary(max_size=120)


@st.composite
def pcap_capture(draw: st.DrawFn) -> bytes:
    order = draw(orders)
    magic, hs = draw(st.sampled_from([(0xA1B2C3D4, 16), (0xA1B23C4D, 16), (0xA1B2CD34, 24)]))
    snaplen = draw(st.sampled_from([0, 64, 65535, 262144]))
    linktype = draw(st.sampled_from([0, 1, 101, 113, 228, 0x04000001, 65535]))
    out = [struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)]
    # Long captures (over 4 KiB) take the vectorized candidate path, short ones the careful one.
    for data in draw(st.lists(payloads, max_size=draw(st.sampled_from([12, 250])))):
        sec = draw(st.sampled_from([SEC, SEC + 1, 0, 0xFFFFFFFF]))
        frac = draw(st.integers(0, 1_000_000_010))
        wl = draw(st.one_of(st.just(len(data)), st.integers(0, 70000)))
        out.append(struct.pack(order + "IIII", sec, frac, len(data), wl) + bytes(hs - 16) + data)
    return b"".join(out)


def _block(order: str, btype: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    return (
        struct.pack(order + "II", btype, len(body) + 12)
        + body
        + struct.pack(order + "I", len(body) + 12)
    )


@st.composite
def pcapng_capture(draw: st.DrawFn) -> bytes:
    out = []
    for _section in range(draw(st.integers(1, 3))):
        order = draw(orders)
        out.append(_block(order, 0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1)))
        nif = 0
        for _ in range(draw(st.integers(0, draw(st.sampled_from([10, 200]))))):
            kind = draw(st.sampled_from(["idb", "epb", "epb", "epb", "spb", "opb", "other"]))
            if kind == "idb":
                opts = b""
                if draw(st.booleans()):
                    opts += (
                        struct.pack(order + "HH", 9, 1)
                        + bytes(
                            [
                                draw(
                                    st.sampled_from(
                                        [
                                            0,
                                            3,
                                            6,
                                            9,
                                            12,
                                            19,
                                            20,
                                            0x80 | 10,
                                            0x80 | 30,
                                            0x80 | 40,
                                            0xC0,
                                        ]
                                    )
                                )
                            ]
                        )
                        + b"\0\0\0"
                    )
                if draw(st.booleans()):
                    opts += struct.pack(
                        order + "HHq", 14, 8, draw(st.integers(-(2**63), 2**63 - 1))
                    )
                if draw(st.booleans()):
                    opts += struct.pack(order + "HH", 2, 4) + b"eth0"
                snap = draw(st.sampled_from([0, 50, 65535]))
                lt = draw(st.sampled_from([1, 105, 113, 276]))
                out.append(_block(order, 1, struct.pack(order + "HHI", lt, 0, snap) + opts))
                nif += 1
            elif kind in ("epb", "opb"):
                data = draw(payloads)
                ifc = draw(st.integers(0, nif))  # sometimes one too far
                units = draw(st.integers(0, 2**64 - 1))
                fmt = "IIIII" if kind == "epb" else "HHIIII"
                head = (
                    (ifc, units >> 32, units & 0xFFFFFFFF, len(data), len(data))
                    if kind == "epb"
                    else (ifc, 0, units >> 32, units & 0xFFFFFFFF, len(data), len(data))
                )
                out.append(
                    _block(order, 6 if kind == "epb" else 2, struct.pack(order + fmt, *head) + data)
                )
            elif kind == "spb":
                data = draw(payloads)
                out.append(
                    _block(order, 3, struct.pack(order + "I", draw(st.integers(0, 200))) + data)
                )
            else:
                out.append(
                    _block(
                        order,
                        draw(st.sampled_from([4, 5, 9, 10, 0x0BAD, 0x40000BAD])),
                        draw(st.binary(max_size=40)),
                    )
                )
    return b"".join(out)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.one_of(pcap_capture(), pcapng_capture())))
    for _ in range(draw(st.integers(0, 3))):
        if not data:
            break
        what = draw(st.sampled_from(["u32", "byte", "cut", "insert"]))
        at = draw(st.integers(0, len(data) - 1))
        if what == "u32" and at + 4 <= len(data):
            value = draw(
                st.sampled_from([0, 1, 12, 13, 28, 0xFFFFFFFF, 1 << 31, MAX_CAPLEN + 1, 16 << 20])
            )
            data[at : at + 4] = struct.pack("<I", value)
        elif what == "byte":
            data[at] = draw(st.integers(0, 255))
        elif what == "cut":
            del data[at:]
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=9))
    return bytes(data)


# --- properties -----------------------------------------------------------------------------------


@pytest.mark.timeout(120)
@PROFILE
@given(data=mutated(), chunk=st.sampled_from([1, 3, 64, 1 << 20]))
def test_mutated_captures_match_the_reference(data: bytes, chunk: int) -> None:
    check(data, chunk)


@pytest.mark.timeout(120)
@settings(PROFILE, max_examples=100)
@given(data=st.one_of(pcap_capture(), pcapng_capture()))
def test_valid_captures_decode_completely(data: bytes) -> None:
    exp = reference(data)
    if exp.fault is None:
        assert not exp.truncated
    check(data, 1 << 20)


@pytest.mark.timeout(120)
@settings(derandomize=True, deadline=None, max_examples=150)
@given(
    head=st.sampled_from(
        [
            b"",
            b"\xd4\xc3\xb2\xa1",
            b"\xa1\xb2\x3c\x4d",
            b"\x0a\x0d\x0d\x0a",
            b"\x0a\x0d\x0d\x0a\x1c\0\0\0\x4d\x3c\x2b\x1a",
        ]
    ),
    tail=st.binary(max_size=600),
)
def test_random_bytes_only_raise_wirelearn_errors(head: bytes, tail: bytes) -> None:
    _, err, _ = run(head + tail, 7)
    assert err is None or isinstance(err, WirelearnError)


@pytest.mark.timeout(120)
@settings(derandomize=True, deadline=None, max_examples=60)
@given(data=mutated())
def test_bogus_lengths_never_allocate(data: bytes) -> None:
    tracemalloc.start()
    try:
        run(data, 64)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # A few copies of the input plus fixed overhead; a length taken on trust would need MiBs.
    assert peak < 200_000 + 20 * len(data)


@pytest.mark.timeout(120)
@settings(derandomize=True, deadline=None, max_examples=100)
# A header misread one byte into a record must not pass as an oversize record to drop.
@example(records=[b"", bytes(17)], garbage=[b"\x00"], chunk=1)
@given(
    records=st.lists(st.binary(min_size=0, max_size=80), min_size=1, max_size=8),
    garbage=st.lists(st.binary(min_size=1, max_size=30), min_size=1, max_size=3),
    chunk=st.sampled_from([1, 5, 1 << 20]),
)
def test_resync_recovers_every_record_after_garbage(
    records: list[bytes], garbage: list[bytes], chunk: int
) -> None:
    """Garbage between records: every record is found again, garbage is counted, nothing else."""
    head = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    parts = [head]
    junk = 0
    for i, rec in enumerate(records):
        parts.append(struct.pack("<IIII", SEC + i, i, len(rec), len(rec)) + rec)
        if i < len(garbage):
            # Garbage made of 0xff never looks like a record header (caplen 0xffffffff).
            g = b"\xff" * len(garbage[i])
            parts.append(g)
            junk += len(g)
    data = b"".join(parts)
    dec = CaptureDecoder(name="serial", resync=True, max_caplen=MAX_CAPLEN)
    out: list[FrameBatch] = []
    for i in range(0, len(data), chunk):
        dec.feed(data[i : i + chunk])
        out.extend(dec.batches())
    out.extend(dec.finish())
    got = [b.frame_bytes(i) for b in out for i in range(len(b))]
    assert got == records
    assert dec.stats.discarded_bytes == junk
