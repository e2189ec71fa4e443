"""A fixed-seed share of the fuzzing in ``fuzz/``: every target, derandomized, in well under a minute.

``fuzz/run.py --cases 100000`` runs the same targets for long; here each runs a
few hundred cases with hypothesis' derandomized seed, so the suite is
reproducible. The invariants (see ``fuzz/fuzz_targets.py``): only
``WirelearnError`` escapes, no case runs past a CPU-time limit, tracemalloc's peak
stays proportional to the input, and the frames before a fault equal those a
reference reader finds, whatever the chunking.

The harness itself is checked too: a decoder that yields one frame too many,
hangs or allocates from a length field must fail its invariant.
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT
from hypothesis import HealthCheck, given, settings

sys.path.insert(0, str(ROOT / "fuzz"))
import fuzz_targets

from wirelearn.capture import CaptureDecoder

#: Cases per target in the suite (the decoder target does the most work per case).
CASES = {"pcap": 150, "pcapng": 150, "gzip": 80, "resync": 120, "slip": 200, "decode": 80}


def _run(name: str) -> None:
    target = fuzz_targets.TARGETS[name]
    fuzz_targets.warm_up(target)

    @settings(
        derandomize=True,
        database=None,
        deadline=None,
        max_examples=CASES[name],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=target.strategy)
    def fuzz(case: Any) -> None:
        target.check(case)

    fuzz()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", list(CASES))
def test_fuzz_target(name: str) -> None:
    _run(name)


def test_every_target_runs_in_the_suite() -> None:
    assert set(CASES) == set(fuzz_targets.TARGETS)


# --- the harness catches what it is meant to catch ------------------------------------------------


def _pcap(records: list[bytes]) -> bytes:
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for i, r in enumerate(records):
        out.append(struct.pack("<IIII", fuzz_targets.SEC, i, len(r), len(r)) + r)
    return b"".join(out)


def test_reference_check_catches_a_lost_frame(monkeypatch: pytest.MonkeyPatch) -> None:
    data = _pcap([b"a" * 20, b"b" * 20, b"c" * 20])
    fuzz_targets.check_against_reference(data, [30])  # the real decoder passes
    real = fuzz_targets.rows
    monkeypatch.setattr(fuzz_targets, "rows", lambda b: real(b)[1:])
    with pytest.raises(AssertionError, match="frames, the reference has 3"):
        fuzz_targets.check_against_reference(data, [30])


def _spin() -> None:
    with fuzz_targets.guarded(10, cpu_limit=0.2):
        while True:
            pass


def _trust_a_length() -> None:
    with fuzz_targets.guarded(100):
        blob = bytearray(struct.unpack("<I", b"\x00\x00\x80\x00")[0])  # an 8 MiB "caplen"
        del blob


def test_guard_catches_a_hang() -> None:
    with pytest.raises(fuzz_targets.Hang):
        _spin()


def test_guard_catches_an_allocation_from_a_length_field() -> None:
    with pytest.raises(fuzz_targets.MemoryBoundExceeded):
        _trust_a_length()


def test_a_decoder_waiting_for_a_huge_record_holds_only_what_arrived() -> None:
    """A 1 GiB caplen within the limit is never allocated: the decoder only holds what arrived."""
    head = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 0, 1)
    rec = struct.pack("<IIII", 1, 0, (1 << 30) - 1, 1 << 30)
    with fuzz_targets.guarded(1000):
        dec = CaptureDecoder(name="huge", max_caplen=1 << 30)
        dec.feed(head + rec + bytes(500))
        assert list(dec.batches()) == []
        assert dec.pending <= 516
        assert list(dec.finish()) == []
    assert dec.stats.truncated_records == 1


def test_regression_fixtures_are_listed() -> None:
    """Every file in fixtures/regress/ has a line in fixtures/README.md."""
    readme = (ROOT / "fixtures" / "README.md").read_text()
    for f in sorted(Path(ROOT / "fixtures" / "regress").glob("*")):
        assert f"regress/{f.name}" in readme, f.name


def test_regression_forged_magic_before_the_header() -> None:
    """Found by ``fuzz/run.py``: a stream joined mid-way whose first bytes forge a magic (or a
    whole header) in front of the real header. The harness wrongly expected every record back;
    the decoder must still neither raise nor invent bytes, and a stream that starts with its
    header must still give every record."""
    le_head = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    recs = struct.pack("<IIII", 1_700_000_000, 0, 0, 0) + struct.pack(
        "<IIII", 1_700_000_001, 1, 0, 0
    )
    for forged in (b"\xa1\xb2\xc3" + le_head + recs, le_head[:8] + le_head + recs):
        fuzz_targets.check_resync((forged, [], None))
    fuzz_targets.check_resync((le_head + recs, [], [b"", b""]))
    fuzz_targets.check_resync((le_head + recs, [5, 17, 30], [b"", b""]))


def test_regression_error_offset_does_not_depend_on_the_cut() -> None:
    """Found by ``fuzz/run.py --cases 100000``: an EPB with both a zero block length and an
    oversize captured length was reported at its block length (offset 32) when the input was
    cut just after the section header, at its captured length (offset 48) otherwise."""
    shb = bytes.fromhex("0a0d0d0a 0000001c 1a2b3c4d 00010000 ffffffffffffffff 0000001c")
    epb = bytes.fromhex("00000006 00000000 5c000000 00737c2c 3f4c52ed 5d000000") + bytes(64)
    data = shb + epb
    for cut in range(len(data) + 1):
        fuzz_targets.check_against_reference(data, [cut])
