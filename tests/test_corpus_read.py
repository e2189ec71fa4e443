"""The readers against the shared corpus of ~860 real captures (skipped when it is absent).

Two sweeps:

- every capture is read under a time limit: no exception but a clear
  ``WirelearnError``, and as many frames as ``MANIFEST.tsv`` counts;
- on a fixed selection of at least 200 captures (every pcapng, gzip, non-Ethernet
  and flagged file, plus every third of the rest), tshark is the oracle for each
  frame: timestamp to the ns, captured and wire length, interface id, MD5 of the
  bytes, and the link type (through tshark's encapsulation, which must be a
  function of our link type across the corpus).

Every disagreement is in ``explain()`` with the reason, and checked there.
"""

from __future__ import annotations

import csv
import hashlib
import struct
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
from conftest import SHARED_CAPTURES, need_tool, shared_captures_available
from test_readers import parse_epoch

from wirelearn.capture import open_capture
from wirelearn.errors import RecordTooLargeError, WirelearnError

pytestmark = [
    pytest.mark.corpus,
    pytest.mark.skipif(not shared_captures_available(), reason="../shared/captures is absent"),
]

#: Per-file limit on reading time; the biggest corpus file takes well under a second.
TIME_LIMIT_S = 10.0


def manifest() -> list[dict[str, str]]:
    if not shared_captures_available():
        return []
    with open(SHARED_CAPTURES / "MANIFEST.tsv", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


ROWS = manifest()

#: Files where MANIFEST.tsv counts a frame that neither tshark nor we can read.
COUNT_EXCEPTIONS = {
    # "truncated packet data at pkt 7": record 6 is 2 bytes shorter than its header says,
    # so record 7's header is read 2 bytes early as a 4325376-byte record. tshark reports
    # the same ("File has 4325376-byte packet") after the same 6 frames.
    "suricata-verify/tests/bug-1450-04/tls_DER-incomplete-header.pcap": 6,
    "suricata-verify/tests/bug-1450-05/tls_DER-incomplete-content.pcap": 6,
}


@dataclass
class Read:
    rows: list[tuple[int, int, int, int, str]]
    linktypes: list[int]
    error: WirelearnError | None
    truncated: int
    seconds: float


@cache
def ours(local: str) -> Read:
    path = SHARED_CAPTURES / local
    start = time.perf_counter()
    rows: list[tuple[int, int, int, int, str]] = []
    linktypes: list[int] = []
    error = None
    truncated = 0
    try:
        with open_capture(path) as src:
            for b in src:
                rows.extend(
                    (
                        int(b.ts_ns[i]),
                        int(b.caplen[i]),
                        int(b.wirelen[i]),
                        int(b.iface[i]),
                        hashlib.md5(b.frame_bytes(i)).hexdigest(),
                    )
                    for i in range(len(b))
                )
                linktypes.extend(int(x) for x in b.linktype)
            truncated = src.stats.truncated_records
    except WirelearnError as exc:
        error = exc
    return Read(rows, linktypes, error, truncated, time.perf_counter() - start)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("row", ROWS, ids=[r["local_file"] for r in ROWS])
def test_every_capture_reads_cleanly(row: dict[str, str]) -> None:
    got = ours(row["local_file"])  # any exception but a WirelearnError fails here
    assert got.seconds < TIME_LIMIT_S
    expect = COUNT_EXCEPTIONS.get(row["local_file"], int(row["packets"]))
    assert len(got.rows) == expect
    notes = row["notes"]
    if "FILE-STRUCTURE: bogus caplen" in notes or row["local_file"] in COUNT_EXCEPTIONS:
        assert isinstance(got.error, RecordTooLargeError)
    elif "truncated record header" in notes:
        assert got.error is None and got.truncated == 1
    else:
        assert got.error is None, got.error


# --- tshark as the oracle -------------------------------------------------------------------------


def selection() -> list[str]:
    """At least 200 captures: all the unusual ones, then every third of the rest."""
    picked = []
    rest = []
    for r in ROWS:
        unusual = (
            r["format"] != "pcap"
            or r["notes"]
            or r["linktype"] not in ("EN10MB(1)", "IEEE802_11_RADIOTAP(127)")
        )
        (picked if unusual else rest).append(r["local_file"])
    return picked + rest[::3]


SELECTED = selection()


@dataclass
class Oracle:
    rows: list[tuple[int, int, int, int, str]]
    encap: list[int]
    error: str


def run_tshark(local: str) -> Oracle:
    cmd = [need_tool("tshark"), "-n", "-r", str(SHARED_CAPTURES / local)]
    cmd += ["-o", "frame.generate_md5_hash:TRUE", "-T", "fields"]
    for f in ("frame.time_epoch", "frame.cap_len", "frame.len", "frame.interface_id"):
        cmd += ["-e", f]
    cmd += ["-e", "frame.md5_hash", "-e", "frame.encap_type"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    rows, encap = [], []
    for line in proc.stdout.splitlines():
        ts, cap, wl, ifc, md5, enc = line.split("\t")
        rows.append((parse_epoch(ts), int(cap), int(wl), int(ifc or 0), md5))
        encap.append(int(enc))
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("(")]
    return Oracle(rows, encap, errors[-1] if errors else "")


@pytest.fixture(scope="module")
def oracle() -> dict[str, Oracle]:
    """tshark on every selected capture, two at a time."""
    need_tool("tshark")
    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(SELECTED, pool.map(run_tshark, SELECTED), strict=True))


