"""Writer round trips: real fixtures written by ``open_writer``, read back by tshark and by us.

The frames must survive unchanged: count, timestamps to the nanosecond, captured
and wire lengths, bytes (MD5 per frame), and link type per frame (pcapng with
several interfaces and link types).
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pytest
from conftest import FIXTURES, need_tool
from test_readers import tshark_rows

from wirelearn.capture import FrameBatch, PcapWriter, open_capture, open_writer
from wirelearn.errors import ConfigError

Row = tuple[int, int, int, str]

SINGLE_LINKTYPE = ["mixed-lo.pcap", "big-endian.pcap", "sll-nanosecond.pcap", "gzip-ext-lies.pcap"]


def read_all(path: Path | io.BytesIO) -> tuple[list[FrameBatch], list[Row], list[int]]:
    """Batches, (ts, caplen, wirelen, md5) rows and the link type of each frame."""
    with open_capture(path) as src:
        batches = list(src)
    rows = [
        (
            int(b.ts_ns[i]),
            int(b.caplen[i]),
            int(b.wirelen[i]),
            hashlib.md5(b.frame_bytes(i)).hexdigest(),
        )
        for b in batches
        for i in range(len(b))
    ]
    linktypes = [int(x) for b in batches for x in b.linktype]
    return batches, rows, linktypes


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
@pytest.mark.parametrize("name", SINGLE_LINKTYPE)
def test_round_trip_through_tshark(name: str, fmt: str, tmp_path: Path) -> None:
    batches, rows, linktypes = read_all(FIXTURES / name)
    out = tmp_path / f"out.{fmt}"
    with open_writer(out) as w:
        for b in batches:
            w.write(b)
    assert w.frames == len(rows)
    expect, error = tshark_rows(out)
    assert error == ""
    assert [(t, c, wl, md5) for t, c, wl, _ifc, md5 in expect] == rows
    _, again, again_lt = read_all(out)
    assert again == rows
    assert again_lt == linktypes


def test_multi_linktype_pcapng_round_trip(tmp_path: Path) -> None:
    batches, rows, linktypes = read_all(FIXTURES / "merged-linktypes.pcapng")
    assert sorted(set(linktypes)) == [0, 1, 101, 113]
    out = tmp_path / "multi.pcapng"
    with open_writer(out) as w:
        for b in batches:
            w.write(b)
    expect, error = tshark_rows(out)
    assert error == ""
    assert [(t, c, wl, md5) for t, c, wl, _ifc, md5 in expect] == rows
    back, again, again_lt = read_all(out)
    assert again == rows and again_lt == linktypes
    # tshark's interface id of each frame is the one we read back.
    assert [ifc for *_, ifc, _md5 in expect] == [int(x) for b in back for x in b.iface]


def test_several_batches_and_sections_round_trip(tmp_path: Path) -> None:
    """Frames from different files (hence interface tables) appended to one pcapng."""
    first, rows1, lt1 = read_all(FIXTURES / "sll-nanosecond.pcap")
    second, rows2, lt2 = read_all(FIXTURES / "raw-ipv6.pcap")
    out = tmp_path / "both.pcapng"
    with open_writer(out) as w:
        for b in first + second:
            w.write(b)
    _, rows, linktypes = read_all(out)
    assert rows == rows1 + rows2
    assert linktypes == lt1 + lt2 == [113, 113, 113, 101]
    expect, _ = tshark_rows(out)
    assert [ifc for *_, ifc, _md5 in expect] == [0, 0, 0, 1]


def test_pcap_refuses_mixed_link_types(tmp_path: Path) -> None:
    batches, _, _ = read_all(FIXTURES / "merged-linktypes.pcapng")
    with open_writer(tmp_path / "x.pcap") as w, pytest.raises(ConfigError):
        w.write(batches[0])


def test_microsecond_pcap_writer_and_stream_target(tmp_path: Path) -> None:
    batches, rows, _ = read_all(FIXTURES / "dhcp-arp-icmp.pcap")
    buf = io.BytesIO()
    w = PcapWriter(buf, nanosecond=False)
    for b in batches:
        w.write(b)
    w.close()
    buf.seek(0)
    _, again, _ = read_all(buf)
    assert again == rows  # the source is microsecond, so nothing is lost
    path = tmp_path / "us.pcap"
    path.write_bytes(buf.getvalue())
    tshark = need_tool("tshark")
    assert tshark
    expect, _ = tshark_rows(path)
    assert [(t, c, wl, md5) for t, c, wl, _i, md5 in expect] == rows


def test_empty_capture_round_trip(tmp_path: Path) -> None:
    out = tmp_path / "empty.pcap"
    open_writer(out).close()
    with open_capture(out) as src:
        assert list(src) == []
        assert src.interfaces[0].linktype == 1
    expect, error = tshark_rows(out)
    assert expect == [] and error == ""


def test_written_ns_timestamps_survive_exactly(tmp_path: Path) -> None:
    ts = np.array([0, 1, 999_999_999, 1_700_000_000_123_456_789, 4_294_967_295_999_999_999])
    batch = FrameBatch.from_frames([b"\x01" * 20] * len(ts), ts_ns=ts)
    for suffix in ("pcap", "pcapng"):
        out = tmp_path / f"ts.{suffix}"
        with open_writer(out) as w:
            w.write(batch)
        _, rows, _ = read_all(out)
        assert [r[0] for r in rows] == ts.tolist()
        expect, _ = tshark_rows(out)
        assert [r[0] for r in expect] == ts.tolist()