def pcap_fractions(local: str) -> Iterator[tuple[int, int, int]]:
    """(seconds, fraction, caplen) of each record of a pcap file, read the simplest way."""
    data = (SHARED_CAPTURES / local).read_bytes()
    order = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    pos = 24
    while pos + 16 <= len(data):
        sec, frac, cap, _wl = struct.unpack_from(order + "IIII", data, pos)
        yield sec, frac, cap
        pos += 16 + cap


def libpcap_rows(local: str, tmp: Path) -> list[tuple[int, int, int, int, str]]:
    """Frames as libpcap reads them: ``tcpdump -r IN -w OUT``, then OUT (a plain pcap)."""
    out = tmp / "libpcap.pcap"
    subprocess.run(
        [need_tool("tcpdump"), "-r", str(SHARED_CAPTURES / local), "-w", str(out)],
        capture_output=True,
        timeout=60,
        check=False,
    )
    rows = []
    with open_capture(out) as src:
        for b in src:
            rows.extend(
                (
                    int(b.ts_ns[i]),
                    int(b.caplen[i]),
                    int(b.wirelen[i]),
                    0,
                    hashlib.md5(b.frame_bytes(i)).hexdigest(),
                )
                for i in range(len(b))
            )
    return rows


def explain(local: str, got: Read, want: Oracle, tmp: Path) -> str | None:
    """Why we differ from tshark on this file, after checking the reason holds; None if unexplained."""
    if "unknown or unsupported" in want.error and not want.rows:
        # tshark cannot open these link types (DSA/EDSA/Broadcom tags, some Juniper,
        # link types with reserved bits set). libpcap can: compare with what it reads.
        theirs = libpcap_rows(local, tmp)
        assert [r[:3] for r in got.rows] == [r[:3] for r in theirs]
        return "tshark does not support the link type; libpcap agrees with us"
    if local == "suricata-verify/tests/bug-6875-01/fuzz.pcap":
        # Record 2's header is bogus, so Wireshark guesses another pcap variant (a patched
        # format with longer record headers) and shows frame 1 with other bytes. libpcap
        # reads it as we do: one frame, then "invalid packet capture length 1409179648".
        td = subprocess.run(
            [need_tool("tcpdump"), "-nn", "-r", str(SHARED_CAPTURES / local)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert len(td.stdout.splitlines()) == 1 and "1409179648" in td.stderr
        assert got.rows[0][:3] == want.rows[0][:3]
        return "Wireshark guesses a different pcap variant for a fuzzed file"
    if len(got.rows) != len(want.rows):
        return None
    reasons = set()
    records = list(pcap_fractions(local)) if local.endswith((".pcap", ".cap")) else []
    unit = 1 if "tsres=ns" in next(r["notes"] for r in ROWS if r["local_file"] == local) else 1000
    frames = frame_bytes(local) if 123 in got.linktypes else []
    for i, (a, b) in enumerate(zip(got.rows, want.rows, strict=True)):
        if a == b:
            continue
        ts, cap, wl, ifc, md5 = a
        if got.linktypes[i] == 123:
            # SunATM: Wireshark moves the 4-byte pseudo-header out of the frame, so its
            # lengths are 4 less and its bytes start after it.
            cap, wl, md5 = cap - 4, wl - 4, hashlib.md5(frames[i][4:]).hexdigest()
            reasons.add("SunATM pseudo-header")
        if ts != b[0] and records:
            sec, frac, _cap = records[i]
            if frac >= 1_000_000_000 // unit and ts == sec * 1_000_000_000 + frac * unit:
                # The fraction is out of range (>= 10^6 us or >= 10^9 ns, as in tcpdump's
                # timestamp_invalid_* tests): tshark overflows its 32-bit nanoseconds; we
                # keep seconds * 10^9 + fraction * unit.
                ts = b[0]
                reasons.add("fraction out of range")
        if (ts, cap, wl, ifc, md5) != b:
            return None
    return ", ".join(sorted(reasons))


def frame_bytes(local: str) -> list[bytes]:
    with open_capture(SHARED_CAPTURES / local) as src:
        return [b.frame_bytes(i) for b in src for i in range(len(b))]


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_corpus_matches_tshark(oracle: dict[str, Oracle], tmp_path: Path) -> None:
    assert len(SELECTED) >= 200
    frames = 0
    explained: dict[str, str] = {}
    unexplained = []
    encap_of: dict[int, set[int]] = {}
    for local in SELECTED:
        got, want = ours(local), oracle[local]
        frames += len(got.rows)
        if got.rows == want.rows:
            # Both stop at the same place: after the same frames, with an error or not.
            assert (got.error is None) == (want.error == "" or "cut short" in want.error), local
        else:
            why = explain(local, got, want, tmp_path)
            if why is None:
                unexplained.append(local)
                continue
            explained[local] = why
        for lt, enc in zip(got.linktypes, want.encap, strict=False):
            encap_of.setdefault(lt, set()).add(enc)
    assert unexplained == []
    # Each of our link types shows as one tshark encapsulation: frames of multi-interface
    # pcapng files are attributed to the right interface.
    assert {lt: encs for lt, encs in encap_of.items() if len(encs) > 1} == {}
    assert frames > 10_000
    assert len(explained) <= 20, explained
